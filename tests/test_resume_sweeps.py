"""Sweeps pick up where they stopped, and a cluster job past its time limit is requeued and
resumes its own run; any number of first runs at once on a fresh store all finish."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    cost_history,
    run_cli,
    runs_of,
    sqlite_uri,
    start_cli,
    sweep_runs,
    train_into,
)

JOB = ("data=iris", "batch_size=16", "epochs=2000")
SWEEP = ("-m", "seed=1,2,3", *JOB, "checkpoint.every_s=0.5", "tracking.flush_every_s=0.3")


def job_runs(uri: str) -> list:
    return [r for r in runs_of(uri) if "sweep.dir" not in r.data.tags]


def checkpoint_epochs(uri: str) -> dict[str, int]:
    """Each job run's checkpointed epoch (-1 without one)."""
    return {
        r.info.run_name: json.loads(r.data.tags.get("checkpoint", '{"epoch": -1}'))["epoch"]
        for r in job_runs(uri)
    }


def every_job_checkpointed(uri: str) -> bool:
    epochs = checkpoint_epochs(uri).values()
    return len(epochs) == 3 and min(epochs) >= 0


def wait_until(condition, process, what: str) -> None:
    deadline = time.monotonic() + 180
    while not condition():
        assert time.monotonic() < deadline, what
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)


@pytest.mark.slow
def test_a_batched_sweep_killed_then_stopped_resumes_every_job_from_its_checkpoint(tmp_path):
    """``kill -9`` leaves every job of the batch RUNNING with its process gone; the same
    command resumes them all, batched again; Ctrl-C stops that batch at an epoch boundary,
    every job checkpointed and KILLED; the same command finishes them, and each history equals
    a run trained alone. The jobs follow a learning-rate schedule, so that each resumes the
    scheduler's state from its checkpoint too."""
    uri = sqlite_uri(tmp_path / "mlruns")
    names = ["seed=1", "seed=2", "seed=3"]
    sweep = (*SWEEP, "scheduler=exponential")
    process = start_cli(*sweep, cwd=tmp_path)
    try:
        wait_until(lambda: every_job_checkpointed(uri), process, "the batch never checkpointed")
        process.kill()
        process.wait(timeout=60)
    finally:
        process.kill()
    first = {r.info.run_name: r for r in job_runs(uri)}
    assert sorted(first) == names
    assert {r.info.status for r in first.values()} == {"RUNNING"}  # its process is gone
    assert all(r.data.tags["batch.jobs"] == "3" for r in first.values())
    killed_at = checkpoint_epochs(uri)

    process = start_cli(*sweep, cwd=tmp_path)
    try:
        wait_until(lambda: all(checkpoint_epochs(uri)[n] > killed_at[n] for n in names),
                   process, "the resumed batch never checkpointed")  # fmt: skip
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    for name, run in first.items():
        assert f"Resuming run {name!r} ({run.info.run_id}) from epoch" in stdout
    assert "Training jobs 0-2 as one batch of 3" in stdout
    assert {r.info.run_name: r.info.status for r in job_runs(uri)} == dict.fromkeys(names, "KILLED")

    again = run_cli(*sweep, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    _, runs = sweep_runs(uri)
    assert {r.info.run_name: r.info.run_id for r in runs} == {
        name: r.info.run_id for name, r in first.items()
    }
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["resume.count"] == "2" for r in runs)
    _, alone = train_into(sqlite_uri(tmp_path / "alone"), *JOB, "scheduler=exponential", "seed=2")
    resumed = next(r for r in runs if r.info.run_name == "seed=2")
    for key in ("cost", "val_cost", "lr"):
        expected = cost_history(sqlite_uri(tmp_path / "alone"), alone.info.run_id, key)
        assert len(expected) >= 2000, key
        assert cost_history(uri, resumed.info.run_id, key) == expected, key


@pytest.mark.slow
def test_an_interrupted_sweep_picks_up_where_it_stopped(tmp_path):
    """The basic launcher's jobs one after another: the FINISHED one is skipped, the stopped
    one resumed, the one never started trained."""
    uri = sqlite_uri(tmp_path / "mlruns")
    process = start_cli(*SWEEP, "hydra/launcher=basic", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not any(
            r.info.run_name == "seed=2" and "progress.epoch" in r.data.tags for r in job_runs(uri)
        ):
            assert time.monotonic() < deadline, "the second job never started"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)  # it stops at an epoch boundary, with a checkpoint
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    first = {r.info.run_name: r for r in job_runs(uri)}
    assert {name: r.info.status for name, r in first.items()} == {
        "seed=1": "FINISHED",
        "seed=2": "KILLED",
    }

    again = run_cli(*SWEEP, "hydra/launcher=basic", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    skipped = "Job 0 skipped: this configuration already FINISHED as run 'seed=1' ("
    assert skipped + first["seed=1"].info.run_id in again.stdout
    assert f"Resuming run 'seed=2' ({first['seed=2'].info.run_id}) from epoch" in again.stdout
    parent, runs = sweep_runs(uri)  # one parent: the relaunch continued it
    assert parent.info.status == "FINISHED"
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == ["seed=1", "seed=2", "seed=3"]  # one run per configuration
    assert all(r.info.status == "FINISHED" for r in runs)
    assert by_name["seed=2"].info.run_id == first["seed=2"].info.run_id
    for run in runs:
        history = MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "cost")
        assert sorted(m.step for m in history) == list(range(2001))
    summary = MlflowClient(tracking_uri=uri).download_artifacts(
        parent.info.run_id, "summary.txt", str(tmp_path)
    )
    assert len(Path(summary).read_text().strip().splitlines()) == 4  # a header, three jobs

    forced = run_cli(*SWEEP, "hydra/launcher=basic", "sweep.resume=false", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "skipped" not in forced.stdout
    assert len(job_runs(uri)) == 6  # every job ran again, as a new run


@pytest.mark.slow
def test_a_submitit_job_warned_of_its_time_limit_is_requeued_and_resumes_its_run(tmp_path):
    """submitit warns a job with SIGUSR2 before its time limit; with a limit of 10 minutes or less
    any warning counts as the time limit (submitit's guaranteed walltime is then 0). The test
    sends it itself once the run has checkpointed, instead of waiting for the limit: the
    job checkpoints, is requeued, and the next attempt continues the same run. Its history
    equals a run trained without a stop (in this process, meanwhile)."""
    # ~4 s of training on a quiet machine (longer on a busy one): the warning comes after the
    # first checkpoint, at ~0.5 s, well before the end. Not calibrated: a calibration on a busy
    # moment made a run that ended before its warning.
    config = ("data=iris", "batch_size=16", "epochs=8000", "log_every=5000",
              "checkpoint.every_s=0.5", "tracking.flush_every_s=0.3")  # fmt: skip
    uri = sqlite_uri(tmp_path / "mlruns")
    launcher = ("hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                "+hydra.launcher.max_num_timeout=3")  # fmt: skip
    sweep = start_cli("-m", *config, *launcher, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (running := [r for r in job_runs(uri) if "checkpoint" in r.data.tags]):
            assert time.monotonic() < deadline, "the job never checkpointed"
            assert sweep.poll() is None, sweep.communicate()
            time.sleep(0.1)
        os.kill(int(running[0].data.tags["process.pid"]), signal.SIGUSR2)  # the job's process
        _, reference = train_into(sqlite_uri(tmp_path / "reference"), *config)
        _, stderr = sweep.communicate(timeout=180)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, stderr
    parent, (run,) = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert run.info.status == "FINISHED"
    assert run.data.tags["resume.count"] == "1"  # requeued once, and the same run continued
    expected = cost_history(sqlite_uri(tmp_path / "reference"), reference.info.run_id)
    assert cost_history(uri, run.info.run_id) == expected
    (log,) = tmp_path.glob("multirun/*/*/.submitit/*/*_log.out")
    assert "this job is timed-out" in log.read_text()
    (errors,) = tmp_path.glob("multirun/*/*/.submitit/*/*_log.err")
    assert "Traceback" not in log.read_text() + errors.read_text()


@pytest.mark.slow
def test_eight_first_runs_at_once_on_a_fresh_directory_all_finish(tmp_path):
    processes = [
        start_cli(f"seed={seed}", "epochs=20", "log_every=10", cwd=tmp_path) for seed in range(1, 9)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    runs = runs_of(uri)  # the store opens
    assert sorted(r.data.params["seed"] for r in runs) == [str(s) for s in range(1, 9)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(cost_history(uri, r.info.run_id)) == 21 for r in runs)
    assert [p.name for p in (tmp_path / "mlruns").glob(".*.new")] == []  # nothing half-made
