"""Slurm, asked before a sweep is submitted: would it run these jobs, and could they track?

``sbatch --test-only`` with the launcher's settings checks one job against the cluster
(partition, CPUs, memory, time limit, account) without submitting anything. Asked before the
sweep's parent run exists, so that a missing ``sbatch``, a controller that does not answer or
a partition that does not exist is one line that names the fix, and leaves no run behind.

Then the tracking URI, as the jobs will see it on the partition's nodes (``sinfo``): where a
node is another machine, a URI on this machine's loopback (``http://127.0.0.1:5000``,
``postgresql://...@localhost/...``) names the node itself, and a sqlite file on this machine's
local disk is not there: one line, no run. A sqlite file on a network filesystem is there, but
can lose writes: a warning.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import PipelineError
from pipeline.runtime import interrupts

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 60  # sbatch retries an unreachable controller; never wait forever
# The launcher's settings that sbatch validates: launcher key -> sbatch option.
SBATCH_OPTIONS = {
    "partition": "partition",
    "qos": "qos",
    "account": "account",
    "timeout_min": "time",
    "nodes": "nodes",
    "tasks_per_node": "ntasks-per-node",
    "cpus_per_task": "cpus-per-task",
    "cpus_per_gpu": "cpus-per-gpu",
    "gpus_per_node": "gpus-per-node",
    "gpus_per_task": "gpus-per-task",
    "gres": "gres",
    "mem_gb": "mem",
    "mem_per_cpu": "mem-per-cpu",
    "mem_per_gpu": "mem-per-gpu",
    "constraint": "constraint",
    "exclude": "exclude",
}
# Filesystems that are only on this machine: a compute node cannot see a file on them.
LOCAL_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "ramfs",
                     "overlay", "vfat", "exfat", "jfs", "reiserfs"}  # fmt: skip
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_slurm(launcher: DictConfig) -> bool:
    """Hydra's submitit Slurm launcher, or a class derived from it (by name)."""
    return str(launcher.get("_target_", "")).endswith("SlurmLauncher")


def sbatch_options(launcher: DictConfig) -> list[str]:
    """The sbatch options a job of this launcher is submitted with (``--mem=4G``, ...)."""
    settings: dict[str, Any] = OmegaConf.to_container(launcher, resolve=True)
    options = {
        option: f"{value}G" if key == "mem_gb" else value
        for key, option in SBATCH_OPTIONS.items()
        if (value := settings.get(key)) is not None
    }
    for key, value in (settings.get("additional_parameters") or {}).items():
        options[key.replace("_", "-")] = value
    return [f"--{option}" if value is True else f"--{option}={value}"
            for option, value in options.items()]  # fmt: skip


def check_cluster(launcher: DictConfig) -> None:
    """Raise a one-line PipelineError unless Slurm would accept a job of this sweep."""
    per_task = launcher.get("jobs_per_task")  # hydra/launcher=slurm_groups
    if per_task is not None and per_task < 1:
        raise PipelineError(
            f"hydra.launcher.jobs_per_task={per_task}: a Slurm task trains at least one job. "
            "Fix: hydra.launcher.jobs_per_task=1 or more"
        )
    if shutil.which("sbatch") is None:
        raise PipelineError(
            "Slurm's sbatch is not on PATH: this machine cannot submit jobs. Fix: run the sweep "
            "on the cluster's login node, or choose another hydra/launcher"
        )
    command = ["sbatch", "--test-only", *sbatch_options(launcher), "--wrap", "true"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ANSWER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PipelineError(
            f"Slurm did not answer sbatch within {ANSWER_TIMEOUT_S} s. Fix: check that its "
            "controller runs (`scontrol ping`)"
        ) from None
    if done.returncode != 0:
        raise refusal(done.stderr, launcher)


def check_tracking_uri(uri: str, partition: str | None) -> None:
    """Raise if the jobs, on the partition's nodes, could not reach the store ``uri`` (as
    ``store.resolve_tracking_uri`` gives it); warn for a sqlite file on a network filesystem."""
    nodes = remote_nodes(partition)
    if nodes is None:
        log.warning(
            "Slurm did not list the nodes of partition %s (sinfo): the sweep's jobs must reach "
            "tracking.uri %s from them",
            partition or "(default)",
            without_password(uri),
        )
    elif nodes:  # else every node is this machine: what it reaches, its jobs reach
        where = f"Slurm runs this sweep's jobs on other machines ({', '.join(nodes[:3])}"
        where += ", ...)" if len(nodes) > 3 else ")"
        check_loopback(uri, where)
        check_sqlite_file(uri, where)


def check_loopback(uri: str, where: str) -> None:
    """Raise if ``uri`` is a server or database on this machine's loopback."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme.startswith(("http", "postgresql")) or not is_loopback(parts.hostname or ""):
        return
    reachable = urllib.parse.urlunsplit(parts._replace(netloc=this_host_netloc(parts)))
    listen = ("a server listening there: python -m pipeline.server --host 0.0.0.0"
              if parts.scheme.startswith("http") else "PostgreSQL listening there")  # fmt: skip
    raise PipelineError(
        f"{where}, where tracking.uri {without_password(uri)} is the node itself, not this "
        f"machine. Fix: tracking.uri={reachable} ({listen}), or another address the nodes reach"
    )


def check_sqlite_file(uri: str, where: str) -> None:
    """Raise if ``uri`` is a sqlite file on this machine's local disk; warn if it is on a
    network filesystem (or one not known)."""
    database = sqlite_file(uri)
    if database is None:
        return
    filesystem = filesystem_type(database)
    if filesystem in LOCAL_FILESYSTEMS:
        raise PipelineError(
            f"{where}, which cannot see the sqlite store {database} on this machine's "
            f"{filesystem} disk. Fix: a tracking server the nodes reach "
            "(tracking.uri=http://HOST:5000, python -m pipeline.server), or a store on a "
            "filesystem they share"
        )
    log.warning(
        "Slurm jobs will write to %s (%s): every node must see that file, and sqlite on a "
        "network filesystem can lose writes. Use a tracking server: "
        "tracking.uri=http://HOST:5000 (python -m pipeline.server)",
        database,
        filesystem or "filesystem unknown",
    )


def remote_nodes(partition: str | None) -> list[str] | None:
    """The partition's nodes (None: the default partition's) that are not this machine, by
    their addresses in Slurm (``sinfo``); None if sinfo does not list them."""
    try:
        done = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%P %N %o"],
            capture_output=True,
            text=True,
            timeout=ANSWER_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    wanted = set(partition.split(",")) if partition else None
    nodes = {}
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        fields = line.split()
        if len(fields) != 3:
            continue
        name, node, address = fields
        if (name.rstrip("*") in wanted) if wanted else name.endswith("*"):
            nodes[node] = address
    if not nodes:
        return None
    return sorted(node for node, address in nodes.items() if not is_this_machine(address))


def is_loopback(host: str) -> bool:
    """``127.x.x.x``, ``::1``, ``localhost``, or no host (a PostgreSQL Unix socket)."""
    return host == "" or host in LOOPBACK_NAMES or host == "::1" or host.startswith("127.")


def is_this_machine(address: str) -> bool:
    """Whether ``address`` (a name or an IP) is this machine: a loopback, or an address one of
    its interfaces has (a socket binds to it)."""
    if is_loopback(address) or address in {socket.gethostname(), socket.getfqdn()}:
        return True
    try:
        infos = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        with socket.socket(family) as probe:
            try:
                probe.bind((sockaddr[0], 0))
            except OSError:
                continue
            return True
    return False


def this_host_netloc(parts: urllib.parse.SplitResult) -> str:
    """``parts``' netloc with this machine's name for its host, and no password."""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    name = socket.getfqdn()
    return f"{user}{socket.gethostname() if is_loopback(name) else name}{port}"


def without_password(uri: str) -> str:
    """``uri`` with no password in it (for messages)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    user = f"{parts.username}@" if parts.username else ""
    netloc = user + parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def sqlite_file(uri: str) -> Path | None:
    """The absolute path of a ``sqlite:///`` store (a relative one is where the jobs start:
    the directory the sweep is launched from)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///").split("?", 1)[0].removeprefix("file:")
    return Path(database).absolute()


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is (or would be) on, from /proc/mounts; "" if
    unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    found, longest = "", -1
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = path == Path(mount) or Path(mount) in path.parents
        if inside and len(mount) >= longest:
            found, longest = fields[2], len(mount)
    return found


def refusal(stderr: str, launcher: DictConfig) -> PipelineError:
    """sbatch's reason, as one line that names the setting to change."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else "no reason given"
    reason = re.sub(r"^(sbatch: (error|fatal): |allocation failure: )", "", reason)
    if re.search(r"configuration file", stderr, re.IGNORECASE):
        return PipelineError(
            f"Slurm's configuration cannot be read ({reason}). Fix: run the sweep on a machine "
            "of the cluster, or point SLURM_CONF at its slurm.conf"
        )
    if re.search(r"unable to contact|connect failure|connection refused", stderr, re.IGNORECASE):
        return PipelineError(
            f"Slurm's controller is not reachable ({reason}). Fix: check that it runs "
            "(`scontrol ping`), and SLURM_CONF if you set it"
        )
    if re.search(r"invalid partition", stderr, re.IGNORECASE):
        partitions = ", ".join(list_partitions()) or "none found"
        return PipelineError(
            f"Slurm has no partition {launcher.get('partition')!r} (partitions: {partitions}). "
            "Fix: hydra.launcher.partition=<one of them>, or null for the default"
        )
    return PipelineError(
        f"Slurm would not run this sweep's jobs: {reason} "
        f"(sbatch {' '.join(sbatch_options(launcher))}). "
        "Fix: change hydra.launcher.* (partition, cpus_per_task, mem_gb, timeout_min, ...)"
    )


def list_partitions() -> list[str]:
    """The cluster's partitions (``sinfo``), or [] if it does not say."""
    try:
        done = subprocess.run(
            ["sinfo", "--noheader", "--format=%R"],
            capture_output=True,
            text=True,
            timeout=ANSWER_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted(set(done.stdout.split())) if done.returncode == 0 else []


def requeued_job() -> str | None:
    """The id of the Slurm job this process runs in (``<array id>_<task>`` for an array task) if
    Slurm is requeueing it (``scontrol requeue``, a preemption that requeues); else None.

    Slurm counts the restart as soon as it asks the job to stop, so its count is then past this
    attempt's (``SLURM_RESTART_COUNT``, unset on the first attempt)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if job_id is None:
        return None
    try:
        done = subprocess.run(
            ["scontrol", "--oneliner", "show", "job", job_id],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    restarts = re.search(r"\bRestarts=(\d+)", done.stdout)
    if restarts is None or int(restarts[1]) <= int(os.environ.get("SLURM_RESTART_COUNT", 0)):
        return None
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else job_id


def stopped(stop: interrupts.Stop, runs: str) -> NoReturn:
    """End a Slurm job that a signal stopped once its ``runs`` ("this run") are closed: USR2
    goes to submitit's handler, which requeues the job; a job that Slurm requeues
    (``scontrol requeue``) says so in a line and exits; any other stop goes on up."""
    interrupts.hand_over(stop)
    requeued = requeued_job()
    if requeued is not None:
        log.warning("Slurm requeued job %s: it resumes %s when it starts again", requeued, runs)
        raise SystemExit(128 + stop.signum) from None
    raise stop
