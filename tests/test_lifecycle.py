"""Run lifecycle: exceptions mark FAILED, Ctrl-C and SIGTERM mark KILLED; metrics are kept."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import cost_history, runs_of, sqlite_uri, start_cli, train_into
from pipeline.runtime import interrupts
from pipeline.runtime.job import JobContext
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.lifecycle import RunStart, tracked_run
from pipeline.tracking.store.access import prepare_store


def open_run(store: str, experiment_id: str):
    start = RunStart(run_name="t", description="", tags={}, flush_every_s=60)
    return tracked_run(store, experiment_id, JobContext(), start)


def test_an_exception_marks_the_run_failed_and_keeps_its_metrics(store):
    experiment_id = prepare_store(store, "lifecycle")

    def fail_after_two_epochs() -> None:
        with open_run(store, experiment_id) as metrics:
            metrics.log(0, {"cost": 1.5})
            metrics.log(1, {"cost": 1.25})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_after_two_epochs()
    (run,) = runs_of(store, "lifecycle")
    assert run.info.status == "FAILED"
    assert cost_history(store, run.info.run_id) == [1.5, 1.25]
    assert mlflow.active_run() is None


def test_keyboard_interrupt_marks_the_run_killed(store):
    experiment_id = prepare_store(store, "lifecycle")
    with pytest.raises(KeyboardInterrupt), open_run(store, experiment_id):
        raise KeyboardInterrupt
    (run,) = runs_of(store, "lifecycle")
    assert run.info.status == "KILLED"


@pytest.mark.parametrize("data", ["toy", "iris"])
def test_a_kept_checkpoint_is_the_finished_runs_final_state(store, data):
    """``checkpoint.keep=true`` on a run shorter than ``checkpoint.every_s``: no checkpoint was
    due while it trained, yet the FINISHED run keeps one, of its last epoch, equal to its model."""
    _, run = train_into(store, f"data={data}", "epochs=30", "checkpoint.keep=true")
    assert run.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=store)
    checkpoints = Checkpoints(client, run)
    assert checkpoints.latest["epoch"] == 30
    assert checkpoints.previous is None  # no checkpoint was taken while training
    state = checkpoints.load()
    assert state["epoch"] == 30
    logged = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    if data == "iris":  # standardization, then the model
        logged = logged[1]
    weights = logged.state_dict()
    assert state["model"].keys() == weights.keys()
    for key, value in state["model"].items():
        assert torch.equal(value, weights[key]), key


def test_without_keep_a_finished_run_keeps_no_checkpoint(store):
    _, run = train_into(store, "epochs=30", "checkpoint.every_s=0.000001")  # one every epoch
    assert run.info.status == "FINISHED"
    assert "checkpoint" not in run.data.tags
    assert MlflowClient(tracking_uri=store).list_artifacts(run.info.run_id, "checkpoints") == []


@pytest.fixture
def stop_signals() -> Iterator[None]:
    """The stop signals routed through ``interrupts`` for one test, as ``pipeline.train`` does."""
    before = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS}
    interrupts.install()
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR2])
def test_a_signal_after_training_lets_the_run_finish_then_stops(store, stop_signals, signum):
    """Training is over, the model and the last metrics are being written: the run ends
    FINISHED with all of them (not KILLED, its checkpoint already gone), then the process stops
    (seen in CI: a submitit time-limit signal at this moment restarted a finished run from 0)."""
    experiment_id = prepare_store(store, "lifecycle")

    def signalled_during_the_last_writes() -> None:
        with open_run(store, experiment_id) as metrics:
            metrics.log(0, {"cost": 1.5})
            os.kill(os.getpid(), signum)  # noted, not raised: the writes below still happen
            metrics.log_summary({"final_cost": 1.25})

    with pytest.raises(interrupts.Stop) as stopped:
        signalled_during_the_last_writes()
    assert stopped.value.after_run
    assert stopped.value.signum == signum
    (run,) = runs_of(store, "lifecycle")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final_cost"] == 1.25
    assert cost_history(store, run.info.run_id) == [1.5]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_training_kills_the_run_after_live_flushes(tmp_path, signum):
    """A long run shows progress in the store while it trains, and ends KILLED on a signal."""
    uri = sqlite_uri(tmp_path / "mlruns")
    process = start_cli("epochs=100000000", "tracking.flush_every_s=0.5", cwd=tmp_path)
    try:
        assert process.stdout.readline().startswith("Epoch    0/"), "training did not start"
        live = []
        deadline = time.monotonic() + 120
        while len(live) < 10 and time.monotonic() < deadline:
            time.sleep(0.5)
            (run,) = runs_of(uri)
            live = cost_history(uri, run.info.run_id)
        assert len(live) >= 10, "no metrics were flushed while the run was training"
        assert run.info.status == "RUNNING"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "Interrupted: the run was marked KILLED." in stderr
    (run,) = runs_of(uri)
    assert run.info.status == "KILLED"
    assert len(cost_history(uri, run.info.run_id)) > len(live)
