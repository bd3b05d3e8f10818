"""Sweeps on a real one-node Slurm cluster (tests/services.py) with the shipped launcher preset,
``hydra/launcher=slurm``: every job a Slurm job, numbers equal to the basic launcher's, the
store's password in no file the sweep writes; and one line for a cluster that cannot run it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from conftest import (
    cost_history,
    epochs_lasting,
    run_cli,
    runs_of,
    sqlite_uri,
    start_cli,
    sweep_runs,
    train_into,
)
from pipeline.config import CONF_DIR, register_configs

JOBS = [("0.01", "1"), ("0.01", "2"), ("0.1", "1"), ("0.1", "2")]
SWEEP = ["-m", "hydra/launcher=slurm", "optim.lr=0.01,0.1", "seed=1,2", "epochs=50"]


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """Each job's cost history, trained here as the basic launcher does (same process)."""
    uri = sqlite_uri(tmp_path_factory.mktemp("basic"))
    histories = {}
    for lr, seed in JOBS:
        outcome, _ = train_into(uri, f"optim.lr={lr}", f"seed={seed}", "epochs=50")
        histories[f"optim.lr={lr},seed={seed}"] = cost_history(uri, outcome.run_id)
    return histories


@pytest.mark.slow
def test_a_sweep_runs_as_slurm_jobs_with_the_basic_launchers_numbers(
    slurm, postgres, basic, tmp_path
):
    uri = postgres.create_database("slurm")  # the password in the URI, on the command line
    result = run_cli(*SWEEP, f"tracking.uri={uri}", cwd=tmp_path, env=slurm.env, timeout=600)
    assert result.returncode == 0, result.stderr
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert {r.info.run_name: cost_history(uri, r.info.run_id) for r in runs} == basic

    # Each job ran as a task of one Slurm job array (id A): A_0 ... A_3, one sbatch script.
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    (script,) = (sweep_dir / ".submitit").glob("*/*_submission.sh")
    array_id = script.parent.name
    results = sorted(p.parent.name for p in (sweep_dir / ".submitit").glob("*/*_0_result.pkl"))
    assert results == [f"{array_id}_{task}" for task in range(4)]
    for task in range(4):
        log = sweep_dir / ".submitit" / f"{array_id}_{task}" / f"{array_id}_{task}_0_log.out"
        assert f"JobEnvironment(job_id={array_id}_{task}, " in log.read_text()
    sbatch = script.read_text()
    for option in ("--array=0-3%4", "--cpus-per-task=1", "--mem=4GB", "--ntasks-per-node=1",
                   "--time=60", "--export=ALL"):  # fmt: skip
        assert f"#SBATCH {option}\n" in sbatch

    # The parent's summary is complete.
    assert parent.data.metrics["jobs_finished"] == 4
    assert parent.data.metrics["jobs_failed"] == 0
    assert parent.data.tags["best_run_id"] in {r.info.run_id for r in runs}
    names = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"summary.txt", "cost_curves.png"} <= names

    # The password reached the jobs through the environment, not through any file.
    password = postgres.password
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in
              p.read_bytes()]  # fmt: skip
    assert leaked == []  # sbatch script, submitit's pickles and logs, Hydra's files, artifacts
    assert password not in result.stdout + result.stderr
    for run in [parent, *runs]:
        assert not any(password in text for text in [*run.data.params.values(),
                                                      *run.data.tags.values()])  # fmt: skip


INTERRUPTIONS = {
    "requeued": ("scontrol", "requeue"),  # what an admin, or a preemption with requeue, does
    "preempted": ("scancel", "--signal=USR2"),  # submitit's warning before preemption/time limit
}


@pytest.mark.slow
@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_an_interrupted_slurm_job_resumes_its_own_run(slurm, postgres, tmp_path, interruption):
    """A job requeued (or warned of preemption) in the middle of training: Slurm runs it again,
    and it continues the same run from its checkpoint, to the uninterrupted history."""
    job = ["data=iris", "batch_size=16", "seed=3", "checkpoint.every_s=1"]
    job.append(f"epochs={max(epochs_lasting(8, *job), 3000)}")  # past its first checkpoint
    expected, _ = train_into(sqlite_uri(tmp_path / "plain"), *job)
    expected_costs = cost_history(sqlite_uri(tmp_path / "plain"), expected.run_id)
    uri = postgres.create_database("requeue")
    sweep = start_cli("-m", "hydra/launcher=slurm", *job, "tracking.flush_every_s=0.5",
                      f"tracking.uri={uri}", cwd=tmp_path, env=slurm.env)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not any("checkpoint" in r.data.tags for r in runs_of(uri)):
            assert time.monotonic() < deadline, "no checkpoint in 180 s"
            assert sweep.poll() is None, sweep.communicate()
            time.sleep(0.5)
        (job_id,) = slurm.command("squeue", "-h", "-o", "%i").stdout.split()
        done = slurm.command(*INTERRUPTIONS[interruption], job_id)
        assert done.returncode == 0, done.stderr
        _, stderr = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, stderr
    parent, (run,) = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["resume.count"]) >= 1
    assert cost_history(uri, run.info.run_id) == expected_costs


def path_without_slurm(tmp_path: Path) -> str:
    """A PATH with Python (this venv) but no Slurm commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


SLURM_ERRORS = [
    ("no partition", ["hydra.launcher.partition=nope"], {},
     "Slurm has no partition 'nope' (partitions: debug). Fix: hydra.launcher.partition="),
    ("too much memory", ["hydra.launcher.mem_gb=100000"], {},
     "Slurm would not run this sweep's jobs: Requested node configuration is not available"),
    ("no sbatch", [], {"PATH": "{no_slurm}"}, "Slurm's sbatch is not on PATH"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "env", "message"), [c[1:] for c in SLURM_ERRORS],
                         ids=[c[0] for c in SLURM_ERRORS])  # fmt: skip
def test_a_cluster_that_cannot_run_the_sweep_is_one_line_and_no_run(
    slurm, tmp_path, overrides, env, message
):
    env = {k: v.format(no_slurm=path_without_slurm(tmp_path)) for k, v in env.items()}
    uri = sqlite_uri(tmp_path / "store")
    result = run_cli(*SWEEP, *overrides, f"tracking.uri={uri}", cwd=tmp_path,
                     env={**slurm.env, **env}, timeout=180)  # fmt: skip
    assert_one_line_and_no_run(result, message, uri)


def test_a_slurm_controller_that_is_down_is_one_line_and_no_run(slurm, tmp_path):
    uri = sqlite_uri(tmp_path / "store")
    slurm.stop_controller()
    try:
        result = run_cli(*SWEEP, f"tracking.uri={uri}", cwd=tmp_path, env=slurm.env, timeout=180)
    finally:
        slurm.start_controller()
    assert_one_line_and_no_run(result, "Slurm's controller is not reachable", uri)


def assert_one_line_and_no_run(result, message: str, uri: str) -> None:
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert message in line
    assert "Fix:" in line
    assert "Traceback" not in result.stdout
    assert runs_of(uri) == []  # no parent run, no job run


def test_the_preset_keeps_one_task_per_job_and_composes_without_a_cluster():
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.cpus_per_task, launcher.mem_gb) == (1, 1, 4)
    assert launcher.max_num_timeout == 3  # a timed-out job is requeued and resumes its run
    assert launcher.submitit_folder.endswith("/.submitit/%j")
    assert launcher.additional_parameters == {"export": "ALL"}
