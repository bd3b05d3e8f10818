"""The run's data in MLflow's own terms: each split as a dataset input of the run.

The UI's Dataset column shows them, and runs on the same data are found by digest:
``search_runs(filter_string="datasets.digest = '<digest>'")``. Each split is a dataset named
``<data>/<split>`` (``iris/train``, ``iris/validation``, ``iris/test``: the data choice, else the
loader) with the context ``training``, ``validation`` or ``testing``, its shapes (profile) and
tensor schema, and its source: the file for ``data.path`` (CSV), else a code source that names
it (``sklearn:iris``, ``pipeline.core.data.toy``). Every split's digest is the first 32 hex
characters of the run's ``data.digest`` tag (SHA-256 of all the splits, which a rerun
compares): MLflow keeps at most 36, and one digest for the splits of one data set ties the three
together.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.fluent import _create_dataset_input
from omegaconf import DictConfig

from pipeline.core.data import Dataset
from pipeline.tracking.store.redact import redact

DIGEST_LENGTH = 32
SPLITS = (("train", "training"), ("validation", "validation"), ("test", "testing"))


def dataset_digest(data_digest: str) -> str:
    """The MLflow dataset digest of data whose ``data.digest`` tag is ``data_digest``."""
    return data_digest[:DIGEST_LENGTH]


def log_datasets(
    client: MlflowClient, run_id: str, data: Dataset, data_cfg: DictConfig, choice: str | None
) -> None:
    """Log every split of ``data`` (built from ``data_cfg``, the group's ``choice``) as a
    dataset input of run ``run_id``."""
    log_inputs(client, run_id, *split_datasets(data, data_cfg, choice))


def dataset_inputs(data: Dataset, data_cfg: DictConfig, choice: str | None) -> list[Any]:
    """What ``log_datasets`` gives a run, as MLflow's ``DatasetInput`` entities (for runs
    created in bulk)."""
    datasets, contexts = split_datasets(data, data_cfg, choice)
    return [_create_dataset_input(d, c, None) for d, c in zip(datasets, contexts, strict=True)]


def split_datasets(
    data: Dataset, data_cfg: DictConfig, choice: str | None
) -> tuple[list[Any], list[str]]:
    """Each split of ``data`` as an MLflow dataset, and its context."""
    digest = dataset_digest(data.digest())  # the run's data.digest tag (computed once)
    name = choice or str(data_cfg.get("_target_", "data"))
    source = data_source(data_cfg)
    datasets, contexts = [], []
    for (split_name, context), split in zip(SPLITS, (data.train, data.val, data.test), strict=True):
        if split is None:
            continue
        datasets.append(
            mlflow.data.from_numpy(
                split.features.numpy(),
                targets=split.labels.numpy(),
                source=source,
                name=f"{name}/{split_name}",
                digest=digest,  # given: MLflow would otherwise hash the first 10,000 values
            )
        )
        contexts.append(context)
    return datasets, contexts


def log_inputs(client: MlflowClient, run_id: str, datasets: list[Any], contexts: list[str]) -> None:
    """``mlflow.log_inputs``, once more if a parallel job created the same dataset first.

    MLflow looks a dataset up, then inserts it: two jobs on the same data at once can both miss
    it, and the second insert breaks the store's unique key (one transaction, rolled back). The
    second try finds the dataset and links it to the run.
    """
    # What ``mlflow.log_inputs`` sends, for a run that need not be the active one.
    inputs = [_create_dataset_input(d, c, None) for d, c in zip(datasets, contexts, strict=True)]
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as err:
        if "unique constraint" not in str(err).lower():  # sqlite's and PostgreSQL's words
            raise
        client.log_inputs(run_id, datasets=inputs)


def data_source(data_cfg: DictConfig) -> Any:
    """Where the data comes from: its file, or a code source (``sklearn:iris``, a loader)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    path = data_cfg.get("path")
    if path:
        with warnings.catch_warnings():  # two local-file sources are registered; same class
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            return resolve_dataset_source(redact(str(Path(path).resolve())))
    dataset = data_cfg.get("dataset")
    if dataset is not None:  # scikit-learn's bundled sets
        return CodeDatasetSource({"source": f"sklearn:{getattr(dataset, 'value', dataset)}"})
    return CodeDatasetSource({"source": redact(str(data_cfg.get("_target_", "unknown")))})
