"""The Python API (``pipeline.api``), in this process against real sqlite stores: a run's numbers
equal the command's, a sweep through the batched launcher and what it returns (runs, best,
frames, histories, models), the errors (their class and the command's message, no run), and
what a call leaves as it found it (Hydra's global state, signal handlers, argv, logging)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

import pipeline
from conftest import REFERENCE_OUTPUT, cost_history, run_cli, runs_of, sqlite_uri, sweep_runs
from pipeline.errors import ConfigError, OverrideError, PipelineError, SweepFailed

HYDRA_HINT = "\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n"
SWEEP = ("data=iris", "epochs=30", "optim.lr=0.01,0.1", "seed=1,2")
# Iris rows: a setosa, a virginica and a versicolor, in the training features' order.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a temp dir (Hydra writes outputs/ and multirun/ where it is called from)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for this file's runs (a new store costs seconds): each test trains
    into an experiment of its own, named as it is."""
    return sqlite_uri(tmp_path_factory.mktemp("store"))


def into(store: str, experiment: str) -> tuple[str, str]:
    """The overrides that put runs into ``experiment`` of ``store``."""
    return f"tracking.uri={store}", f"tracking.experiment={experiment}"


@pytest.fixture(scope="module")
def swept(store: str, tmp_path_factory: pytest.TempPathFactory) -> pipeline.Sweep:
    """``pipeline.sweep(*SWEEP)`` into experiment ``sweep`` of the store, from a temp dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("sweep"))
        return pipeline.sweep(*SWEEP, *into(store, "sweep"))


def test_import_pipeline_loads_no_api_and_names_it_lazily():
    code = (
        "import sys, pipeline; "
        "print(sorted(m for m in ('pipeline.api', 'hydra', 'torch', 'mlflow') if m in sys.modules))"
        "; print(callable(pipeline.train), pipeline.sweep.__module__, "
        "'pipeline.api' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "True pipeline.api True"]


def test_the_package_exports_exactly_the_apis_names():
    """``pipeline.__all__`` repeats ``pipeline.api.__all__`` (importing the API to read it
    would import Hydra into every command): the two lists name the same functions."""
    import pipeline
    import pipeline.api

    assert set(pipeline.__all__) - {"__version__"} == set(pipeline.api.__all__)
    assert all(getattr(pipeline, name) is not None for name in pipeline.api.__all__)


@pytest.mark.slow  # the reference run of the command (a session fixture that other files share)
def test_train_gives_the_run_that_the_command_trains(reference_run, store, in_tmp, capfd):
    _, cli_dir = reference_run
    cli_uri = sqlite_uri(cli_dir / "mlruns")
    (cli_run,) = runs_of(cli_uri)

    run = pipeline.train(*into(store, "reference"))

    epochs = [line for line in capfd.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert epochs == REFERENCE_OUTPUT.read_text().splitlines()
    assert (run.name, run.status) == (cli_run.info.run_name, "FINISHED") == ("default", "FINISHED")
    assert run.metrics == cli_run.data.metrics  # the same numbers, to the last bit
    assert {k: str(v) for k, v in run.params.items()} == cli_run.data.params
    assert (run.params["optim.lr"], run.params["epochs"]) == (0.1, 1000)
    curve = run.history()
    assert list(curve.columns) == ["run_id", "step", "value"]
    assert curve["value"].tolist() == cost_history(cli_uri, cli_run.info.run_id)
    assert curve["step"].tolist() == list(range(1001))


def test_train_twice_in_one_interpreter(store, in_tmp):
    first = pipeline.train("epochs=5", *into(store, "twice"))
    assert not GlobalHydra.instance().is_initialized()
    second = pipeline.train("epochs=5", "optim.lr=0.05", *into(store, "twice"))
    assert not GlobalHydra.instance().is_initialized()
    assert (first.name, second.name) == ("epochs=5", "epochs=5,optim.lr=0.05")
    assert first.metrics["final_cost"] != second.metrics["final_cost"]
    stored = {r.info.run_id: r for r in runs_of(store, "twice")}
    for run in (first, second):
        assert run.metrics == stored[run.id].data.metrics
        assert stored[run.id].info.status == "FINISHED"


@pytest.mark.parametrize(
    ("override", "error"), [("foo=1", OverrideError), ("optim.lr=-1", ConfigError)]
)
def test_a_mistake_raises_the_commands_message_and_creates_no_run(override, error, store, in_tmp):
    cli = run_cli(override, *into(store, "mistakes"), cwd=in_tmp)
    assert cli.returncode == 1
    message = cli.stderr.replace(HYDRA_HINT, "").strip()

    with pytest.raises(error) as raised:
        pipeline.train(override, *into(store, "mistakes"))

    assert isinstance(raised.value, PipelineError)
    assert str(raised.value) == message
    assert runs_of(store, "mistakes") == []
    assert not GlobalHydra.instance().is_initialized()


def test_a_call_leaves_signal_handlers_argv_and_logging_as_it_found_them(store, in_tmp):
    def mine(signum, frame):
        raise RuntimeError("the caller's handler")

    before = signal.signal(signal.SIGTERM, mine)
    argv, root = sys.argv[:], logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        pipeline.train("epochs=2", *into(store, "leaves"))
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, before)
    assert sys.argv == argv
    assert (root.handlers, root.level) == (handlers, level)


class InterruptAtFirstEpoch(logging.Handler):
    """Sends this process a SIGINT when the loop logs its first epoch (Ctrl-C in a notebook)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Epoch"):
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_while_training_ends_the_run_killed(store, in_tmp):
    loop_log = logging.getLogger("pipeline.core.loop")
    stopper = InterruptAtFirstEpoch()
    loop_log.addHandler(stopper)
    try:
        with pytest.raises(KeyboardInterrupt, match=r"^Interrupted: the run was marked KILLED\.$"):
            pipeline.train("epochs=100000", *into(store, "interrupted"))
    finally:
        loop_log.removeHandler(stopper)
    (run,) = runs_of(store, "interrupted")
    assert run.info.status == "KILLED"
    assert len(cost_history(store, run.info.run_id)) < 100  # stopped at an epoch boundary, early
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class InterruptWhenLogged(logging.Handler):
    """Sends this process a SIGINT when its logger logs a message that starts with ``start``."""

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.start):
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_a_sweep_ends_every_unfinished_run_killed(store, in_tmp):
    """A kernel interrupt while a batched sweep trains: the jobs' runs and the sweep's parent
    end KILLED, and the call raises what ``train`` raises."""
    group_log = logging.getLogger("pipeline.group")
    stopper = InterruptWhenLogged("Training jobs")  # logged once the jobs' runs are open
    group_log.addHandler(stopper)
    try:
        with pytest.raises(KeyboardInterrupt, match=r"^Interrupted: the run was marked KILLED\.$"):
            pipeline.sweep("epochs=100000", "optim.lr=0.01,0.1", *into(store, "sweep-stopped"))
    finally:
        group_log.removeHandler(stopper)
    parent, jobs = sweep_runs(store, "sweep-stopped")
    assert len(jobs) == 2
    assert [run.info.status for run in [parent, *jobs]] == ["KILLED"] * 3
    for job in jobs:
        assert len(cost_history(store, job.info.run_id)) < 100_000  # stopped early
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not GlobalHydra.instance().is_initialized()


SECOND_CALL = """
import json
import sys
import pipeline

heavy = ("torch", "mlflow", "hydra", "omegaconf", "pandas")
assert not any(name.split(".")[0] in heavy for name in sys.modules), "imported before the call"
before = set(sys.modules)
pipeline.train("epochs=2", *sys.argv[1:])
first = set(sys.modules) - before
pipeline.train("epochs=3", *sys.argv[1:])
second = set(sys.modules) - before - first
heavy_first = sorted({name.split(".")[0] for name in first} & set(heavy))
print(json.dumps({"heavy": heavy_first, "first": len(first), "second": sorted(second)}))
"""


@pytest.mark.slow  # a fresh interpreter, so that the first call pays the imports (~4 s)
def test_a_second_call_imports_nothing_the_first_did_not(store, tmp_path):
    """The first ``train`` of an interpreter imports torch, MLflow, Hydra, OmegaConf and
    pandas (hundreds of modules); the second imports no module at all."""
    result = subprocess.run(
        [sys.executable, "-c", SECOND_CALL, *into(store, "second-call")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert imported["heavy"] == ["hydra", "mlflow", "omegaconf", "pandas", "torch"]
    assert imported["first"] > 500
    assert imported["second"] == []
    assert len(runs_of(store, "second-call")) == 2


def test_sweep_runs_its_jobs_through_the_batched_launcher_under_one_parent(swept, store):
    sweep = swept
    parent, children = sweep_runs(store, "sweep")
    assert sweep.parent_id == parent.info.run_id
    assert parent.data.tags["sweep.launcher"] == "VectorizedLauncher"
    assert {r.id for r in sweep.runs} == {c.info.run_id for c in children}
    assert [r.name for r in sweep.runs] == [
        "optim.lr=0.01,seed=1", "optim.lr=0.01,seed=2", "optim.lr=0.1,seed=1",
        "optim.lr=0.1,seed=2",
    ]  # fmt: skip
    for run in sweep.runs:
        assert (run.status, run.parent_run_id) == ("FINISHED", sweep.parent_id)
    assert sweep.metric == "objective"
    best = min(sweep.runs, key=lambda r: r.metrics["objective"])
    assert sweep.best.id == best.id == parent.data.tags["best_run_id"]


def test_a_sweeps_run_equals_the_same_configuration_trained_alone(swept, store, in_tmp):
    (job,) = [r for r in swept.runs if r.name == "optim.lr=0.1,seed=2"]
    alone = pipeline.train("data=iris", "epochs=30", "optim.lr=0.1", "seed=2",
                           *into(store, "alone"))  # fmt: skip
    assert alone.metrics == pytest.approx(job.metrics, rel=1e-6)
    assert alone.history()["value"].tolist() == pytest.approx(job.history()["value"].tolist())


def test_runs_and_to_frame_give_one_row_a_run_with_params_and_final_metrics(swept, store):
    sweep = swept
    frame = pipeline.runs("sweep", tracking_uri=store)
    assert list(frame.columns[:4]) == ["run_id", "name", "status", "parent_run_id"]
    assert len(frame) == 5  # the parent and its four runs, oldest first
    assert frame["run_id"].iloc[0] == sweep.parent_id
    jobs = sweep.to_frame().set_index("run_id")
    assert list(jobs.index) == [r.id for r in sweep.runs]
    for run in sweep.runs:
        row = jobs.loc[run.id]
        assert (row["name"], row["parent_run_id"]) == (run.name, sweep.parent_id)
        assert (row["optim.lr"], row["seed"], row["data"]) == (
            run.params["optim.lr"], run.params["seed"], "iris",
        )  # fmt: skip
        assert row["final_cost"] == run.metrics["final_cost"]
        assert row["test_accuracy"] == run.metrics["test_accuracy"]
    seed_one = pipeline.runs("sweep", filter="params.seed = '1'", tracking_uri=store)
    assert sorted(seed_one["name"]) == ["optim.lr=0.01,seed=1", "optim.lr=0.1,seed=1"]


def test_history_is_a_long_frame_of_every_runs_curve(swept, store):
    sweep, uri = swept, store
    curves = pipeline.history(sweep.runs)
    assert list(curves.columns) == ["run_id", "step", "value"]
    assert list(curves["run_id"].unique()) == [r.id for r in sweep.runs]
    for run in sweep.runs:
        mine = curves[curves["run_id"] == run.id]
        assert mine["value"].tolist() == cost_history(uri, run.id)
        assert mine["step"].tolist() == list(range(31))
    assert pipeline.history(sweep.runs[0].id, "val_cost", tracking_uri=uri)["value"].tolist() == (
        cost_history(uri, sweep.runs[0].id, "val_cost")
    )


def test_load_gives_class_names_and_the_torch_module(swept, store):
    sweep, uri = swept, store
    model = sweep.best.model()
    rows = pd.DataFrame(ROWS, columns=FEATURES)
    labels = model.predict(rows)
    assert model.features == FEATURES
    assert set(labels) <= set(model.classes) == {"setosa", "versicolor", "virginica"}
    assert isinstance(model.module, torch.nn.Module)
    with torch.no_grad():
        logits = model.module(torch.tensor(ROWS))
    assert labels.tolist() == [model.classes[i] for i in logits.argmax(1).tolist()]
    by_uri = pipeline.load(f"runs:/{sweep.best.id}/classifier", tracking_uri=uri)
    assert by_uri.predict_proba(rows).equals(model.predict_proba(rows))
    with pytest.raises(PipelineError, match=r"^No run 'nope' in"):
        pipeline.load("nope", tracking_uri=uri)


def test_reading_mistakes_are_one_line_errors(swept, store):
    with pytest.raises(PipelineError, match=r"^No experiment 'nope' in .* Fix: "):
        pipeline.runs("nope", tracking_uri=store)
    with pytest.raises(PipelineError, match=r"^Cannot search the runs with filter .* Fix: "):
        pipeline.runs("sweep", filter="params.seed ~ 1", tracking_uri=store)
    with pytest.raises(PipelineError, match=r"^No tracking store at .* Fix: "):
        pipeline.runs(tracking_uri=sqlite_uri(Path("/nonexistent")))


def test_a_sweep_with_a_failed_job_raises_sweep_failed_with_the_sweep(store, in_tmp):
    with pytest.raises(SweepFailed) as raised:
        pipeline.sweep("epochs=5", "optim.lr=0.1,-1", *into(store, "failed"))
    assert str(raised.value) == (
        "Sweep had failures: 1 of 2 jobs did not finish (jobs 1; see the summary above)"
    )
    failed = raised.value.sweep
    assert [(r.name, r.status) for r in failed.runs] == [("optim.lr=0.1", "FINISHED")]
    parent = MlflowClient(store).get_run(failed.parent_id)
    assert parent.info.status == "FAILED"
