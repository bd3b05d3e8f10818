"""Slurm, asked before a sweep is submitted: would it run these jobs?

``sbatch --test-only`` with the launcher's settings checks one job against the cluster
(partition, CPUs, memory, time limit, account) without submitting anything. Asked before the
sweep's parent run exists, so that a missing ``sbatch``, a controller that does not answer or
a partition that does not exist is one line that names the fix, and leaves no run behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import PipelineError

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


def check_cluster(launcher: DictConfig, tracking_uri: str | None) -> None:
    """Raise a one-line PipelineError unless Slurm would accept a job of this sweep; warn if
    its jobs would write to a sqlite file (``tracking.uri`` null: the default one)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns/mlflow.db"
    if uri.startswith("sqlite:"):
        log.warning(
            "Slurm jobs will write to %s: every node must see that file, and sqlite on a "
            "network filesystem can lose writes. Use a tracking server: "
            "tracking.uri=http://HOST:5000 (python -m pipeline.server)",
            uri,
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
