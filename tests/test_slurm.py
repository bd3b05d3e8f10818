"""Sweeps on a real one-node Slurm cluster (tests/helpers/services.py) with the shipped launcher
presets: ``hydra/launcher=slurm``, every job a Slurm job, numbers equal to the basic launcher's,
the store's password in no file the sweep writes; a job requeued and preempted resumes its run;
``hydra/launcher=slurm_groups``, a Slurm task per chunk of a batched group, a task requeued and
preempted resumes every run of its group; and one line for a cluster that cannot run the sweep,
or whose nodes could not reach the store."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import pytest
import submitit
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.errors import ConfigCompositionException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

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
from helpers.alone import EPOCHS, histories_alone
from hydra_plugins.pipeline_launcher.slurm_groups import task_returns
from pipeline.config import CONF_DIR, register_configs
from pipeline.runtime.job import JobContext, read_job, record_job
from pipeline.runtime.slurm import is_slurm

SWEEP = ["-m", "hydra/launcher=slurm", "optim.lr=0.01,0.1", "seed=1,2", EPOCHS]
GROUPS = ["-m", "hydra/launcher=slurm_groups", "optim.lr=0.01,0.1", "seed=1,2", EPOCHS]


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """Each job's cost history, trained as the basic launcher does (in process; shared with
    test_launchers.py)."""
    return histories_alone(tmp_path_factory)


@pytest.mark.slow
def test_a_sweep_runs_as_slurm_jobs_with_the_basic_launchers_numbers(
    slurm, postgres, basic, tmp_path
):
    uri = postgres.create_database("slurm", migrated=True)  # the password in the URI
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


def checkpointed(uri: str, sweep, resumes: int, after_epoch: int = -1) -> int:
    """Wait until the sweep's run has a checkpoint past ``after_epoch`` in its attempt
    ``resumes`` (0: the first); its epoch."""
    deadline = time.monotonic() + 180
    while True:
        for run in runs_of(uri):
            tags = run.data.tags
            epoch = json.loads(tags.get("checkpoint") or '{"epoch": -1}')["epoch"]
            if int(tags.get("resume.count", 0)) == resumes and epoch > after_epoch:
                return epoch
        assert time.monotonic() < deadline, f"no checkpoint in attempt {resumes + 1} in 180 s"
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.3)


def requeue_then_preempt(slurm, uri: str, sweep) -> str:
    """Once the sweep's Slurm job has checkpointed, ``scontrol requeue`` it; once its second
    attempt has checkpointed further, warn it of preemption (USR2: submitit requeues it). Its
    job id."""
    first = checkpointed(uri, sweep, resumes=0)
    (job_id,) = slurm.command("squeue", "-h", "-o", "%i").stdout.split()
    done = slurm.command("scontrol", "requeue", job_id)
    assert done.returncode == 0, done.stderr
    checkpointed(uri, sweep, resumes=1, after_epoch=first)
    done = slurm.command("scancel", "--signal=USR2", job_id)
    assert done.returncode == 0, done.stderr
    return job_id


@pytest.mark.slow
def test_a_requeued_then_preempted_slurm_job_resumes_its_own_run(slurm, postgres, tmp_path):
    """A job requeued in the middle of training (``scontrol requeue``: an admin, or a
    preemption that requeues), then, once resumed, warned of preemption (USR2, submitit's signal
    before a preemption or the time limit; submitit requeues it): Slurm runs it three times and
    it continues the same run from its checkpoint, to the uninterrupted history. Its log says
    each requeue in a line, with no traceback."""
    job = ["data=iris", "batch_size=16", "seed=3", "checkpoint.every_s=1"]
    job.append(f"epochs={max(epochs_lasting(8, *job), 3000)}")  # past two checkpoints
    uri = postgres.create_database("requeue", migrated=True)
    sweep = start_cli("-m", "hydra/launcher=slurm", *job, "tracking.flush_every_s=0.5",
                      f"tracking.uri={uri}", cwd=tmp_path, env=slurm.env)  # fmt: skip
    try:
        job_id = requeue_then_preempt(slurm, uri, sweep)
        expected, _ = train_into(sqlite_uri(tmp_path / "plain"), *job)  # meanwhile, here
        _, stderr = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, stderr
    parent, (run,) = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert run.info.status == "FINISHED"
    assert run.data.tags["resume.count"] == "2"
    assert cost_history(uri, run.info.run_id) == cost_history(
        sqlite_uri(tmp_path / "plain"), expected.run_id
    )
    (log_dir,) = tmp_path.glob(f"multirun/*/*/.submitit/{job_id}")
    out = (log_dir / f"{job_id}_0_log.out").read_text()
    err = (log_dir / f"{job_id}_0_log.err").read_text()
    assert f"Slurm requeued job {job_id}: it resumes this run when it starts again\n" in out
    assert "this job is preempted" in out  # USR2: submitit's handler requeued it
    assert out.count("Resuming run ") == 2
    assert "Traceback" not in out + err


@pytest.mark.slow
def test_a_batched_sweep_is_a_slurm_task_per_chunk_of_its_group(slurm, postgres, basic, tmp_path):
    """Four jobs of one group, at most three a task: ceil(4 / 3) = 2 tasks of one Slurm array,
    the first training its three jobs as one batch, the second its one job alone; every job its
    own FINISHED run with the numbers of the basic launcher's."""
    per_task = 3
    uri = postgres.create_database("groups", migrated=True)
    result = run_cli(*GROUPS, f"hydra.launcher.jobs_per_task={per_task}", f"tracking.uri={uri}",
                     cwd=tmp_path, env=slurm.env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs_finished"] == 4
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert {r.info.run_name: cost_history(uri, r.info.run_id) for r in runs} == basic

    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    (script,) = (sweep_dir / ".submitit").glob("*/*_submission.sh")
    array_id, tasks = script.parent.name, math.ceil(len(runs) / per_task)
    assert f"#SBATCH --array=0-{tasks - 1}%{tasks}\n" in script.read_text()
    results = sorted(p.parent.name for p in (sweep_dir / ".submitit").glob("*/*_0_result.pkl"))
    assert results == [f"{array_id}_{task}" for task in range(tasks)]
    # Each run says which task trained it (its process's Slurm job) and in how big a batch.
    trained = sorted((r.data.tags["process.slurm_job"], r.data.tags.get("batch.jobs", "alone"))
                     for r in runs)  # fmt: skip
    assert trained == [(f"{array_id}_0", "3")] * 3 + [(f"{array_id}_1", "alone")]
    # Each job's dir has the .hydra files its task wrote, with the task's id as the job's.
    job_ids = [yaml.safe_load((sweep_dir / str(num) / ".hydra" / "hydra.yaml").read_text())
               ["hydra"]["job"]["id"] for num in range(4)]  # fmt: skip
    assert job_ids == [f"{array_id}_0"] * 3 + [f"{array_id}_1"]
    log = (sweep_dir / ".submitit" / f"{array_id}_0" / f"{array_id}_0_0_log.out").read_text()
    assert "Training jobs 0-2 as one batch of 3" in log
    assert "Submitting 4 jobs as 2 Slurm tasks (at most 3 jobs of one group each)" in (
        result.stdout + result.stderr
    )


@pytest.mark.slow
def test_a_requeued_then_preempted_group_task_resumes_every_run_of_its_group(
    slurm, postgres, tmp_path
):
    """A group task requeued in the middle of training (``scontrol requeue``), then, once
    resumed, warned of preemption (USR2; submitit requeues it): every job of its batch is
    checkpointed each time and goes on from its checkpoint in the next attempt, batched again,
    to the history of the job trained alone, uninterrupted."""
    job = ["data=iris", "batch_size=16", "checkpoint.every_s=1"]
    # Past two checkpoints: the batch of two trains more slowly than a job alone, and each
    # attempt trains a second or two before it is stopped (each starts in about 20 s).
    job.append(f"epochs={max(epochs_lasting(4, *job), 1000)}")
    uri = postgres.create_database("requeue_groups", migrated=True)
    sweep = start_cli("-m", "hydra/launcher=slurm_groups", "seed=3,4", *job,
                      "tracking.flush_every_s=0.5", f"tracking.uri={uri}", cwd=tmp_path,
                      env=slurm.env)  # fmt: skip
    plain = sqlite_uri(tmp_path / "plain")
    try:
        job_id = requeue_then_preempt(slurm, uri, sweep)
        expected = {f"seed={seed}": train_into(plain, *job, f"seed={seed}")[0].run_id
                    for seed in (3, 4)}  # meanwhile, here  # fmt: skip
        _, stderr = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, stderr
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 2
    assert {r.data.tags["resume.count"] for r in runs} == {"2"}
    assert {r.data.tags["batch.jobs"] for r in runs} == {"2"}
    assert {r.info.run_name: cost_history(uri, r.info.run_id) for r in runs} == {
        name: cost_history(plain, run_id) for name, run_id in expected.items()
    }
    (log_dir,) = tmp_path.glob(f"multirun/*/*/.submitit/{job_id}")
    out = (log_dir / f"{job_id}_0_log.out").read_text()
    err = (log_dir / f"{job_id}_0_log.err").read_text()
    assert f"Slurm requeued job {job_id}: it resumes these 2 runs when it starts again\n" in out
    assert "this job is preempted" in out  # USR2: submitit's handler requeued it
    assert out.count("Training jobs 0-1 as one batch of 2") == 3  # each attempt
    assert out.count("Resuming run ") == 4  # each run, in the second and third attempts
    assert "Traceback" not in out + err


def test_a_task_without_results_is_a_line_and_its_unfinished_jobs_fail(tmp_path, caplog):
    """A task that ended without its JobReturns (here its code raised; on a cluster, also one
    killed, out of memory or out of requeues): one line naming it, its cause and its log; each
    of its jobs returns NaN; the dir of a job that had not finished gets the reason (the
    sweep's summary counts it failed), a FINISHED one keeps its record."""
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    job = executor.submit(int, "many")  # raises in the task's process
    task = [(0, ["seed=1"]), (1, ["seed=2"])]
    dirs = {num: tmp_path / str(num) for num, _ in task}
    for path in dirs.values():
        path.mkdir()
    record_job(JobContext(job_num=1, output_dir=dirs[1]), run_id="abc", status="FINISHED")
    with caplog.at_level(logging.ERROR):
        returns = task_returns(job, task, dirs)
    assert [r.overrides for r in returns] == [["seed=1"], ["seed=2"]]
    assert all(math.isnan(r.return_value) for r in returns)
    cause = "ValueError: invalid literal for int() with base 10: 'many'"
    reason = f"Slurm task {job.job_id} ended without its results: {cause}"
    assert read_job(dirs[0]) == {"reason": reason}
    assert read_job(dirs[1]) == {"run_id": "abc", "status": "FINISHED"}
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line == f"{reason} (its log: {job.paths.stdout})"


def path_without_slurm(tmp_path: Path) -> str:
    """A PATH with Python (this venv) but no Slurm commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


REMOTE = "hydra.launcher.partition=remote"  # its nodes: this machine and another (services.py)
SLURM_ERRORS = [
    ("no partition", ["hydra.launcher.partition=nope"], {},
     "Slurm has no partition 'nope' (partitions: debug, remote). Fix: hydra.launcher.partition="),
    ("too much memory", ["hydra.launcher.mem_gb=100000"], {},
     "Slurm would not run this sweep's jobs: Requested node configuration is not available"),
    ("no sbatch", [], {"PATH": "{no_slurm}"}, "Slurm's sbatch is not on PATH"),
    ("loopback server, other nodes", [REMOTE, "tracking.uri=http://127.0.0.1:9"], {},
     "Slurm runs this sweep's jobs on other machines (remotenode), where tracking.uri "
     "http://127.0.0.1:9 is the node itself, not this machine. Fix: tracking.uri=http://"),
    ("sqlite on this disk, other nodes", [REMOTE], {},
     "Slurm runs this sweep's jobs on other machines (remotenode), which cannot see the sqlite "
     "store {store}/mlflow.db on this machine's"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "env", "message"), [c[1:] for c in SLURM_ERRORS],
                         ids=[c[0] for c in SLURM_ERRORS])  # fmt: skip
def test_a_cluster_that_cannot_run_the_sweep_is_one_line_and_no_run(
    slurm, tmp_path, overrides, env, message
):
    env = {k: v.format(no_slurm=path_without_slurm(tmp_path)) for k, v in env.items()}
    uri = sqlite_uri(tmp_path / "store")
    if not any(o.startswith("tracking.uri=") for o in overrides):
        overrides = [*overrides, f"tracking.uri={uri}"]
    result = run_cli(*SWEEP, *overrides, cwd=tmp_path, env={**slurm.env, **env}, timeout=180)
    assert_one_line_and_no_run(result, message.format(store=tmp_path / "store"), uri, tmp_path)


def test_a_slurm_controller_that_is_down_is_one_line_and_no_run(slurm, tmp_path):
    uri = sqlite_uri(tmp_path / "store")
    slurm.stop_controller()
    try:
        result = run_cli(*SWEEP, f"tracking.uri={uri}", cwd=tmp_path, env=slurm.env, timeout=180)
    finally:
        slurm.start_controller()
    assert_one_line_and_no_run(result, "Slurm's controller is not reachable", uri, tmp_path)


def test_a_group_task_of_no_jobs_is_one_line_and_no_run(tmp_path):
    uri = sqlite_uri(tmp_path / "store")
    result = run_cli(*GROUPS, "hydra.launcher.jobs_per_task=0", f"tracking.uri={uri}",
                     cwd=tmp_path, timeout=180)  # fmt: skip
    message = "hydra.launcher.jobs_per_task=0: a Slurm task trains at least one job"
    assert_one_line_and_no_run(result, message, uri, tmp_path)


def assert_one_line_and_no_run(result, message: str, uri: str, cwd: Path) -> None:
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert message in line
    assert "Fix:" in line
    assert "Traceback" not in result.stdout
    assert runs_of(uri) == []  # no parent run, no job run
    assert list(cwd.glob("multirun/*/*/.submitit")) == []  # nothing submitted


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


def test_the_groups_preset_is_the_slurm_presets_settings_with_jobs_per_task():
    """``hydra/launcher=slurm_groups``: a class Hydra's plugin scan registers under its
    ``_target_`` (else: "Unknown plugin class"), the slurm preset's settings (so the cluster's
    and the store's checks apply: its class is a SlurmLauncher), a whole number of jobs a task."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        slurm = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
        groups = compose("config", overrides=["hydra/launcher=slurm_groups"],
                         return_hydra_config=True)  # fmt: skip
        with pytest.raises(ConfigCompositionException, match="jobs_per_task=many"):
            compose("config", overrides=["hydra/launcher=slurm_groups",
                                         "hydra.launcher.jobs_per_task=many"])  # fmt: skip
    launcher = OmegaConf.to_container(groups.hydra.launcher)
    target = launcher.pop("_target_")
    assert target in Plugins.instance().class_name_to_class, "Hydra's plugin scan must find it"
    assert target.endswith(".GroupedSlurmLauncher")
    assert is_slurm(groups.hydra.launcher)
    assert launcher.pop("jobs_per_task") == 1000
    expected = OmegaConf.to_container(slurm.hydra.launcher)
    del expected["_target_"]
    assert launcher == expected
