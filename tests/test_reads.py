"""Runs read straight from the store's tables (``pipeline.tracking.store.reads``) equal what
MLflow's client gives, in the same order: the same runs, names, statuses, params, latest metrics
(NaN, +/-inf, missing) and tags, for every filter and ranking ``compare`` asks for; a store
whose schema is not verified, or a filter the reads do not know, goes through the client; and
``compare`` on a sqlite store never imports MLflow."""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
import sys

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from conftest import cli_env, sqlite_uri
from pipeline import compare
from pipeline.errors import PipelineError
from pipeline.tracking.query import lookup
from pipeline.tracking.query.runs import CONFIG_FILE, ClientRuns, DirectRuns, open_runs, record
from pipeline.tracking.run import files
from pipeline.tracking.store import reads
from pipeline.tracking.store.uri import sqlite_path

T = 1_700_000_000_000  # a start time, ms
# (name, start offset, objective, extra metric or None): ties in the objective break by start
# time, then run id; NaN ranks after every number, a missing objective last; +/-inf are stored
# as the largest double.
RUNS = [
    ("a", 0, 0.5, 1.0),
    ("b", 1, 0.25, None),
    ("c", 2, 0.5, -math.inf),
    ("d", 3, math.nan, 2.0),
    ("e", 4, None, math.inf),
    ("f", 5, 0.5, 3.0),
    ("g", 5, -1.0, math.nan),
    ("h", 6, math.nan, None),
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(uri, experiment id, parent run id) of a sqlite store that ``fill`` filled."""
    uri = sqlite_uri(tmp_path_factory.mktemp("reads"))
    return uri, *fill(uri)


def fill(uri: str) -> tuple[str, str]:
    """(experiment id, parent run id): a sweep parent, RUNS nested under it, a run outside the
    sweep, a deleted nested run, and a run in another experiment, logged by MLflow's client."""
    client = MlflowClient(uri)
    experiment = client.create_experiment("softmax-regression")
    other = client.create_experiment("other")
    tags = {"sweep.dir": "/tmp/x", "sweep.metric": "objective", "sweep.direction": "minimize"}
    parent = client.create_run(experiment, start_time=T - 1, tags=tags, run_name="sweep").info
    nested = {"mlflow.parentRunId": parent.run_id}
    for name, offset, objective, extra in RUNS:
        run = client.create_run(experiment, start_time=T + offset, tags=nested, run_name=name)
        metrics = [Metric("objective", objective, T, 0)] if objective is not None else []
        metrics += [Metric("extra", extra, T, 0)] if extra is not None else []
        params = [Param("optim.lr", str(offset / 10)), Param("seed", name)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params,
                         tags=[RunTag("note", f"run {name}")])  # fmt: skip
        client.set_terminated(run.info.run_id, "FAILED" if name == "c" else "FINISHED")
    deleted = client.create_run(experiment, start_time=T, tags=nested, run_name="deleted")
    client.delete_run(deleted.info.run_id)
    alone = client.create_run(experiment, start_time=T + 9, run_name="alone").info.run_id
    client.log_metric(alone, "objective", 0.1)
    client.create_run(other, start_time=T, tags=nested, run_name="elsewhere")
    return experiment, parent.run_id


def comparable(runs: list) -> list:
    """Records with NaN made equal to NaN."""
    nan = lambda v: "nan" if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    return [
        (r.run_id, r.run_name, r.status, r.experiment_id, r.start_time, r.artifact_uri, r.params,
         {k: nan(v) for k, v in r.metrics.items()}, r.tags)
        for r in runs
    ]  # fmt: skip


def test_direct_reads_equal_mlflows_search_in_its_order(sweep):
    uri, experiment, parent = sweep
    assert reads.reads_directly(uri)
    check_searches(uri, experiment, parent)
    direct = DirectRuns(uri)
    ranked = direct.search(experiment, lookup.nested_filter(parent), "objective")
    assert [r.run_name for r in ranked] == ["g", "b", "a", "c", "f", "d", "h", "e"]
    extra = {r.run_name: r.metrics.get("extra") for r in ranked}
    assert extra["c"] == -1.7976931348623157e308
    assert math.isnan(extra["g"])
    assert "deleted" not in [r.run_name for r in ranked]


def test_direct_reads_find_experiments_and_runs_as_mlflow(sweep):
    uri, experiment, parent = sweep
    direct, client = DirectRuns(uri), ClientRuns(uri)
    assert direct.experiment_id("softmax-regression") == client.experiment_id("softmax-regression")
    assert direct.experiment_id("softmax-regression") == experiment
    assert direct.experiment_id("nope") is None
    assert client.experiment_id("nope") is None
    assert comparable([direct.run(parent)]) == comparable([client.run(parent)])
    assert direct.run(parent).tags["sweep.metric"] == "objective"
    for run_id in ("0" * 32, deleted_run_id(uri)):
        with pytest.raises(PipelineError) as raised_direct:
            direct.run(run_id)
        with pytest.raises(PipelineError) as raised_client:
            client.run(run_id)
        assert str(raised_direct.value) == str(raised_client.value)
        assert "Fix:" in str(raised_direct.value)


@pytest.mark.slow
def test_direct_reads_equal_mlflows_search_on_postgres(postgres):
    uri = postgres.create_database(migrated=True)
    experiment, parent = fill(uri)
    assert isinstance(open_runs(uri), DirectRuns)
    check_searches(uri, experiment, parent)
    direct = compare.build_table(DirectRuns(uri), parent, None, False, False)
    through = compare.build_table(ClientRuns(uri), parent, None, False, False)
    assert compare.render(direct, "csv", None) == compare.render(through, "csv", None)
    assert [row["run"] for row in direct.rows] == ["g", "b", "a", "c", "f", "d", "h", "e"]


def check_searches(uri: str, experiment: str, parent: str) -> None:
    """Every search ``compare`` makes gives the same records directly as through MLflow."""
    direct, client = DirectRuns(uri), ClientRuns(uri)
    searches = [
        (lookup.nested_filter(parent), {}),
        (lookup.nested_filter(parent), {"limit": 1}),
        (lookup.experiment_filter(), {}),
        (lookup.sweeps_filter(), {"limit": 1}),
    ]
    for metric in ("objective", "extra", "absent"):
        for descending in (False, True):
            ranking = {"metric": metric, "descending": descending}
            searches.append((lookup.nested_filter(parent), ranking))
    for run_filter, options in searches:
        expected = client.search(experiment, run_filter, **options)
        assert expected, (run_filter, options)
        found = direct.search(experiment, run_filter, **options)
        assert comparable(found) == comparable(expected), (run_filter, options)


def deleted_run_id(uri: str) -> str:
    client = MlflowClient(uri)
    (found,) = client.search_runs(
        [client.get_experiment_by_name("softmax-regression").experiment_id],
        "attributes.run_name = 'deleted'",
        run_view_type=2,  # deleted only
    )
    return found.info.run_id


def test_compare_reads_the_same_table_directly_and_through_mlflow(sweep):
    uri, _, parent = sweep
    titles = []
    for target, sort, desc, every in ((parent, None, False, False), (parent, "extra", True, True),
                                      ("softmax-regression", None, False, False),
                                      (None, None, False, False)):  # fmt: skip
        direct = compare.build_table(DirectRuns(uri), target, sort, desc, every)
        through = compare.build_table(ClientRuns(uri), target, sort, desc, every)
        for fmt in compare.FORMATS:
            assert compare.render(direct, fmt, 80) == compare.render(through, fmt, 80)
        titles.append(direct.title)
    assert titles == [
        f"8 runs of 'sweep' ({parent}), by objective (minimize)",
        f"8 runs of 'sweep' ({parent}), by extra (descending)",
        "9 runs of experiment 'softmax-regression', by objective (minimize)",
        f"8 runs of 'sweep' ({parent}), by objective (minimize)",
    ]


def test_a_store_at_another_revision_or_filter_reads_through_mlflow(sweep, tmp_path):
    uri, experiment, _parent = sweep
    copy = tmp_path / "mlflow.db"
    shutil.copy(sqlite_path(uri), copy)
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f0000000000f'")
    assert not reads.reads_directly(sqlite_uri(tmp_path))
    with pytest.raises(PipelineError, match="out-of-date database schema"):  # MLflow's check
        open_runs(sqlite_uri(tmp_path))
    assert isinstance(open_runs(uri), DirectRuns)
    assert not reads.reads_directly(sqlite_uri(tmp_path / "absent"))  # never created
    assert not (tmp_path / "absent").exists()
    assert reads.tag_clauses("attributes.status = 'FINISHED'") is None
    finished = DirectRuns(uri).search(experiment, "attributes.status = 'FAILED'")
    assert [r.run_name for r in finished] == ["c"]  # through the client


def test_the_recorded_config_is_read_from_the_artifact_directory(sweep, tmp_path):
    uri, experiment, _parent = sweep
    assert CONFIG_FILE == files.CONFIG_FILE
    client = MlflowClient(uri)
    (run,) = client.search_runs([experiment], "attributes.run_name = 'a'")
    config = tmp_path / CONFIG_FILE
    config.write_text("sweep:\n  metric: extra\n  direction: maximize\n")
    client.log_artifact(run.info.run_id, str(config))
    direct = DirectRuns(uri)
    assert reads.local_artifact(run.info.artifact_uri, CONFIG_FILE) is not None
    assert direct.recorded_config(record(run)) == ClientRuns(uri).recorded_config(record(run))
    assert direct.recorded_config(record(run))["sweep"]["metric"] == "extra"
    (other,) = client.search_runs([experiment], "attributes.run_name = 'b'")
    assert direct.recorded_config(record(other)) is None


def test_compare_on_sqlite_imports_neither_mlflow_nor_torch(sweep, tmp_path):
    uri, _, parent = sweep
    code = (
        "import sys; from pipeline import compare; "
        f"compare.main([{parent!r}, '--tracking-uri', {uri!r}, '--format', 'csv']); "
        "print(sorted(m for m in ('mlflow', 'torch', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=cli_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, *rows, loaded = done.stdout.splitlines()
    assert header.startswith("run,status,optim.lr,seed,objective")
    assert [row.split(",")[0] for row in rows] == ["g", "b", "a", "c", "f", "d", "h", "e"]
    assert loaded == "[]"
