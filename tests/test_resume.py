"""Nothing is lost when a run is interrupted: ``kill -9`` (during training, a flush, a checkpoint
write) or Ctrl-C, then ``python -m pipeline.resume``: the same run, FINISHED, with one value per
epoch, bit-identical to the same config trained without a stop. Real processes, real signals;
every resume goes through the command's own code, its check of the run's state included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    cost_history,
    requires_cuda,
    run_cli,
    runs_of,
    sqlite_uri,
    start_cli,
    train_into,
)
from pipeline import resume as resume_command
from pipeline.errors import PipelineError
from pipeline.tracking.run.checkpoints import Checkpoints

# Mini-batches, Adam (optimizer state) and a validation split (four metrics an epoch). Killed
# from outside once a checkpoint is in the store, it trains long enough (~4 s on 2 cores) to be
# killed mid-way.
MINI_BATCHES = ("data=iris", "batch_size=16", "optim=adam", "epochs=1000")
# The same, shorter, for the kills at a failpoint (deterministic, whatever the machine's speed):
# 1301 epochs of four metrics are 5204 values: three chunks (CHUNK, 2500) of one flush.
SHORT = ("data=iris", "batch_size=16", "optim=adam", "epochs=1300")
# Full batch, SGD with momentum (~3 s).
FULL_BATCH = ("optim.momentum=0.9", "epochs=6000")
OFTEN = ("checkpoint.every_s=0.5", "tracking.flush_every_s=0.3")
FOUR = ("cost", "accuracy", "val_cost", "val_accuracy")
KEYS = {MINI_BATCHES: FOUR, SHORT: FOUR, FULL_BATCH: ("cost",)}
# On a GPU, with dropout: its masks come from CUDA's random generator, so a resumed run has the
# uninterrupted history only if its checkpoint restored that generator.
ON_THE_GPU = ("device=cuda", "model=mlp", "model.dropout=0.5", *MINI_BATCHES)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, dict[str, list]]:
    """Each config's histories, trained without a stop (in this process)."""
    uri = sqlite_uri(tmp_path_factory.mktemp("uninterrupted"))
    found = {}
    for config in KEYS:
        _, run = train_into(uri, *config)
        found[config] = {key: cost_history(uri, run.info.run_id, key) for key in KEYS[config]}
    return found


def wait_for(condition, timeout_s: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def the_run(uri: str):
    runs = runs_of(uri)
    return runs[-1] if runs else None


def checkpointed(uri: str) -> bool:
    run = the_run(uri)
    return run is not None and "checkpoint" in run.data.tags


Command = Callable[..., str]


@pytest.fixture
def resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> Command:
    """``resume(*args)``: ``python -m pipeline.resume args`` run by the command's ``main`` from
    ``tmp_path``, which exits 0: its output. The command checks the run's state and its recorded
    config here, then trains in the ``python -m pipeline.train`` process it starts."""
    monkeypatch.chdir(tmp_path)  # where that process writes its outputs/

    def command(*args: str) -> str:
        capfd.readouterr()
        status = resume_command.main(list(args))
        out, err = capfd.readouterr()
        assert status == 0, (out + err)[-3000:]
        return out + err

    return command


def listed_line(run, saved: int | None) -> str:
    """The lines ``resume --list`` prints for ``run``, left RUNNING by a process that is gone
    (``saved``: its checkpoint's epoch; ``?``: no flush had finished)."""
    tags, run_id = run.data.tags, run.info.run_id
    where = "no checkpoint" if saved is None else f"checkpoint at epoch {saved}"
    return (
        f"  {run_id}  {run.info.run_name}  RUNNING, process gone  epoch "
        f"{tags.get('progress.epoch', '?')}/{run.data.params['epochs']} recorded, {where}\n"
        f"    python -m pipeline.resume {run_id}\n"
    )


def assert_complete(uri: str, run_id: str, expected: dict[str, list]) -> None:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key, values in expected.items():
        history = client.get_metric_history(run_id, key)
        steps = [m.step for m in history]
        assert sorted(steps) == list(range(len(values))), f"{key}: one value per epoch"
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == values, key
    assert "checkpoint" not in run.data.tags  # removed once FINISHED (checkpoint.keep=false)
    assert "checkpoints" not in {a.path for a in client.list_artifacts(run_id)}
    mlflow.set_tracking_uri(uri)
    for model in ("model", "classifier"):
        assert mlflow.models.get_model_info(f"runs:/{run_id}/{model}").signature is not None


def killed_run(
    tmp_path: Path, config: tuple, *extra: str, env: dict | None = None, kill=None
) -> tuple:
    """Start training ``config`` (checkpoints and flushes often, then ``extra``);
    ``kill(process, uri)`` stops it (else a failpoint in ``env`` does): the store's URI and
    the run, which is left RUNNING or KILLED."""
    uri = sqlite_uri(tmp_path / "mlruns")
    process = start_cli(*config, *OFTEN, *extra, cwd=tmp_path, env=env)
    try:
        if kill is not None:
            kill(process, uri)
        process.wait(timeout=120)
    finally:
        process.kill()
    (run,) = runs_of(uri)
    assert run.info.status in ("RUNNING", "KILLED")
    return uri, run


def kill_9_after_a_checkpoint(process: subprocess.Popen, uri: str) -> None:
    wait_for(lambda: checkpointed(uri), what="a checkpoint")
    time.sleep(0.3)  # a few more epochs, past the checkpoint
    process.send_signal(signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("config", [MINI_BATCHES, FULL_BATCH], ids=["mini-batches", "full-batch"])
def test_kill_9_while_training_then_resume_gives_the_uninterrupted_history(
    tmp_path, uninterrupted, resume, config
):
    uri, killed = killed_run(tmp_path, config, kill=kill_9_after_a_checkpoint)
    assert killed.info.status == "RUNNING"  # nothing could close it
    saved = json.loads(killed.data.tags["checkpoint"])["epoch"]
    listed = resume("--list", "--tracking-uri", uri)
    assert listed.startswith("Interrupted runs of experiment 'softmax-regression', newest first:")
    assert listed_line(killed, saved) in listed  # its process is gone: it may be resumed
    output = resume(killed.info.run_id, "--tracking-uri", uri)
    name = killed.info.run_name
    assert f"Resuming run '{name}' ({killed.info.run_id}) from epoch {saved + 1}\n" in output
    assert_complete(uri, killed.info.run_id, uninterrupted[config])
    run = MlflowClient(tracking_uri=uri).get_run(killed.info.run_id)
    assert run.data.tags["resume.count"] == "1"
    assert run.data.tags["resume.epochs"] == str(saved + 1)
    assert (tmp_path / "mlruns").is_dir()
    assert len(runs_of(uri)) == 1


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_flush_before_the_first_checkpoint(
    tmp_path, uninterrupted, resume
):
    """Killed between two chunks of one flush (after the second of the 5204 values' one flush at
    the end of training; no timer fires, whatever the machine's speed): the store has epochs
    past its ``progress.epoch`` tag, and no checkpoint. ``--list`` says so; resumed from epoch
    0, the history is whole."""
    env = {"PIPELINE_KILL_AT": "flush:2"}
    one_flush = ("checkpoint.every_s=600", "tracking.flush_every_s=600")
    uri, killed = killed_run(tmp_path, SHORT, *one_flush, env=env)
    assert "checkpoint" not in killed.data.tags
    client = MlflowClient(tracking_uri=uri)
    costs = {m.step for m in client.get_metric_history(killed.info.run_id, "cost")}
    assert int(killed.data.tags.get("progress.epoch", -1)) < max(costs)  # half a flush
    assert killed.info.status == "RUNNING"
    assert listed_line(killed, None) in resume("--list", "--tracking-uri", uri)
    output = resume(killed.info.run_id, "--tracking-uri", uri)
    assert f"({killed.info.run_id}) from epoch 0 (it has no checkpoint)\n" in output
    assert_complete(uri, killed.info.run_id, uninterrupted[SHORT])


@pytest.mark.slow
def test_kill_9_while_a_checkpoint_is_written(tmp_path, uninterrupted, resume):
    """Killed with the second checkpoint written but not committed: the first one is used.
    (Checkpoints every 0.1 s: the second comes long before the 1300 epochs end.)"""
    env = {"PIPELINE_KILL_AT": "checkpoint:2"}
    uri, killed = killed_run(tmp_path, SHORT, "checkpoint.every_s=0.1", env=env)
    first = json.loads(killed.data.tags["checkpoint"])
    assert "checkpoint.previous" not in killed.data.tags  # the second never became the latest
    assert killed.info.status == "RUNNING"
    output = resume(killed.info.run_id, "--tracking-uri", uri)
    assert f"({killed.info.run_id}) from epoch {first['epoch'] + 1}\n" in output
    assert_complete(uri, killed.info.run_id, uninterrupted[SHORT])
    run = MlflowClient(tracking_uri=uri).get_run(killed.info.run_id)
    assert run.data.tags["resume.epochs"] == str(first["epoch"] + 1)


@pytest.mark.slow
def test_ctrl_c_then_the_resume_command(tmp_path, uninterrupted, resume):
    """The resume itself through the console; ``--list`` and the second resume, which start no
    process, through the command's ``main``."""

    def ctrl_c(process: subprocess.Popen, uri: str) -> None:
        wait_for(lambda: checkpointed(uri), what="a checkpoint")
        process.send_signal(signal.SIGINT)

    uri, stopped = killed_run(tmp_path, FULL_BATCH, kill=ctrl_c)
    run_id = stopped.info.run_id
    assert stopped.info.status == "KILLED"
    listed = resume("--list", "--tracking-uri", uri)
    assert f"{run_id}  {stopped.info.run_name}  KILLED" in listed
    assert f"python -m pipeline.resume {run_id}" in listed

    result = run_cli(run_id, cwd=tmp_path, module="pipeline.resume")
    assert result.returncode == 0, result.stderr
    assert f"Resuming run '{stopped.info.run_name}' ({run_id}) from epoch" in result.stdout
    assert_complete(uri, run_id, uninterrupted[FULL_BATCH])

    before = MlflowClient(tracking_uri=uri).get_run(run_id)
    name = stopped.info.run_name
    finished = resume(run_id, "--tracking-uri", uri)
    assert finished == f"Run {run_id} ({name}) is FINISHED: nothing to resume.\n"
    after = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert (after.info.end_time, after.data.tags) == (before.info.end_time, before.data.tags)


@pytest.mark.slow
@requires_cuda
def test_device_cuda_trains_and_resumes_with_the_gpus_random_state(tmp_path, resume):
    """``device=cuda`` trains on the GPU; killed while its second checkpoint is written, the run
    resumes from the first, whose CUDA generator state makes the dropout masks the same."""
    alone_uri = sqlite_uri(tmp_path / "alone")
    _, alone = train_into(alone_uri, *ON_THE_GPU)
    assert alone.info.status == "FINISHED"
    assert alone.data.tags["env.device"].startswith("cuda (")
    expected = {key: cost_history(alone_uri, alone.info.run_id, key) for key in KEYS[MINI_BATCHES]}
    env = {"PIPELINE_KILL_AT": "checkpoint:2"}
    uri, killed = killed_run(tmp_path, ON_THE_GPU, "checkpoint.every_s=0.1", env=env)
    saved = Checkpoints(MlflowClient(tracking_uri=uri), killed).load()
    assert saved["rng"]["cuda"], "the checkpoint holds CUDA's generator state"
    output = resume(killed.info.run_id, "--tracking-uri", uri)
    assert f"({killed.info.run_id}) from epoch {saved['epoch'] + 1}\n" in output
    assert_complete(uri, killed.info.run_id, expected)


def bad_resume(cwd: Path, uri: str, *args: str) -> str:
    """``python -m pipeline.resume args`` in this process: its one line; nothing changed."""
    before = [(r.info.run_id, r.info.status, r.info.end_time) for r in runs_of(uri)]
    with pytest.raises(PipelineError) as raised:
        resume_command.main([*args, "--tracking-uri", uri])
    assert "\n" not in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert [(r.info.run_id, r.info.status, r.info.end_time) for r in runs_of(uri)] == before
    return str(raised.value)


@pytest.fixture(scope="module")
def store_with_runs(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("bad-resume")
    uri = sqlite_uri(cwd / "mlruns")
    _, finished = train_into(uri, "epochs=20")
    return cwd, uri, finished


def test_bad_resume_inputs_are_one_line_and_change_nothing(store_with_runs):
    cwd, uri, finished = store_with_runs
    client = MlflowClient(tracking_uri=uri)
    assert "No run '0123abcd'" in bad_resume(cwd, uri, "0123abcd")
    live = client.create_run(finished.info.experiment_id, run_name="live")
    client.set_tag(live.info.run_id, "process.host", os.uname().nodename)
    client.set_tag(live.info.run_id, "process.pid", str(os.getpid()))  # this very process
    assert "is still running (process" in bad_resume(cwd, uri, live.info.run_id)
    client.set_terminated(live.info.run_id, "KILLED")
    assert "has no recorded config.yaml" in bad_resume(cwd, uri, live.info.run_id)
    diverged = client.create_run(finished.info.experiment_id, run_name="diverged")
    client.set_tag(diverged.info.run_id, "failure_reason", "Training diverged: cost is nan")
    client.set_tag(diverged.info.run_id, "failure.resumable", "false")
    client.set_terminated(diverged.info.run_id, "FAILED")
    assert "failed in a way that would repeat" in bad_resume(cwd, uri, diverged.info.run_id)


def test_a_config_that_no_longer_composes_is_one_line(store_with_runs, tmp_path):
    cwd, uri, finished = store_with_runs
    client = MlflowClient(tracking_uri=uri)
    stale = client.create_run(finished.info.experiment_id, run_name="stale")
    (tmp_path / "config.yaml").write_text("optim: {lr: 0.1, gone: 1}\nseed: 1\n")
    client.log_artifact(stale.info.run_id, str(tmp_path / "config.yaml"))
    client.set_terminated(stale.info.run_id, "KILLED")
    message = bad_resume(cwd, uri, stale.info.run_id)
    assert f"The recorded config of run {stale.info.run_id} no longer composes" in message


def test_resume_usage_and_a_missing_store_exit_2(tmp_path):
    usage = run_cli(cwd=tmp_path, module="pipeline.resume")
    assert usage.returncode == 2
    (line,) = usage.stderr.splitlines()
    assert "give a RUN_ID, or --list" in line
    missing = run_cli("0123abcd", cwd=tmp_path, module="pipeline.resume")
    assert missing.returncode == 2
    (line,) = missing.stderr.splitlines()
    assert line.startswith("No tracking store at sqlite:///")
    assert not (tmp_path / "mlruns").exists()
