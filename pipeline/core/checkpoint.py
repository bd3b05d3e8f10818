"""What resuming a run needs, at an epoch boundary: the model, the optimizer, every random
generator (torch's, CUDA's, numpy's, Python's and the mini-batch shuffler), the epoch, and the
learning-rate scheduler's and early stopping's state (when the run has them).

Restoring it and training on gives bit-identical numbers to training without a stop.
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import torch

FORMAT = 1  # bumped when the saved structure changes


def capture(
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: torch.Generator,
    controls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The state after ``epoch`` finished; ``controls``: the scheduler and early stopping, by
    name (those present), whose ``state_dict`` is kept too."""
    return {
        "format": FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "batches": batches.get_state(),
        },
        **{name: part.state_dict() for name, part in (controls or {}).items() if part},
    }


def restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: torch.Generator,
    controls: dict[str, Any] | None = None,
) -> int:
    """Put ``state`` back into the model, optimizer, generators and ``controls`` (as given to
    ``capture``); return its epoch."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for name, part in (controls or {}).items():
        if part and name in state:
            part.load_state_dict(state[name])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    batches.set_state(rng["batches"])
    return state["epoch"]


def to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> dict[str, Any]:
    """A state saved by ``to_bytes`` (numpy's generator state needs ``weights_only=False``)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
