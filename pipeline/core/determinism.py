"""Seeding and deterministic execution."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from pipeline.core.compiler import enable_deterministic_algorithms


def seed_everything(seed: int, threads: int) -> None:
    """Seed every random source and turn on torch's deterministic algorithms."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    torch.set_num_threads(threads)
    enable_deterministic_algorithms()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
