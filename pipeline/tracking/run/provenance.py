"""What a rerun compares: the code version, library versions, machine and data of a run."""

from __future__ import annotations

import functools
import platform
import subprocess

import hydra
import mlflow
import numpy as np
import torch

import pipeline
from pipeline.tags import CODE, DATA_DIGEST, ENV
from pipeline.tracking.resume.identity import PACKAGE_ROOT, code_digest


@functools.cache
def code_version() -> dict[str, str]:
    """The package version, plus the git commit and a dirty flag when run from a checkout."""
    tags = {f"{CODE}version": pipeline.__version__}
    if not (PACKAGE_ROOT / ".git").exists():
        return tags
    try:
        commit = _git("rev-parse", "HEAD")
        changes = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return tags
    return {**tags, f"{CODE}commit": commit, f"{CODE}dirty": str(bool(changes)).lower()}


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def environment(device: torch.device) -> dict[str, str]:
    """Library versions, platform, device and thread count, as ``env.*`` tags."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "hydra": hydra.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": f"{device.type} ({name})" if name else device.type,
        "torch_threads": str(torch.get_num_threads()),
    }
    return {f"{ENV}{key}": value for key, value in facts.items()}


def provenance_tags(device: torch.device, data_digest: str) -> dict[str, str]:
    """Every fact a rerun compares: code, environment and the training data's digest."""
    code = {**code_version(), f"{CODE}digest": code_digest()}
    return {**code, **environment(device), DATA_DIGEST: data_digest}
