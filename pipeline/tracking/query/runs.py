"""The runs a command ranks (``compare``), read the cheapest way the store allows: straight from
a sqlite or PostgreSQL store's tables (``store.reads``: MLflow is not even imported), else
through MLflow's client (a tracking server, a schema revision not verified, a filter the
direct reads do not know). Both give the same ``RunRecord``s in the same order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import yaml

from pipeline.tracking.store import reads
from pipeline.tracking.store.reads import RunRecord

if TYPE_CHECKING:
    from mlflow.entities import Run

CONFIG_FILE = "config.yaml"  # the resolved config a run logs (``pipeline.tracking.run.files``)


class Runs(Protocol):
    """What ``compare`` asks of a store."""

    def experiment_id(self, name: str) -> str | None:
        """The id of the active experiment ``name``; None if there is none."""

    def run(self, run_id: str) -> RunRecord:
        """The run ``run_id``; one line if it is unknown or deleted."""

    def search(
        self,
        experiment_id: str,
        filter_string: str,
        metric: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """``search_runs``: by ``metric`` then oldest first (``lookup.ranked``), or newest first
        if None; every page, or at most ``limit`` runs."""

    def recorded_config(self, run: RunRecord) -> dict[str, Any] | None:
        """The resolved config ``run`` logged; None if it logged none."""


def open_runs(uri: str) -> Runs:
    """The store ``uri``'s runs: read directly where ``reads.reads_directly``, else by MLflow."""
    from pipeline.tracking.store.postgres import check_database, is_postgres

    if is_postgres(uri):
        check_database(uri)  # one line for a database that cannot be reached
    return DirectRuns(uri) if reads.reads_directly(uri) else ClientRuns(uri)


class DirectRuns:
    """SQL on MLflow's tables (``store.reads``); MLflow's client only for what they cannot do."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: ClientRuns | None = None

    def client(self) -> ClientRuns:
        if self._client is None:
            self._client = ClientRuns(self.uri)
        return self._client

    def experiment_id(self, name: str) -> str | None:
        return reads.experiment_id(self.uri, name)

    def run(self, run_id: str) -> RunRecord:
        return reads.get_run(self.uri, run_id)

    def search(
        self,
        experiment_id: str,
        filter_string: str,
        metric: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[RunRecord]:
        clauses = reads.tag_clauses(filter_string)
        if clauses is None:
            return self.client().search(experiment_id, filter_string, metric, descending, limit)
        return reads.search(self.uri, experiment_id, clauses, metric, descending, limit)

    def recorded_config(self, run: RunRecord) -> dict[str, Any] | None:
        path = reads.local_artifact(run.artifact_uri, CONFIG_FILE)
        if path is None:
            return self.client().recorded_config(run)
        try:
            return yaml.safe_load(path.read_text())
        except OSError:  # as MLflow's download of a missing artifact
            return None


class ClientRuns:
    """MLflow's client: ``search_runs`` page by page, ``get_run``, ``download_artifacts``."""

    def __init__(self, uri: str) -> None:
        from pipeline.tracking.store.access import open_store

        self.client = open_store(uri)

    def experiment_id(self, name: str) -> str | None:
        from pipeline.tracking.store.access import find_experiment

        found = find_experiment(self.client, name)
        return found.experiment_id if found is not None else None

    def run(self, run_id: str) -> RunRecord:
        from pipeline.tracking.store.access import fetch_run

        return record(fetch_run(self.client, run_id))

    def search(
        self,
        experiment_id: str,
        filter_string: str,
        metric: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[RunRecord]:
        from pipeline.tracking.query import lookup

        order_by = lookup.ranked(metric, descending) if metric is not None else None
        if limit is None:
            found = lookup.search_all(self.client, experiment_id, filter_string, order_by)
        else:
            found = self.client.search_runs(
                [experiment_id], filter_string, max_results=limit, order_by=order_by
            )
        return [record(run) for run in found]

    def recorded_config(self, run: RunRecord) -> dict[str, Any] | None:
        from pipeline.tracking.run.files import find_recorded_config

        return find_recorded_config(self.client, run.run_id)


def record(run: Run) -> RunRecord:
    """An MLflow ``Run`` as a RunRecord."""
    return RunRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        status=run.info.status,
        experiment_id=run.info.experiment_id,
        start_time=run.info.start_time,
        artifact_uri=run.info.artifact_uri,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )
