"""The Python API: train, sweep and read runs from Python or a notebook.

```python
import pandas as pd
import pipeline

run = pipeline.train("optim.lr=0.05", "epochs=200")     # one run, as on the command line
sweep = pipeline.sweep("optim.lr=0.01,0.1", "seed=1,2")  # a multirun: 4 runs under one parent
frame = pipeline.runs()                                  # one row per run of the experiment
curves = pipeline.history(sweep.runs, "cost")            # run_id, step, value: ready to plot
features = pd.DataFrame([[1, 2, 1, 1]], columns=["x0", "x1", "x2", "x3"])
labels = pipeline.load(sweep.best.id).predict(features)  # class names
```

The overrides are those of ``python -m pipeline.train``: the same ``conf/``, composed by Hydra
and validated the same way, into the same store (``tracking.uri``, else
``$MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db`` of the working directory). A mistake
raises a ``PipelineError`` with the line the command prints (``OverrideError`` for what Hydra
rejects), before any run is created; never ``SystemExit``. Each call starts Hydra afresh, so
calls can follow each other in one interpreter; torch and MLflow are imported by the first.
Signal handlers are the pipeline's only while a call trains: a Ctrl-C (a Jupyter kernel's
interrupt) then ends the run KILLED at an epoch boundary, as on the console, and raises
``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import OverrideError, PipelineError, SweepFailed

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from hydra._internal.hydra import Hydra
    from mlflow.entities import Run as MlflowRun
    from mlflow.tracking import MlflowClient
    from omegaconf import DictConfig

__all__ = [
    "Model",
    "OverrideError",
    "PipelineError",
    "Run",
    "Sweep",
    "SweepFailed",
    "history",
    "load",
    "runs",
    "sweep",
    "train",
]

TRAIN_MODULE = Path(__file__).with_name("train.py")  # Hydra finds ../conf from it, as the CLI
AFTER_RUN = "Interrupted once the run had finished: it is FINISHED."
BY_START = ["attributes.start_time ASC", "attributes.run_name ASC"]  # a batch starts together


@dataclass(frozen=True)
class Run:
    """A run in the store: its id, name, status, params and final metrics.

    Attributes:
        id: The MLflow run id.
        name: The run's name (its overrides, e.g. ``optim.lr=0.05``, or ``default``).
        status: ``FINISHED``, ``RUNNING``, ``FAILED`` or ``KILLED``.
        params: The resolved config, as dotted names (``optim.lr``), numbers as numbers.
        metrics: Each metric's last value (``final_cost``, ``objective``, ``cost``, ...).
        parent_run_id: The sweep's parent run, for a run of a sweep; else None.
        tracking_uri: The store the run is in.
    """

    id: str
    name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    parent_run_id: str | None
    tracking_uri: str

    @classmethod
    def of(cls, run: MlflowRun, tracking_uri: str) -> Run:
        """The run that an MLflow run record describes.

        Args:
            run: The record (``MlflowClient.get_run``, ``search_runs``).
            tracking_uri: The store it came from.

        Returns:
            The ``Run``.
        """
        from pipeline.tags import PARENT_RUN_ID

        return cls(
            id=run.info.run_id,
            name=run.info.run_name,
            status=run.info.status,
            params={key: _value(text) for key, text in run.data.params.items()},
            metrics=dict(run.data.metrics),
            parent_run_id=run.data.tags.get(PARENT_RUN_ID),
            tracking_uri=tracking_uri,
        )

    @classmethod
    def fetch(cls, run_id: str, tracking_uri: str | None = None) -> Run:
        """The run ``run_id`` of the store.

        Args:
            run_id: An MLflow run id.
            tracking_uri: The store (default: ``$MLFLOW_TRACKING_URI``, else
                ``./mlruns/mlflow.db``).

        Returns:
            The run as it is in the store now.

        Raises:
            PipelineError: No store there, or no such run.
        """
        from pipeline.tracking.store.access import fetch_run

        client, uri = _client(tracking_uri)
        return cls.of(fetch_run(client, run_id), uri)

    def history(self, metric: str = "cost") -> pd.DataFrame:
        """Every logged value of a metric.

        Args:
            metric: The metric's name (``cost``: the training cost of every epoch).

        Returns:
            A DataFrame with columns ``run_id``, ``step`` and ``value``, by step.
        """
        return history([self.id], metric, tracking_uri=self.tracking_uri)

    def model(self) -> Model:
        """The run's trained model.

        Returns:
            The ``Model`` that ``pipeline.load(run.id)`` gives.
        """
        return load(self.id, tracking_uri=self.tracking_uri)


@dataclass(frozen=True)
class Sweep:
    """A sweep: its parent run and the runs of its jobs, nested under it.

    Attributes:
        parent_id: The parent run's id (what ``python -m pipeline.compare`` takes).
        tracking_uri: The store the runs are in.
    """

    parent_id: str
    tracking_uri: str

    @property
    def parent(self) -> Run:
        """The parent run (its params are the best run's, as ``best.*``)."""
        return Run.fetch(self.parent_id, self.tracking_uri)

    @property
    def metric(self) -> str:
        """What ranks the runs: the sweep's ``sweep.metric`` (``objective`` by default)."""
        return self._objective().metric

    @property
    def runs(self) -> list[Run]:
        """The sweep's runs, in the order of its jobs (a job whose configuration had FINISHED
        before, which the sweep skipped, gives that run)."""
        client, parent = self._parent()
        return [Run.of(run, self.tracking_uri) for run in _sweep_runs(client, parent)]

    @property
    def best(self) -> Run | None:
        """The best run by ``sweep.metric`` in ``sweep.direction``; None if no job finished."""
        from pipeline.tags import BEST_RUN_ID

        _, parent = self._parent()
        best_id = parent.data.tags.get(BEST_RUN_ID)
        return Run.fetch(best_id, self.tracking_uri) if best_id else None

    def to_frame(self) -> pd.DataFrame:
        """The sweep's runs as ``pipeline.runs`` gives them: one row a run.

        Returns:
            A DataFrame with columns ``run_id``, ``name``, ``status``, ``parent_run_id``, the
            params as dotted names and the final metrics, in the order of ``runs``.
        """
        client, parent = self._parent()
        return _frame(_sweep_runs(client, parent))

    def _parent(self) -> tuple[MlflowClient, MlflowRun]:
        from pipeline.tracking.store.access import fetch_run

        client, _ = _client(self.tracking_uri)
        return client, fetch_run(client, self.parent_id)

    def _objective(self) -> Any:
        from pipeline.tracking.query.lookup import objective

        client, parent = self._parent()
        return objective(client, parent, None)


class Model:
    """A run's trained classifier: ``predict`` gives class names, ``module`` is the torch model.

    Attributes:
        module: The trained ``torch.nn.Module`` (standardization included), in eval mode: it
            maps a float tensor of features to class logits.
        classes: The class names, in the order of the model's outputs.
        features: The feature names the model was trained on, in order.
    """

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier  # the MLflow pyfunc model ("classifier")
        wrapped = classifier.unwrap_python_model()
        self.module: torch.nn.Module = wrapped.model
        self.classes: list[str] = list(wrapped.class_names)
        self.features: list[str] = list(wrapped.feature_names)

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """Each class's probability.

        Args:
            features: One row per sample; columns named as ``features`` (or in that order).

        Returns:
            One row per sample, one column per class name.

        Raises:
            PipelineError: Columns that do not match ``features``, or values that are not
                numbers.
        """
        return self.classifier.predict(self._as_inputs(features))

    def _as_inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        """``features`` as the model's input schema wants them: its columns, as floats."""
        import pandas as pd

        frame = pd.DataFrame(features)
        if set(self.features) <= set(frame.columns):
            frame = frame[self.features]
        elif frame.shape[1] == len(self.features):
            frame = frame.set_axis(self.features, axis=1)
        else:
            raise PipelineError(
                f"Got {frame.shape[1]} feature columns, the model expects {len(self.features)}: "
                f"{', '.join(self.features)}. Fix: pass a DataFrame with these columns"
            )
        try:
            return frame.astype("float64")
        except (TypeError, ValueError) as err:
            raise PipelineError(
                f"Features that are not numbers: {err}. Fix: pass numeric columns"
            ) from None

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """The most probable class of each row.

        Args:
            features: One row per sample; columns named as ``features`` (or in that order).

        Returns:
            The predicted class names (a Series named ``label``, indexed as ``features``).
        """
        return self.predict_proba(features).idxmax(axis=1).rename("label")


def train(*overrides: str) -> Run:
    """Train one run, as ``python -m pipeline.train OVERRIDES`` does.

    Args:
        *overrides: Hydra overrides, e.g. ``"optim.lr=0.05"``, ``"data=iris"``,
            ``"tracking.uri=sqlite:////abs/mlflow.db"``.

    Returns:
        The finished run (a configuration that already FINISHED with ``tracking.resume``
        set returns that run).

    Raises:
        PipelineError: A mistake in the overrides or the data, or a store that cannot be used
            (``OverrideError``: what Hydra rejects), with the command's message.
        KeyboardInterrupt: Ctrl-C or a kernel interrupt: the run was closed KILLED.
    """
    with _hydra() as hydra, _training():
        ret = hydra.run(config_name="config", task_function=_train_task,
                        overrides=_with_mode(hydra, overrides, "RUN"))  # fmt: skip
    if isinstance(ret.return_value, PipelineError):
        raise ret.return_value
    uri, run_id = ret.return_value
    return Run.fetch(run_id, uri)


def sweep(*overrides: str) -> Sweep:
    """Run a sweep, as ``python -m pipeline.train -m OVERRIDES`` does.

    The jobs go through the configured launcher: by default the batched one, which trains
    jobs that differ only in values (``optim.lr``, ``seed``) as one computation, each its own
    run; ``hydra/launcher=basic`` trains them one by one.

    Args:
        *overrides: Hydra overrides; a comma list sweeps a key (``"optim.lr=0.01,0.1"``,
            ``"seed=1,2,3"``), as does ``experiment=lr_seed_sweep``.

    Returns:
        The sweep: its parent run, its runs and the best of them.

    Raises:
        SweepFailed: Some jobs did not finish (the others did); its ``sweep`` attribute is
            the sweep.
        PipelineError: A mistake in the overrides, or a store that cannot be used.
        KeyboardInterrupt: Ctrl-C or a kernel interrupt: the running jobs' runs and the
            parent were closed KILLED.
    """
    from pipeline.errors import Fatal
    from pipeline.tracking.sweep.callbacks import SweepTracking

    SweepTracking.last = None
    with _hydra() as hydra, _training():
        from pipeline.train import main

        try:
            hydra.multirun(config_name="config", task_function=main,
                           overrides=_with_mode(hydra, overrides, "MULTIRUN"))  # fmt: skip
        except Fatal as fatal:
            error = fatal.error
            if isinstance(error, SweepFailed) and SweepTracking.last is not None:
                launched = SweepTracking.last
                error.sweep = Sweep(launched.sweep_run_id, launched.client.tracking_uri)
            raise error from None
        except KeyboardInterrupt:
            if SweepTracking.last is not None:
                SweepTracking.last.close("KILLED")
            raise
    launched = SweepTracking.last
    return Sweep(launched.sweep_run_id, launched.client.tracking_uri)


def runs(
    experiment: str | None = None, filter: str | None = None, *, tracking_uri: str | None = None
) -> pd.DataFrame:
    """One row per run of an experiment, sweep parents included, oldest first.

    Args:
        experiment: The experiment's name (default: ``tracking.experiment`` of ``conf/``,
            ``softmax-regression``).
        filter: An MLflow search filter, e.g. ``"params.`optim.lr` = '0.1'"``,
            ``"metrics.final_accuracy > 0.9"``, ``"attributes.status = 'FINISHED'"``.
        tracking_uri: The store (default: ``$MLFLOW_TRACKING_URI``, else
            ``./mlruns/mlflow.db``).

    Returns:
        A DataFrame with columns ``run_id``, ``name``, ``status`` and ``parent_run_id``, then
        the params as dotted names (``optim.lr``; numbers as numbers), then each metric's final
        value. No runs: those four columns and no rows.

    Raises:
        PipelineError: No store there, no such experiment, or a filter MLflow rejects.
    """
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.query.lookup import search_all
    from pipeline.tracking.store.access import find_experiment

    client, uri = _client(tracking_uri)
    if experiment is None:
        from pipeline.config import compose_config

        experiment = str(compose_config().tracking.experiment)
    found = find_experiment(client, experiment)
    if found is None:
        raise PipelineError(
            f"No experiment {experiment!r} in {_redacted(uri)}. Fix: pass the name that "
            "tracking.experiment had, or the store's URI as tracking_uri"
        )
    try:
        return _frame(search_all(client, found.experiment_id, filter or "", BY_START))
    except MlflowException as err:
        raise PipelineError(
            f"Cannot search the runs with filter {filter!r}: {err.message}. Fix: write it as "
            "MLflow's search syntax, e.g. \"params.`optim.lr` = '0.1'\""
        ) from None


def history(
    run_ids: str | Run | Iterable[str | Run],
    metric: str = "cost",
    *,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Every logged value of a metric, for one or more runs: a long frame, ready to plot.

    Args:
        run_ids: A run id or ``Run``, or several (``sweep.runs``).
        metric: The metric's name (``cost``: the training cost of every epoch; ``val_cost``
            with a validation split).
        tracking_uri: The store (default: the first ``Run``'s, else ``$MLFLOW_TRACKING_URI``,
            else ``./mlruns/mlflow.db``).

    Returns:
        A DataFrame with columns ``run_id``, ``step`` and ``value``: the runs in the order
        given, each by step. A run without the metric has no rows.

    Raises:
        PipelineError: No store there, or no such run.
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.store.access import fetch_run

    items = [run_ids] if isinstance(run_ids, str | Run) else list(run_ids)
    first_uri = next((r.tracking_uri for r in items if isinstance(r, Run)), None)
    client, _ = _client(tracking_uri or first_uri)
    rows = []
    for item in items:
        run_id = item.id if isinstance(item, Run) else item
        try:
            values = client.get_metric_history(run_id, metric)
        except MlflowException:
            fetch_run(client, run_id)  # says which run is unknown
            raise
        rows += [(run_id, m.step, m.value) for m in sorted(values, key=lambda m: m.step)]
    return pd.DataFrame(rows, columns=["run_id", "step", "value"])


def load(run_id_or_model_uri: str, *, tracking_uri: str | None = None) -> Model:
    """Load a run's trained model.

    Args:
        run_id_or_model_uri: A run id, or an MLflow model URI of a run's classifier
            (``runs:/ID/classifier``, ``models:/softmax-regression@champion``, ``models:/m-...``).
        tracking_uri: The store (default: ``$MLFLOW_TRACKING_URI``, else
            ``./mlruns/mlflow.db``).

    Returns:
        The ``Model``: ``.predict(frame)`` gives class names, ``.module`` is the torch model.

    Raises:
        PipelineError: No such run or model, or a model that is not a run's classifier.
    """
    from mlflow.exceptions import MlflowException

    from pipeline.predict import load_classifier

    _, uri = _client(tracking_uri)
    classifier = load_classifier(run_id_or_model_uri, uri)
    try:
        return Model(classifier)
    except (MlflowException, AttributeError):
        raise PipelineError(
            f"{run_id_or_model_uri} is not a classifier of the pipeline. Fix: pass a run id, or "
            "runs:/RUN_ID/classifier"
        ) from None


def _train_task(cfg: DictConfig) -> tuple[str, str] | PipelineError:
    """Hydra's task for ``train``: (the store's URI, the run's id), or the user's mistake
    (returned: Hydra would log a raised one as an error of the job, which the command does
    not print either)."""
    from pipeline.runtime.job import JobContext
    from pipeline.tracking.store.access import resolve_tracking_uri
    from pipeline.train import train_job

    try:
        outcome = train_job(cfg, JobContext.current())
    except PipelineError as err:
        return err
    return resolve_tracking_uri(cfg.tracking.uri), outcome.run_id


def _with_mode(hydra: Hydra, overrides: tuple[str, ...], mode: str) -> list[str]:
    """``overrides`` with ``hydra.mode`` set, as the command sets it (unless the config does)."""
    given = [*overrides]
    if hydra.get_mode(config_name="config", overrides=given) is None:
        given.append(f"hydra.mode={mode}")
    return given


@contextmanager
def _hydra() -> Iterator[Hydra]:
    """A fresh Hydra with the command's search path (``conf/``); cleared on leaving. Hydra's
    errors become ``OverrideError`` with the text the command prints."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    import pipeline.train  # noqa: F401  (registers the schemas and resolvers)

    GlobalHydra.instance().clear()
    search_path = create_automatic_config_search_path(str(TRAIN_MODULE), None, "../conf")
    try:
        yield Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
    except PipelineError:
        raise
    except CompactHydraException as err:
        cause = err.__cause__
        lines = [str(err), *([str(cause)] if isinstance(cause, OmegaConfBaseException) else [])]
        raise OverrideError("\n".join(lines)) from None
    finally:
        GlobalHydra.instance().clear()


@contextmanager
def _training() -> Iterator[None]:
    """The pipeline's signal handlers and Hydra's logging inside; the caller's back after.
    A stop ends as ``KeyboardInterrupt`` with the console's message."""
    from pipeline.runtime import interrupts

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with interrupts.installed():
            yield
    except interrupts.Stop as stop:
        if stop.after_run:
            raise KeyboardInterrupt(AFTER_RUN) from None
        raise KeyboardInterrupt("Interrupted: the run was marked KILLED.") from None
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:], root.level = handlers, level


def _client(tracking_uri: str | None) -> tuple[MlflowClient, str]:
    """A client for the existing store ``tracking_uri`` (default: the command's), and its URI."""
    from pipeline.tracking.store.access import open_store, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    return open_store(uri), uri


def _sweep_runs(client: MlflowClient, parent: MlflowRun) -> list[MlflowRun]:
    """The runs of the sweep's jobs as its dir records them, in job order; without the dir
    (launched elsewhere), the runs nested under its parent, oldest first."""
    from pipeline.tags import SWEEP_DIR
    from pipeline.tracking.query.lookup import search_all, sweep_filter
    from pipeline.tracking.sweep.results import collect, find_runs

    sweep_dir = Path(parent.data.tags.get(SWEEP_DIR, ""))
    if sweep_dir.name and sweep_dir.is_dir():
        jobs = collect(client, parent.info.experiment_id, sweep_dir)
        run_ids = [job.run_id for job in jobs if job.run is not None]
        found = {r.info.run_id: r for r in find_runs(client, parent.info.experiment_id, run_ids)}
        return [found[run_id] for run_id in run_ids if run_id in found]
    return search_all(client, parent.info.experiment_id, sweep_filter(parent), BY_START)


def _frame(found: list[MlflowRun]) -> pd.DataFrame:
    """``runs``' frame of MLflow's run records (a param that is a whole number where a run has
    it, such as ``seed``, stays one: ``Int64``, empty where a run lacks it)."""
    import pandas as pd

    from pipeline.tags import PARENT_RUN_ID

    columns: dict[str, Any] = {
        "run_id": [run.info.run_id for run in found],
        "name": [run.info.run_name for run in found],
        "status": [run.info.status for run in found],
        "parent_run_id": [run.data.tags.get(PARENT_RUN_ID) for run in found],
    }
    for key in sorted({key for run in found for key in run.data.params}):
        values = [_value(run.data.params[key]) if key in run.data.params else None for run in found]
        whole = all(isinstance(v, int) for v in values if v is not None)
        columns[key] = pd.array(values, dtype="Int64") if whole else values
    for key in sorted({key for run in found for key in run.data.metrics}):
        columns[key] = [run.data.metrics.get(key, math.nan) for run in found]
    return pd.DataFrame(columns, columns=list(columns))


def _value(text: str) -> Any:
    """A param as MLflow stores it (text), as a number where it is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _redacted(uri: str) -> str:
    from pipeline.tracking.store.redact import redact

    return redact(uri)
