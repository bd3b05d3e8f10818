"""The Model Registry: a run's ``classifier`` model as a new version of a registered model, and an
alias (``champion``) moved to it, so that ``models:/NAME@ALIAS`` names it from then on."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import mlflow
from mlflow.entities import LoggedModel, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError, first_line

MODEL_NAME = "classifier"  # what pipeline.tracking.run.models logs: probabilities by class name


@dataclass(frozen=True)
class Registered:
    """A new version of ``name``, the alias now on it, and the version the alias left."""

    name: str
    version: str
    alias: str
    previous: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


# MLflow's alias checks, by their names up to 3.17: their names since 3.18.
ALIAS_RULES = {
    "_validate_model_alias_name": "_validate_alias_name",
    "_validate_model_alias_name_reserved": "_validate_alias_name_reserved",
}


def check_names(name: str, alias: str) -> None:
    """A registered model name and an alias the registry accepts, checked before any write (by
    MLflow's own rules: no '/' or ':' in a name; an alias of letters, digits, '_' and '-', not
    'latest' nor 'v<number>')."""
    from mlflow.utils import validation

    try:
        validation._validate_model_name(name)
        for old, new in ALIAS_RULES.items():
            (getattr(validation, old, None) or getattr(validation, new))(alias)
    except MlflowException as err:
        raise PipelineError(
            f"Cannot register as {name}@{alias}: {first_line(err)} "
            "Fix: pass another --name or --alias (e.g. --alias champion)"
        ) from None


def classifier_of(client: MlflowClient, run: Run) -> LoggedModel:
    """The ``classifier`` model the run logged (the newest, should there be several)."""
    run_id = run.info.run_id
    found = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    if not found:
        raise PipelineError(
            f"Run {run_id} ({run.info.status}) has no {MODEL_NAME} model: only a finished run "
            "of `python -m pipeline.train` has one. Fix: register a FINISHED run "
            "(`python -m pipeline.compare` lists them)"
        )
    return found[0]


def register(
    client: MlflowClient, model: LoggedModel, name: str, alias: str, tags: dict[str, str]
) -> Registered:
    """Register ``model`` as a new version of ``name`` (created if new), tagged ``tags``, and
    move ``alias`` to it. ``client``'s store is the registry (``mlflow.register_model`` uses the
    current tracking URI)."""
    previous = alias_version(client, name, alias)
    mlflow.set_tracking_uri(client.tracking_uri)
    # register_model prints "Successfully registered model ..." and "Created version ..." on
    # stderr; the command prints its own lines instead.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(model.model_uri, name, tags=tags)
    client.set_registered_model_alias(name, alias, version.version)
    return Registered(name, str(version.version), alias, previous)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``name@alias`` points at now (None if the model or alias does not exist)."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
