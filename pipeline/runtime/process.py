"""Which process a run lives in, and whether that process still exists.

A run records its host, process id and the process's start time. On the same host, the run's
process is alive exactly when a process with that id and that start time exists (an id reused
by another process has another start time). Under Slurm, a job requeued after its process was
killed runs again with the same job id: the earlier attempt is over.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pipeline.tags import PROCESS_HOST, PROCESS_PID, PROCESS_SLURM_JOB, PROCESS_STARTED

PROC = Path("/proc")


def host() -> str:
    return socket.gethostname()


def start_stamp(pid: int) -> str:
    """The boot id and the start time (clock ticks after boot) of process ``pid``; "" if unknown.

    Read from /proc (Linux); elsewhere "" and liveness falls back to the process id alone.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        boot = (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""
    return f"{boot}/{stat.rsplit(')', 1)[1].split()[19]}"


def slurm_job() -> str:
    """This process's Slurm job (``JOBID`` or ``ARRAYJOBID_TASKID``), "" outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def identity() -> dict[str, str]:
    """This process, as a run records it (tags ``process.*``)."""
    facts = {PROCESS_HOST: host(), PROCESS_PID: str(os.getpid())}
    facts[PROCESS_STARTED] = start_stamp(os.getpid())
    if job := slurm_job():
        facts[PROCESS_SLURM_JOB] = job
    return facts


def is_gone(recorded: dict[str, str]) -> bool | None:
    """Whether the process that ``recorded`` names (``identity()``'s tags) has ended.

    True or False where it can be told: on this host, or by a requeued Slurm job; None for a
    process on another host (the caller then looks at the run's heartbeat).
    """
    job = recorded.get(PROCESS_SLURM_JOB)
    if job and job == slurm_job():  # Slurm runs one attempt of a job at a time
        return (recorded.get(PROCESS_HOST), recorded.get(PROCESS_PID)) != (
            host(),
            str(os.getpid()),
        )
    if recorded.get(PROCESS_HOST) != host() or PROCESS_PID not in recorded:
        return None
    pid = int(recorded[PROCESS_PID])
    started = recorded.get(PROCESS_STARTED, "")
    if started and start_stamp(pid):
        return start_stamp(pid) != started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
