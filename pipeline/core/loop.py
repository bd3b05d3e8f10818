"""The training loop: one optimizer step per batch, metrics read in bulk, stops at a boundary.

``fit`` is the whole loop; the rest is what one step and one epoch do, and how the per-epoch
metrics are held until they are read.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from pipeline.core import stop
from pipeline.core.controls import (
    EarlyStopping,
    Scheduler,
    current_lr,
    model_weights,
    step_scheduler,
)
from pipeline.core.data import Dataset, Split
from pipeline.core.evaluate import evaluate, predictions
from pipeline.core.loss import PLAIN, Loss
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

Record = Callable[[int, dict[str, float], int], None]  # (epoch, metrics, time in ms)


class Progress(Protocol):
    """What shows training as it goes (``pipeline.runtime.console.Progress`` on a terminal)."""

    def update(self, epoch: int, cost: torch.Tensor) -> None: ...

    def clear(self) -> None: ...


class DivergedError(PipelineError):
    """The cost became NaN or infinite."""

    resumable = False  # resuming would diverge again: the run is FAILED for good


def divergence_fix(lr: float, changed: Sequence[str]) -> str:
    """What to try after a divergence: other values for what the user set, or a smaller lr."""
    smaller = f"a smaller optim.lr (now {lr})"
    if all(setting.split("=", 1)[0] == "optim.lr" for setting in changed):
        return f"Fix: {smaller}"
    return f"Fix: other values for what you set ({', '.join(changed)}), e.g. {smaller}"


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Loss = PLAIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on (x, y); returns the cost and logits from before the step."""
    if isinstance(optimizer, torch.optim.LBFGS):  # it re-evaluates the model through a closure
        return lbfgs_step(model, optimizer, x, y, loss)
    optimizer.zero_grad()
    logits = model(x)
    cost = loss(logits, y)
    cost.backward()
    optimizer.step()
    return cost.detach(), logits.detach()


def lbfgs_step(
    model: torch.nn.Module,
    optimizer: torch.optim.LBFGS,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Loss = PLAIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``train_step`` for L-BFGS, which calls the closure several times per step."""
    before = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = model(x)
        cost = loss(logits, y)
        cost.backward()
        before.append((cost.detach(), logits.detach()))
        return cost

    optimizer.step(closure)
    return before[0]


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    batch_size: int | None,
    generator: torch.Generator,
    loss: Loss = PLAIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over ``train`` (full batch, or shuffled mini-batches).

    Returns the epoch's mean cost and what its accuracy is read from (see ``UnreadEpochs``):
    the logits of a full-batch step, or the count of correct predictions over the mini-batches.
    """
    n = len(train)
    if batch_size is None or batch_size >= n:  # full batch: the reference's step, nothing more
        return train_step(model, optimizer, train.features, train.labels, loss)
    batches = torch.randperm(n, generator=generator).to(train.labels.device).split(batch_size)
    costs, correct = [], []
    for index in batches:
        x, y = train.features[index], train.labels[index]
        cost, logits = train_step(model, optimizer, x, y, loss)
        costs.append(cost)
        correct.append((predictions(logits) == y).sum())
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float64, device=train.labels.device)
    mean_cost = torch.stack(costs).double() @ sizes / n  # summed once per epoch, not per batch
    return mean_cost, torch.stack(correct).sum()


class UnreadEpochs:
    """Epochs whose cost and accuracy are still tensors, read together every so often.

    Reading them every epoch (``.item()``, and argmax, compare and sum on the logits) made a
    toy step 15% slower, and costs a GPU a sync per step; reading 100 epochs at once costs a few
    ops. At most ``MAX_SAMPLES`` samples' worth of epochs are held, so large data is read each
    epoch and a diverged cost is seen soon.
    """

    MAX_SAMPLES = 1 << 16

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels
        self.epochs: list[tuple[int, int, dict[str, float]]] = []  # epoch, time in ms, val_*
        self.costs: list[torch.Tensor] = []
        self.outcomes: list[torch.Tensor] = []  # full batch: logits; mini-batches: correct count

    def add(
        self, epoch: int, cost: torch.Tensor, outcome: torch.Tensor, val: dict[str, float]
    ) -> None:
        self.epochs.append((epoch, int(time.time() * 1000), val))
        self.costs.append(cost)
        self.outcomes.append(outcome)

    @property
    def full(self) -> bool:
        return len(self.epochs) * len(self.labels) >= self.MAX_SAMPLES

    def read(self) -> list[tuple[int, int, dict[str, float]]]:
        """(epoch, time in ms, metrics) of each held epoch, which are then let go."""
        if not self.epochs:
            return []
        costs = torch.stack(self.costs).tolist()
        # One held epoch (large data) is viewed, not copied: stacking its logits copies them.
        outcomes = torch.stack(self.outcomes) if len(self.outcomes) > 1 else self.outcomes[0][None]
        if outcomes.dim() > 1:  # logits of full-batch steps
            outcomes = (predictions(outcomes) == self.labels).sum(dim=1)
        n = len(self.labels)
        rows = [
            (epoch, ms, {"cost": cost, "accuracy": correct / n, **val})
            for (epoch, ms, val), cost, correct in zip(
                self.epochs, costs, outcomes.tolist(), strict=True
            )
        ]
        self.epochs, self.costs, self.outcomes = [], [], []
        return rows


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int | None,
    log_every: int,
    generator: torch.Generator,
    record: Record,
    progress: Progress,
    start_epoch: int = 0,
    save: Callable[[int], None] | None = None,
    save_every_s: float = math.inf,
    changed: Sequence[str] = (),
    scheduler: Scheduler | None = None,
    early: EarlyStopping | None = None,
    loss: Loss = PLAIN,
) -> None:
    """Train for epochs ``start_epoch``..``epochs``; ``record`` gets each epoch's metrics.

    ``cost`` and ``accuracy`` are measured on the training split before each step (as in the
    reference script); ``val_cost`` and ``val_accuracy`` on the validation split after it.
    ``generator`` shuffles the mini-batches. ``save(epoch)`` checkpoints the state after
    ``epoch``: every ``save_every_s`` seconds, and when a signal stops the run. ``changed``:
    the values the user set (``optim.momentum=0.99``), which a divergence's Fix names.
    ``scheduler`` steps after each epoch, whose ``lr`` is then a metric too; ``early`` may end
    training before ``epochs`` (its ``stopped_epoch``). ``loss``: the cost minimized and
    measured (``pipeline.core.loss``).
    """
    unread = UnreadEpochs(data.train.labels)
    done = start_epoch - 1  # the last epoch fully trained
    next_save = time.monotonic() + save_every_s

    def report() -> None:
        """Record the held epochs and log every ``log_every``-th; stop at a non-finite cost."""
        for epoch, ms, metrics in unread.read():
            record(epoch, metrics, ms)
            cost = metrics["cost"]
            if not math.isfinite(cost):
                fix = divergence_fix(optimizer.param_groups[0]["lr"], changed)
                raise DivergedError(f"Training diverged: cost is {cost} at epoch {epoch}. {fix}")
            if epoch % log_every == 0 or epoch == epochs:
                progress.clear()
                log.info("Epoch %4d/%d Cost: %.6f", epoch, epochs, cost)

    train, val = data.train, data.val
    if early is not None and early.stopped:  # resumed after it stopped: nothing left to train
        return
    try:
        for epoch in range(start_epoch, epochs + 1):
            lr = current_lr(optimizer) if scheduler is not None else None
            cost, outcome = train_epoch(model, optimizer, train, batch_size, generator, loss)
            val_metrics = {}
            if val is not None:
                val_metrics = {f"val_{k}": v for k, v in evaluate(model, val, loss).items()}
            if scheduler is not None:
                val_metrics["lr"] = lr
                step_scheduler(scheduler, val_metrics.get("val_cost"))
            stopping = early is not None and early.update(epoch, val_metrics, model_weights(model))
            unread.add(epoch, cost, outcome, val_metrics)
            done = epoch
            progress.update(epoch, cost)
            if stopping:
                report()
                progress.clear()
                log.info(stopped_line(early, epoch))
                break
            if epoch % log_every == 0 or epoch == epochs or unread.full:
                report()
            if save and time.monotonic() >= next_save:
                report()
                save(epoch)
                next_save = time.monotonic() + save_every_s
            stop.check()
    except stop.Stop:  # at an epoch boundary: keep what was trained, and a checkpoint
        report()
        if save and done >= start_epoch:
            save(done)
        raise
    except KeyboardInterrupt:  # anywhere: keep the epochs trained before it
        report()
        raise


def stopped_line(early: EarlyStopping, epoch: int) -> str:
    """What a run logs when it stops early."""
    restored = f"; restored epoch {early.best_epoch}'s model" if early.restore_best else ""
    return (
        f"Early stopping at epoch {epoch}: {early.monitor} has not improved for "
        f"{early.patience} epochs (best {early.best:.6f} at epoch {early.best_epoch}){restored}"
    )
