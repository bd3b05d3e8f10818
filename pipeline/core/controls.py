"""Training controls that act between epochs: a learning-rate schedule and early stopping.

Both are stepped once per epoch, by a run alone (``pipeline.core.loop.fit``) and by each job
of a batched group (``pipeline.core.batched.fit_group``) alike, and both keep their state in
the run's checkpoint (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR

from pipeline.config.build import build

Scheduler = LRScheduler | ReduceLROnPlateau
WARMUP_KEYS = ("warmup_epochs", "warmup_start_factor")  # ours, not the scheduler's keywords


def build_scheduler(node: DictConfig, optimizer: torch.optim.Optimizer) -> Scheduler | None:
    """The ``scheduler`` node's ``torch.optim.lr_scheduler`` class on ``optimizer`` (None: a
    constant rate); with ``warmup_epochs``, a linear warm-up first (``LinearLR`` then the
    schedule, in a ``SequentialLR``)."""
    if node.get("_target_") is None:
        return None
    warmup = int(node.get("warmup_epochs") or 0)
    start_factor = float(node.get("warmup_start_factor") or 0.1)
    kwargs = {k: v for k, v in node.items() if k not in WARMUP_KEYS}
    main = build("scheduler", DictConfig(kwargs), optimizer=optimizer)
    if warmup == 0:
        return main
    warm = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [warm, main], milestones=[warmup])


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def step_scheduler(scheduler: Scheduler, val_cost: float | None) -> None:
    """One epoch's step (``ReduceLROnPlateau`` on that epoch's validation cost)."""
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(val_cost)
    else:
        scheduler.step()


@dataclass
class EarlyStopping:
    """Stops training once ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs; keeps the best epoch's weights (``best_state``) to restore."""

    patience: int
    monitor: str
    mode: str
    min_delta: float
    restore_best: bool
    best: float = field(init=False)
    best_epoch: int = -1
    wait: int = 0  # epochs since the best one
    stopped_epoch: int | None = None  # the last epoch trained, once it stopped early
    best_state: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    @classmethod
    def of(cls, node: DictConfig) -> EarlyStopping | None:
        """From the ``early_stopping`` block (None: off)."""
        if node.patience is None:
            return None
        return cls(
            patience=node.patience,
            monitor=_value(node.monitor),
            mode=_value(node.mode),
            min_delta=node.min_delta,
            restore_best=node.restore_best,
        )

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, metrics: dict[str, float], weights: WeightsSource) -> bool:
        """Take ``epoch``'s metrics (``weights()``: the model's weights after it, copied only
        on an improvement); True when training stops after this epoch."""
        value = metrics[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = weights()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self, model: torch.nn.Module) -> None:
        """Put the best epoch's weights into ``model`` (with ``restore_best``)."""
        if self.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)

    def summary(self, last_epoch: int) -> dict[str, float]:
        """What the run records: its best epoch and the last epoch it trained."""
        return {"best_epoch": self.best_epoch, "stopped_epoch": last_epoch}

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


WeightsSource = Any  # () -> dict[str, Tensor]: a copy of the model's weights


def model_weights(model: torch.nn.Module) -> WeightsSource:
    """A copy of ``model``'s weights, when called."""
    return lambda: {k: v.detach().clone() for k, v in model.state_dict().items()}


def _value(option: Any) -> str:
    return option.value if hasattr(option, "value") else str(option)
