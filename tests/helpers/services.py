"""Real services for tests: a throwaway PostgreSQL cluster and a one-node Slurm cluster.

Each lives in a temp dir, listens on free loopback ports and runs in the foreground as a child
of the test process, so that it is stopped by its PID. Debian packages them (`postgresql`,
`slurm-wlm`, `munge`). A service that cannot start fails the test in CI (``CI=true``, which
``.ci/run`` exports) and skips it elsewhere, naming the package to install.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from helpers.servers import free_port, listening

IN_CI = os.environ.get("CI") == "true"
TIMEOUT_S = 60  # for any one Slurm or PostgreSQL command: a down node makes srun wait forever


def unavailable(reason: str) -> NoReturn:
    """A service this test needs cannot start: fail in CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


def as_user(user: str) -> dict[str, str | list]:
    """Popen arguments that run a command as ``user`` when we are root (PostgreSQL and munge
    refuse to run as root); nothing otherwise."""
    return {"user": user, "group": user, "extra_groups": []} if os.geteuid() == 0 else {}


def owned_dir(path: Path, user: str, mode: int = 0o700) -> Path:
    """``path``, created and owned by ``user`` (when we are root), with ``mode``."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    path.chmod(mode)
    return path


def start_daemon(command: list[str], log: Path, user: str | None = None) -> subprocess.Popen:
    """Start ``command`` (as ``user``) in the foreground of its own session, output to ``log``."""
    with log.open("a") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",  # a directory every user can enter
            start_new_session=True,
            **(as_user(user) if user else {}),
        )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 15) -> None:
    """Send ``sig`` to ``process`` (by its PID), SIGKILL it after ``grace_s``; reap it."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace_s)


def wait_for(
    ready: Callable[[], bool],
    what: str,
    log: Path,
    process: subprocess.Popen,
    timeout_s: float = 60,
) -> None:
    """Poll ``ready()`` until true; fail with the log if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            unavailable(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.2)
    unavailable(f"{what} not ready in {timeout_s} s:\n{log.read_text()[-3000:]}")


# PostgreSQL ---------------------------------------------------------------------------------


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        unavailable("PostgreSQL is not installed. Fix: apt-get install postgresql")
    return found[-1].parent


@dataclass
class Postgres:
    """A PostgreSQL cluster on 127.0.0.1:``port``; the ``postgres`` user needs ``password``."""

    root: Path
    port: int
    password: str
    process: subprocess.Popen | None = None
    template: str | None = None  # a migrated database that new ones copy

    def uri(self, database: str, password: str | None = None) -> str:
        return f"postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "mlflow", migrated: bool = False) -> str:
        """A new database; its URI. Empty, or ``migrated``: with MLflow's tables and its
        Default experiment, as MLflow's first use leaves a database (a copy of a template
        migrated once per cluster: about 50 schema migrations saved)."""
        import psycopg

        name = f"{prefix}_{secrets.token_hex(4)}"
        template = f' TEMPLATE "{self.migrated_template()}"' if migrated else ""
        with psycopg.connect(self.uri("postgres"), autocommit=True, connect_timeout=10) as db:
            db.execute(f'CREATE DATABASE "{name}"{template}')
        return self.uri(name)

    def migrated_template(self) -> str:
        """The name of a database MLflow has migrated (made on the first call)."""
        if self.template is None:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            uri = self.create_database("template")
            SqlAlchemyStore(uri, (self.root / "artifacts").as_uri())  # creates the tables
            SqlAlchemyStore._engine_map.pop(uri).dispose()  # a template must have no sessions
            self.template = uri.rsplit("/", 1)[1]
        return self.template

    def start(self) -> None:
        """Start the server (again), in the foreground, as the ``postgres`` user."""
        data, log = self.root / "data", self.root / "postgres.log"
        # A throwaway cluster: no fsync (MLflow's ~50 schema migrations on each new database are
        # many small commits), and stopped with an immediate shutdown.
        command = [str(postgres_bin() / "postgres"), "-D", str(data), "-p", str(self.port),
                   "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                   "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        self.process = start_daemon(command, log, user="postgres")
        wait_for(lambda: listening(self.port), "PostgreSQL", log, self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGQUIT)  # "immediate" shutdown: nothing to keep


def service_dir(prefix: str) -> Path:
    """A new dir in /tmp that service users can enter (pytest's tmp_path is 0700 root's)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def start_postgres() -> Postgres:
    """A new cluster in a temp dir (initdb, password authentication over TCP), started."""
    root = owned_dir(service_dir("pipeline-postgres-"), "postgres", 0o755)
    password = secrets.token_urlsafe(12)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres")
    initdb = [str(postgres_bin() / "initdb"), "-D", str(root / "data"), "-U", "postgres",
              "--auth-local=trust", "--auth-host=scram-sha-256",
              f"--pwfile={password_file}"]  # fmt: skip
    done = subprocess.run(
        initdb, capture_output=True, text=True, cwd="/", timeout=TIMEOUT_S, **as_user("postgres")
    )
    password_file.unlink()
    if done.returncode != 0:
        unavailable(f"initdb failed:\n{done.stdout}{done.stderr}")
    server = Postgres(root, free_port(), password)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


# Slurm --------------------------------------------------------------------------------------

NODE = "pipelinenode"  # the node's name in slurm.conf (its address is 127.0.0.1)
# Partition "remote" adds a node that is another machine (an address of TEST-NET, never up):
# jobs there could not reach this machine's loopback or local disk. Jobs run on NODE.
REMOTE_NODE = "remotenode"
# cred_expire: how long a requeued job waits before it may start again (Slurm's default: 120 s).
SLURM_CONF = """\
ClusterName=pipelinetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
SchedulerParameters=sched_interval=2
MessageTimeout=5
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
NodeName={remote_node} NodeAddr=192.0.2.1 CPUs=1 RealMemory=1000 State=DOWN Reason=elsewhere
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=remote Nodes={node},{remote_node} MaxTime=INFINITE State=UP
"""


@dataclass
class Slurm:
    """A one-node Slurm cluster: munged, slurmctld and slurmd, configured by ``conf``."""

    root: Path
    conf: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this cluster (``sbatch``, ``squeue``, submitit)."""
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *args: str, timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run a Slurm command (``squeue``, ``scontrol ...``) on this cluster."""
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, **self.env},
        )  # fmt: skip

    def node_state(self) -> str:
        done = self.command("sinfo", "-h", "-n", NODE, "-o", "%T", timeout_s=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    def start_controller(self) -> None:
        log = self.root / "slurmctld.out"
        self.processes["slurmctld"] = start_daemon(["slurmctld", "-D", "-f", str(self.conf)], log)
        wait_for(lambda: self.command("scontrol", "ping", timeout_s=10).returncode == 0,
                 "slurmctld", log, self.processes["slurmctld"])  # fmt: skip

    def stop_controller(self) -> None:
        stop(self.processes.pop("slurmctld"))

    def stop(self) -> None:
        """Cancel every job, wait for the node to be idle, then stop the daemons by PID."""
        running = [p.poll() is None for p in self.processes.values()]
        if len(running) == 3 and all(running):  # munged, slurmctld, slurmd: jobs can be asked
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.command("scancel", "--full", "--partition=debug", timeout_s=10)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and self.command("squeue", "-h").stdout.strip():
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):  # the reverse of their start
            if name in self.processes:
                stop(self.processes.pop(name))


def start_slurm(cpus: int = 2, memory_mb: int = 8192) -> Slurm:
    """munged, slurmctld and slurmd in a temp dir, on free ports; returns once the node is
    idle."""
    if os.geteuid() != 0:
        unavailable("A one-node Slurm cluster needs root (slurmd starts jobs as their user)")
    for program, package in (("slurmctld", "slurm-wlm"), ("slurmd", "slurm-wlm"),
                             ("munged", "munge")):  # fmt: skip
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed. Fix: apt-get install {package}")
    root = service_dir("pipeline-slurm-")
    slurm = Slurm(root, root / "slurm.conf")
    try:
        socket_path = _start_munge(root / "munge", slurm)
        for name in ("state", "spool"):
            (root / name).mkdir()
        slurm.conf.write_text(SLURM_CONF.format(
            host=socket.gethostname(), ctld_port=free_port(), slurmd_port=free_port(),
            munge_socket=socket_path, root=root, node=NODE, remote_node=REMOTE_NODE, cpus=cpus,
            memory_mb=memory_mb,
        ))  # fmt: skip
        slurm.start_controller()
        log = root / "slurmd.out"
        slurm.processes["slurmd"] = start_daemon(
            ["slurmd", "-D", "-N", NODE, "-f", str(slurm.conf)], log
        )
        wait_for(lambda: slurm.node_state() == "idle", "slurmd", log, slurm.processes["slurmd"])
    except BaseException:
        slurm.stop()
        raise
    return slurm


def _start_munge(root: Path, slurm: Slurm) -> Path:
    """A munged of our own (its key, its socket), run as the ``munge`` user."""
    owned_dir(root, "munge", 0o755)
    key_dir = owned_dir(root / "etc", "munge")
    run_dir = owned_dir(root / "run", "munge", 0o755)  # the socket's dir: everyone must enter
    key = key_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    socket_path = run_dir / "munge.socket"
    command = ["munged", "-F", f"--socket={socket_path}", f"--key-file={key}",
               f"--pid-file={run_dir / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
               f"--seed-file={key_dir / 'munged.seed'}"]  # fmt: skip
    log = root / "munged.out"
    slurm.processes["munged"] = start_daemon(command, log, user="munge")
    wait_for(socket_path.exists, "munged", log, slurm.processes["munged"])
    return socket_path


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the duration of the block; stopped, its dir removed."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@contextlib.contextmanager
def slurm_cluster() -> Iterator[Slurm]:
    """A one-node Slurm cluster for the duration of the block; stopped, its dir removed."""
    cluster = start_slurm()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
