"""Shared fixtures: real sqlite MLflow stores in temp dirs, Hydra composition, a CLI runner.

Tests train in this process (compose the config, call the stage) wherever a subprocess adds
nothing; they run ``python -m pipeline.<command>`` where the process is the point: its exit
status, output, signals.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict

from helpers.zygote import ZYGOTE, Forked, python_shim
from pipeline.config import CONF_DIR, register_configs, validate
from pipeline.runtime.job import GROUPS, JobContext, run_name
from pipeline.tracking.store.access import sqlite_path

ROOT = Path(__file__).resolve().parents[1]
# What ../shared/reference/seed_softmax.py prints (torch 2.13.0, CPU); bench/ has the script.
REFERENCE_OUTPUT = ROOT / "tests" / "reference_output.txt"
EXPERIMENT = "softmax-regression"


# Tests that need a GPU, and the error cases that only hold without one (lightning-hydra-template's
# RunIf, in two markers): on a CUDA machine the first run and the second skip, and elsewhere the
# reverse.
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is available")


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without a tracking URI (each test names its store), plus ``env``."""
    full = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**full, **(env or {})}


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    module: str = "pipeline.train",
    timeout: float = 300,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` the way a user does; capture its output.

    The process is forked from this worker's zygote (``tests/helpers/zygote.py``: the imports
    paid once); ``fresh``: a new interpreter, for what reads the environment at import."""
    if fresh:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=cli_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    process = ZYGOTE.start(module, list(args), cwd, cli_env(env))
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def forked_workers(directory: Path) -> dict[str, str]:
    """The environment in which a command's worker processes (joblib's, started as
    ``sys.executable``) are forked from this worker's zygote too, each skipping ~4.5 s of
    imports: for sweeps whose workers' racing on a store is the point, not their start. The
    shim in ``directory`` passes signals on, but a ``kill -9`` of it leaves its child running,
    its pid is not the child's (submitit's local jobs name their logs by it), and a Slurm job
    must run under slurmd: not for those."""
    return {"ZYGOTE_PYTHON": str(python_shim(directory, cli_env()))}


def start_cli(
    *args: str,
    cwd: Path,
    module: str = "pipeline.train",
    env: dict[str, str] | None = None,
    fresh: bool = False,
) -> subprocess.Popen | Forked:
    """Start ``python -m <module> args`` in the background, its output unbuffered (forked from
    the zygote unless ``fresh``, as ``run_cli``)."""
    full = cli_env({"PYTHONUNBUFFERED": "1", **(env or {})})
    if not fresh:
        return ZYGOTE.start(module, list(args), cwd, full)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_terminal(controller: int) -> bytes:
    """All a process wrote to the pseudo-terminal whose ``controller`` end this is, until it
    closed (the process is gone); closes ``controller``."""
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return output


def compose_job(*overrides: str) -> tuple[DictConfig, JobContext]:
    """The config and job context ``python -m pipeline.train overrides`` runs with."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    choices = {group: str(cfg.hydra.runtime.choices[group]) for group in GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, JobContext(run_name=run_name(overrides), overrides=overrides, choices=choices)


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def runs_of(uri: str, experiment: str = EXPERIMENT) -> list:
    """All runs of the experiment, oldest first ([] when the store or experiment is absent).

    A sqlite store that does not exist yet is not opened: MLflow would create it (racing the
    process under test) or wait a minute retrying."""
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        return []
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def sweep_runs(uri: str, experiment: str = EXPERIMENT) -> tuple[Any, list]:
    """The (single) sweep parent run and its nested job runs."""
    runs = runs_of(uri, experiment)
    (parent,) = [r for r in runs if "sweep.dir" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def cost_history(uri: str, run_id: str, key: str = "cost") -> list[float]:
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A tracking URI for a fresh sqlite store in a temp dir."""
    return sqlite_uri(tmp_path / "store")


TrainInProcess = Callable[..., tuple[Any, Any]]


def train_into(uri: str | None, *overrides: str) -> tuple[Any, Any]:
    """Validate and train ``overrides`` in this process into ``uri`` (None: the one they name):
    (the outcome, its run)."""
    from pipeline.stage import train

    cfg, job = compose_job(*overrides)
    if uri is not None:
        cfg.tracking.uri = uri
    validate(cfg)
    outcome = train(cfg, job)
    return outcome, MlflowClient(tracking_uri=cfg.tracking.uri).get_run(outcome.run_id)


@pytest.fixture(scope="module")
def train_in_process(tmp_path_factory: pytest.TempPathFactory) -> TrainInProcess:
    """``train_in_process(*overrides)``: a run trained in this process, in a module's store."""
    uri = sqlite_uri(tmp_path_factory.mktemp("store"))

    def run(*overrides: str) -> tuple[Any, Any]:
        return train_into(uri, *overrides)

    run.uri = uri  # type: ignore[attr-defined]
    return run


def shared_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A temp dir that every xdist worker of this session sees (this worker's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def built_once(directory: Path, build: Callable[[Path], None]) -> Path:
    """``directory``, made by ``build(directory)`` by the first worker that asks for it: the
    others wait for it, then share it. Read it only (``copy_store`` gives a copy to write)."""
    with FileLock(f"{directory}.lock"):
        done = directory / ".built"
        if not done.is_file():
            shutil.rmtree(directory, ignore_errors=True)  # a build that failed half-way
            directory.mkdir()
            build(directory)
            done.touch()
    return directory


def copy_store(source: Path, target: Path) -> str:
    """A copy of ``source/mlruns`` in ``target/mlruns``, its artifact locations pointed at the
    copy; its tracking URI."""
    shutil.copytree(source / "mlruns", target / "mlruns")
    with sqlite3.connect(target / "mlruns" / "mlflow.db") as db:
        for table, column in [
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("logged_models", "artifact_location"),
        ]:
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                (str(source / "mlruns"), str(target / "mlruns")),
            )
    return sqlite_uri(target / "mlruns")


@pytest.fixture(scope="session")
def reference_run(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m pipeline.train`` with no overrides, from a fresh directory, made once per
    session: what it printed, and its directory (the store in ``mlruns/``)."""

    def train(cwd: Path) -> None:
        result = run_cli(cwd=cwd)
        printed = {
            "returncode": result.returncode,
            "stdout": result.stdout,
            "stderr": result.stderr,
        }
        (cwd / "printed.json").write_text(json.dumps(printed))

    cwd = built_once(shared_dir(tmp_path_factory, worker_id) / "reference-run", train)
    printed = json.loads((cwd / "printed.json").read_text())
    return subprocess.CompletedProcess(["python", "-m", "pipeline.train"], **printed), cwd


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL cluster for this test worker (tests/helpers/services.py); each test creates
    its own fresh database with ``postgres.create_database()``."""
    from helpers.services import postgres_cluster

    with postgres_cluster() as server:
        yield server


@pytest.fixture(scope="session")
def slurm() -> Iterator[Any]:
    """A one-node Slurm cluster for this test worker; ``slurm.env`` points commands at it."""
    from helpers.services import slurm_cluster

    with slurm_cluster() as cluster:
        yield cluster


# The longest files first (seconds of test time on 2 cores, December 7), so that the two xdist
# workers (one file each at a time) finish together instead of one waiting for a long file that
# started last. pyproject's --no-loadscope-reorder keeps this order.
LONGEST_FIRST = [  # seconds of each file in CI's run of December 7 (2 workers)
    "test_slurm.py",  # 208
    "test_resume_sweeps.py",  # 137
    "test_team_server.py",  # 106
    "test_resume.py",  # 98
    "test_postgres.py",  # 75
    "test_docs.py",  # 74
    "test_launchers.py",  # 68
    "test_bench.py",  # 60
    "test_controls.py",  # 57
    "test_ui.py",  # 44
    "test_rerun.py",  # 41
    "test_best_run.py",  # 37
    "test_hardening.py",  # 36
    "test_batched.py",  # 35
    "test_cv.py",  # 35
    "test_loss_metrics.py",  # 33
    "test_compat.py",  # 32
    "test_writes.py",  # 30
    "test_notebook.py",  # 23
    "test_real_data.py",  # 20
    "test_server.py",  # 19
    "test_config.py",  # 18
    "test_console.py",  # 13
    "test_bulk_runs.py",  # 13
    "test_multirun.py",  # 12
    "test_lifecycle.py",  # 10
    "test_api.py",  # 10
]


# Real services, interruptions, end-to-end runs through the console, and every test marked slow
# form the extended set: `-m "not extended"` runs the rest, in process and in seconds each.
EXTENDED = {
    "test_team_server.py",
    "test_slurm.py",
    "test_postgres.py",
    "test_bench.py",
    "test_resume_sweeps.py",
    "test_resume.py",
    "test_best_run.py",
    "test_launchers.py",
    "test_server.py",
    "test_ui.py",
    "test_multirun.py",
    "test_rerun.py",
    "test_compat.py",
    "test_console.py",
    "test_reference_run.py",
}


# Under CI=true (.ci/run exports it) a skipped test fails unless it is listed here, by the start
# of its node id, with the reason it may skip there.
ALLOWED_SKIPS = {
    "tests/test_resume.py::test_device_cuda_trains_and_resumes_with_the_gpus_random_state": (
        "needs a CUDA GPU; CI machines have none (the CPU-only error case runs there instead)"
    ),
    "tests/test_hardening.py::test_bad_input_is_one_clear_error_and_loses_nothing[device=cuda]": (
        "device=cuda is an error only without a GPU: on a GPU machine the CUDA test runs instead"
    ),
}
IN_CI = os.environ.get("CI") == "true"


def cpu_of_this_worker() -> float:
    """CPU seconds used so far by this process and every process under it (the zygote's
    commands, the services, Slurm's jobs), ended ones included: their parents reaped them."""
    parents, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = sum(int(ticks) for ticks in fields[11:15])  # utime stime cutime cstime
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        found = children.get(frontier.pop(), [])
        tree.update(found)
        frontier.extend(found)
    return sum(cpu[pid] for pid in tree if pid in cpu) / os.sysconf("SC_CLK_TCK")


CPU_SO_FAR = [0.0]  # this worker's, at the end of the last test phase


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI=true, record each test phase's CPU seconds (``cpu_of_this_worker``), and turn
    a skip that is not on ``ALLOWED_SKIPS`` into a failure."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI:
        now = cpu_of_this_worker()
        report.user_properties.append(("cpu_s", now - CPU_SO_FAR[0]))
        CPU_SO_FAR[0] = now
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    if any(report.nodeid.startswith(allowed) for allowed in ALLOWED_SKIPS):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{reason}: a skip under CI=true, not on ALLOWED_SKIPS (tests/conftest.py)"


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STARTED] = time.perf_counter()
    if IN_CI:
        CPU_SO_FAR[0] = cpu_of_this_worker()


def pytest_sessionfinish(session: pytest.Session) -> None:
    ZYGOTE.stop()  # this worker's (its children are the tests' commands, all ended by now)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """What the suite took: its wall time, and the test time of each file (setup included)
    with, under CI=true, its CPU seconds (on 2 cores the suite's wall time is at least half
    of its CPU time, however the tests are spread)."""
    if STARTED not in config.stash:
        return
    per_file: dict[str, list[float]] = {}
    per_test: dict[str, list[float]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                cpu = dict(report.user_properties).get("cpu_s", 0.0)
                times = per_test.setdefault(report.nodeid, [0.0, 0.0])
                times[0] += report.duration
                times[1] += cpu
                totals = per_file.setdefault(report.nodeid.split("::")[0], [0.0, 0.0])
                totals[0] += report.duration
                totals[1] += cpu
    if not per_file:
        return
    wall = time.perf_counter() - config.stash[STARTED]
    terminalreporter.section("time per file")
    terminalreporter.write_line("   wall      CPU  file")
    for file, (seconds, cpu) in sorted(per_file.items(), key=lambda item: -item[1][1]):
        terminalreporter.write_line(f"{seconds:7.1f} s {cpu:6.1f} s  {file}")
    seconds, cpu = (sum(totals[i] for totals in per_file.values()) for i in (0, 1))
    terminalreporter.write_line(
        f"{seconds:7.1f} s {cpu:6.1f} s  in all files (all workers); the suite's wall {wall:.1f} s"
    )
    if os.environ.get("PIPELINE_TEST_TIMES"):  # every test's [wall, CPU]: where to look next
        Path(os.environ["PIPELINE_TEST_TIMES"]).write_text(json.dumps(per_test, indent=1))
    if cpu:
        terminalreporter.section("most CPU: 10 tests (setup and teardown included)")
        for nodeid, (_, cpu) in sorted(per_test.items(), key=lambda item: -item[1][1])[:10]:
            terminalreporter.write_line(f"{cpu:6.1f} s  {nodeid}")


STARTED = pytest.StashKey[float]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
    for item in items:
        if item.path.name in EXTENDED or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.extended)


def epochs_lasting(seconds: float, *config: str) -> int:
    """How many epochs of ``config`` take about ``seconds`` on this machine, now."""
    from pipeline.config import compose_config
    from pipeline.config.build import build
    from pipeline.core.loop import train_epoch

    cfg = compose_config(list(config))
    data = build("data", cfg.data)
    model = build("model", cfg.model, in_features=data.n_features, out_features=data.n_classes)
    optimizer = build("optim", cfg.optim, params=model.parameters())
    batches = torch.Generator()
    train_epoch(model, optimizer, data.train, cfg.batch_size, batches)  # the first step imports
    start, epochs = time.perf_counter(), 0  # torch._dynamo (~1 s): not part of an epoch
    while time.perf_counter() - start < 1.0:
        train_epoch(model, optimizer, data.train, cfg.batch_size, batches)
        epochs += 1
    return int(epochs * seconds / (time.perf_counter() - start))
