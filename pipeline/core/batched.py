"""Many jobs trained as one computation: the models of a sweep's group stacked, one step for all.

Every job of a group has the same model shapes, optimizer class, epochs and batch size; seeds
and optimizer hyperparameters may differ. The jobs share one dataset, or each has its own
(``Job.data``: the folds of a cross-validation, each its own rows and standardization) of the
same shapes. Each job starts from the weights its own seed
gives, shuffles its mini-batches with its own generator, and is updated by the very function
``torch.optim`` uses (``torch.optim.sgd.sgd``, ``torch.optim.adam.adam``), called once per block
of jobs with equal hyperparameters. The cost (its classes weighted, if the ``loss`` says so)
is summed in the order ``F.cross_entropy`` sums it.

Each job may have its own learning-rate scheduler and early stopping
(``pipeline.core.controls``), stepped after each epoch as a run alone steps them: the scheduler
sets the lr of the job's own optimizer, from which the blocks are formed again; a job that stops
early is no longer updated and records nothing more, while the others go on.

Each product of a linear layer is computed in a batched form found to give the bits a job
alone gets, or job by job where none does (``pipeline.core.products``): the numbers stay those
of a run alone, bit for bit.

``fit_group`` is the loop; the rest is what one step does to the stack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby

import torch
import torch.nn.functional as F
import torch.optim.adam as functional_adam
import torch.optim.sgd as functional_sgd
from torch import nn

from pipeline.core import stop
from pipeline.core.controls import EarlyStopping, Scheduler, current_lr, step_scheduler
from pipeline.core.data import Dataset, Split
from pipeline.core.loop import DivergedError, divergence_fix
from pipeline.core.loss import PLAIN, Loss
from pipeline.core.products import Kernels, StackedLinear

BATCHABLE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)


def why_not_batchable(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: Loss = PLAIN
) -> str | None:
    """Why this model, optimizer and loss cannot train in a batch (None: they can)."""
    if loss.label_smoothing:  # F.cross_entropy sums the smoothed part in another order
        return "loss.label_smoothing has no batched form"
    if type(optimizer) not in BATCHABLE_OPTIMIZERS:
        return f"{type(optimizer).__name__} has no batched update (SGD, Adam and AdamW have)"
    if len(optimizer.param_groups) != 1 or optimizer.param_groups[0].get("amsgrad"):
        return "the optimizer has several parameter groups or amsgrad"
    if optimizer.param_groups[0].get("maximize") or optimizer.param_groups[0].get("dampening"):
        return "the optimizer maximizes or dampens"
    layers = list(model) if isinstance(model, nn.Sequential) else [model]
    for layer in layers:
        if isinstance(layer, nn.Dropout) and layer.p > 0:
            return "dropout draws random numbers per job"
        if not isinstance(layer, (nn.Linear, nn.Dropout, *ELEMENTWISE)):
            return f"{type(layer).__name__} layers have no batched form"
    return None


Record = Callable[[list[tuple[int, int, dict[str, float]]]], None]  # (epoch, ms, metrics)


@dataclass
class Job:
    """One job of a group: its model and optimizer (built with its seed, maybe restored from a
    checkpoint), its mini-batch shuffler, where its metrics go (``record``: several epochs'
    at once), and what its user set."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: torch.Generator
    record: Record  # several epochs' metrics at once
    changed: Sequence[str] = ()
    failure: DivergedError | None = None  # set when its cost stops being finite
    scheduler: Scheduler | None = None  # steps its optimizer's lr after each epoch
    early: EarlyStopping | None = None
    data: Dataset | None = None  # its own data (as the model sees it); None: the group's

    @property
    def hyperparameters(self) -> tuple:
        group = self.optimizer.param_groups[0]
        return tuple(sorted((k, str(v)) for k, v in group.items() if k != "params"))

    @property
    def training(self) -> bool:
        """False once early stopping stopped it: it is no longer updated."""
        return self.early is None or not self.early.stopped

    @property
    def block_key(self) -> tuple | None:
        """Jobs of one block have equal keys; None: in no block (not updated)."""
        return self.hyperparameters if self.training else None

    @property
    def options(self) -> dict:
        return {k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"}


# ----------------------------------------------------------------------------- the cost


def nll_sum(losses: torch.Tensor) -> torch.Tensor:
    """Sum each row of ``losses`` (jobs x samples) in the order ``F.nll_loss`` does on CPU.

    ATen adds the losses in cascade levels of 16: the first sample moves up a level at once,
    then every 16 samples; the levels' remainders are added last, lowest level first. The same
    additions, done for all jobs at once, give the same bits.
    """
    level, remainders = losses, []
    while True:
        first, rest = level[:, :1], level[:, 1:]
        whole = rest.shape[1] // 16 * 16
        chunks = rest[:, :whole].reshape(len(level), -1, 16)
        sums = torch.zeros(chunks.shape[:2], dtype=level.dtype, device=level.device)
        for i in range(16):
            sums = sums + chunks[:, :, i]
        remainder = torch.zeros(len(level), dtype=level.dtype, device=level.device)
        for i in range(whole, rest.shape[1]):
            remainder = remainder + rest[:, i]
        remainders.append(remainder)
        level = torch.cat([first, sums], dim=1)
        if level.shape[1] == 1:
            remainders.append(level[:, 0])
            break
    total = torch.zeros(len(losses), dtype=losses.dtype, device=losses.device)
    for remainder in remainders:
        total = total + remainder
    return total


def sample_losses(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Each sample's cross-entropy (jobs x samples), as ``F.cross_entropy`` computes it (times
    its class's ``weight``)."""
    picked = F.log_softmax(logits, dim=-1).gather(-1, labels[..., None])[..., 0]
    return -picked if weight is None else -(picked * weight[labels])


def total_weight(labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor | int:
    """What ``F.nll_loss`` divides the summed losses by: the samples, or their classes'
    weights summed in its order."""
    return labels.shape[-1] if weight is None else nll_sum(weight[labels])


def mean_cost(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Each job's ``F.cross_entropy(logits[j], labels[j], weight=weight)``, the same bits."""
    with torch.no_grad():
        return nll_sum(sample_losses(logits, labels, weight)) / total_weight(labels, weight)


# ----------------------------------------------------------------------------- the models


class Stack:
    """The jobs' models as stacked parameters (job first), and their forward pass."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        first = models[0]
        self.layers = list(first) if isinstance(first, nn.Sequential) else [first]
        self.params = [  # leaves: weight and bias of each linear layer, stacked
            torch.stack([p.detach() for p in parameters]).to(device).requires_grad_()
            for parameters in zip(*(m.parameters() for m in models), strict=True)
        ]
        self.kernels = Kernels()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every job (jobs x samples x classes) for ``x`` (shared, or one per job)."""
        params = iter(self.params)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                x = StackedLinear.apply(x, next(params), next(params), self.kernels)
            elif not isinstance(layer, nn.Dropout):
                x = layer(x)
        return x

    def put_back(self, j: int, model: nn.Module) -> None:
        """Job ``j``'s weights into its own ``model``."""
        with torch.no_grad():
            for stacked, own in zip(self.params, model.parameters(), strict=True):
                own.copy_(stacked[j])


# ----------------------------------------------------------------------------- the update


@dataclass
class Block:
    """Jobs ``start``..``stop`` of the stack, whose hyperparameters are equal, and their
    optimizer state (as ``torch.optim`` keeps it, one tensor per parameter for the block)."""

    start: int
    stop: int
    options: dict
    kind: type
    state: dict[str, list] = field(default_factory=dict)

    def step(self, params: list[torch.Tensor]) -> None:
        mine = [p[self.start : self.stop] for p in params]
        grads = [p.grad[self.start : self.stop] for p in params]
        o = self.options
        if self.kind is torch.optim.SGD:
            buffers = self.state.setdefault("momentum_buffer", [None] * len(mine))
            functional_sgd.sgd(
                mine, grads, buffers, foreach=o["foreach"], fused=o["fused"],
                weight_decay=o["weight_decay"], momentum=o["momentum"], lr=o["lr"],
                dampening=o["dampening"], nesterov=o["nesterov"], maximize=o["maximize"],
            )  # fmt: skip
            return
        if not self.state:
            self.state = {
                "exp_avg": [torch.zeros_like(p) for p in mine],
                "exp_avg_sq": [torch.zeros_like(p) for p in mine],
                "step": [torch.tensor(0.0) for _ in mine],
            }
        beta1, beta2 = o["betas"]
        functional_adam.adam(
            mine, grads, self.state["exp_avg"], self.state["exp_avg_sq"], [], self.state["step"],
            foreach=o["foreach"], capturable=o["capturable"], differentiable=False,
            fused=o["fused"], decoupled_weight_decay=o.get("decoupled_weight_decay", False),
            amsgrad=False, beta1=beta1, beta2=beta2, lr=o["lr"],
            weight_decay=o["weight_decay"], eps=o["eps"], maximize=o["maximize"],
        )  # fmt: skip

    def load(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Stack the block's jobs' optimizer states (a resumed job's, or none yet)."""
        states = [
            [opt.state.get(p, {}) for p in opt.param_groups[0]["params"]] for opt in optimizers
        ]
        if not states[0][0]:
            return
        names = [k for k in states[0][0] if states[0][0][k] is not None]
        for name in names:
            if name == "step":
                self.state[name] = [s[name].clone() for s in states[0]]
            else:
                self.state[name] = [
                    torch.stack([job[i][name] for job in states]) for i in range(len(states[0]))
                ]

    def part(self, start: int, stop: int, options: dict) -> Block:
        """Jobs ``start``..``stop`` of this block as a block of their own (its state copied)."""
        if (start, stop) == (self.start, self.stop):
            return replace(self, options=options)
        mine = slice(start - self.start, stop - self.start)

        def copy(name: str, t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t.clone() if name == "step" else t[mine].clone()  # a block's one step count

        state = {name: [copy(name, t) for t in tensors] for name, tensors in self.state.items()}
        return Block(start, stop, options, self.kind, state)

    def save(self, j: int, optimizer: torch.optim.Optimizer) -> None:
        """Job ``j``'s (a job of this block) optimizer state into its own ``optimizer``."""
        for i, p in enumerate(optimizer.param_groups[0]["params"]):
            own = {}
            for name, tensors in self.state.items():
                if tensors[i] is not None:
                    value = tensors[i] if name == "step" else tensors[i][j - self.start]
                    own[name] = value.detach().clone()
            if own:
                optimizer.state[p] = own


def blocks(jobs: Sequence[Job]) -> list[Block]:
    """Runs of consecutive jobs with equal optimizer hyperparameters (less those stopped)."""
    found, start = [], 0
    for key, same in groupby(jobs, key=lambda job: job.block_key):
        size = len(list(same))
        if key is not None:
            block = Block(start, start + size, jobs[start].options, type(jobs[start].optimizer))
            block.load([job.optimizer for job in jobs[start : start + size]])
            found.append(block)
        start += size
    return found


def regroup(steps: list[Block], jobs: Sequence[Job]) -> list[Block]:
    """``steps`` split where their jobs' hyperparameters (a scheduler's lr) now differ, and
    without the jobs that stopped; each block's options are its jobs' current ones."""
    found = []
    for block in steps:
        start = block.start
        members = jobs[block.start : block.stop]
        for key, same in groupby(members, key=lambda job: job.block_key):
            size = len(list(same))
            if key is not None:
                found.append(block.part(start, start + size, jobs[start].options))
            start += size
    return found


# ----------------------------------------------------------------------------- the loop


def epoch_batches(jobs: Sequence[Job], n: int, batch_size: int | None, device: torch.device):
    """Each step's sample indices per job (jobs x batch), or None for the full batch."""
    if batch_size is None or batch_size >= n:
        return [None]
    orders = torch.stack([torch.randperm(n, generator=job.batches) for job in jobs]).to(device)
    return list(orders.split(batch_size, dim=1))


def train_epoch(
    stack: Stack, steps: list[Block], train: Split, indices, weight: torch.Tensor | None = None
) -> tuple:
    """One pass of every job over ``train``: each job's mean cost (its classes weighted by
    ``weight``) and count of correct predictions (measured before each step, as
    ``pipeline.core.loop`` does)."""
    costs, correct, sizes = [], [], []
    n = train.labels.shape[-1]
    for index in indices:
        x, y = batch_of(train, index)
        y = y.expand(len(stack.params[0]), -1)
        for p in stack.params:
            p.grad = None
        logits = stack(x)
        losses = sample_losses(logits, y, weight)
        total = total_weight(y, weight)
        if weight is None:
            losses.mean(dim=1).sum().backward()  # each job's gradient is its own cost's
        else:  # F.nll_loss's gradient: weight * -(1 / total), in the same bits
            (losses.sum(dim=1) / total).sum().backward()
        with torch.no_grad():
            for block in steps:
                block.step(stack.params)
        costs.append(nll_sum(losses.detach()) / total)
        correct.append((logits.detach().max(dim=-1).indices == y).sum(dim=1))
        if index is None:
            return costs[0], correct[0]
        sizes.append(y.shape[1])
    weights = torch.tensor(sizes, dtype=torch.float64, device=train.labels.device)
    cost = torch.stack([c @ weights / n for c in torch.stack(costs, 1).double()])
    return cost, torch.stack(correct).sum(dim=0)


def batch_of(train: Split, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The features and labels of a step: all (``index`` None) or each job's rows ``index``
    (jobs x batch) of ``train``, shared (samples x features) or one per job (``stacked``)."""
    if index is None:
        return train.features, train.labels
    if train.labels.dim() == 1:
        return train.features[index], train.labels[index]
    jobs = torch.arange(len(index), device=index.device)[:, None]
    return train.features[jobs, index], train.labels[jobs, index]


def stacked(datasets: Sequence[Dataset]) -> Dataset:
    """The jobs' own datasets as one, each split's tensors stacked (job first); what
    ``fit_group`` trains on when its jobs each have their data."""
    first = datasets[0]
    for data in datasets[1:]:
        for split in ("train", "val"):
            mine, theirs = getattr(first, split), getattr(data, split)
            if (mine is None) != (theirs is None) or (
                mine is not None and mine.features.shape != theirs.features.shape
            ):
                raise ValueError(f"the jobs' {split} splits differ in shape: train them alone")

    def stack(split: str) -> Split | None:
        splits = [getattr(data, split) for data in datasets]
        if splits[0] is None:
            return None
        return Split(*(torch.stack(parts) for parts in zip(
            *((s.features, s.labels) for s in splits), strict=True
        )))  # fmt: skip

    return replace(first, train=stack("train"), val=stack("val"), test=None)


@torch.no_grad()
def evaluate(
    stack: Stack, split: Split, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every job's cost and accuracy on ``split``, as ``pipeline.core.evaluate`` gives them."""
    logits = stack(split.features)
    labels = split.labels.expand(len(logits), -1)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean(dim=1)
    return mean_cost(logits, labels, weight), accuracy


@dataclass
class Batch:
    """A group being trained: its jobs (equal hyperparameters next to each other), their
    stacked models and their optimizer blocks."""

    jobs: list[Job]
    stack: Stack
    steps: list[Block]

    @classmethod
    def of(cls, jobs: Sequence[Job], device: torch.device) -> Batch:
        ordered = sorted(jobs, key=lambda job: job.hyperparameters)
        return cls(ordered, Stack([job.model for job in ordered], device), blocks(ordered))

    def put_back(self) -> None:
        """Each job's weights and optimizer state into its own model and optimizer (a job that
        stopped early got its own when it stopped)."""
        for block in self.steps:
            for j in range(block.start, block.stop):
                self.put_back_job(j, block)

    def put_back_job(self, j: int, block: Block) -> None:
        self.stack.put_back(j, self.jobs[j].model)
        block.save(j, self.jobs[j].optimizer)

    def weights(self, j: int):
        """Job ``j``'s weights as its model's ``state_dict`` (a copy), when called."""
        names = [name for name, _ in self.jobs[j].model.named_parameters()]
        return lambda: {
            n: p[j].detach().clone() for n, p in zip(names, self.stack.params, strict=True)
        }

    def control(self, epoch: int, val: tuple) -> None:
        """After ``epoch``: step each training job's scheduler and early stopping (on its own
        validation metrics), as ``pipeline.core.loop.fit`` does; a job that stops gets its
        weights and optimizer state back and leaves its block; the blocks are formed again."""
        needs_val = val and any(
            job.early is not None
            or isinstance(job.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            for job in self.jobs
        )
        costs, accuracies = (val[0].tolist(), val[1].tolist()) if needs_val else ((), ())
        block_of = {j: b for b in self.steps for j in range(b.start, b.stop)}
        for j, job in enumerate(self.jobs):
            if not job.training:
                continue
            metrics = {"val_cost": costs[j], "val_accuracy": accuracies[j]} if needs_val else {}
            if job.scheduler is not None:
                job.optimizer._opt_called = True  # its step ran (functionally): torch's flag
                step_scheduler(job.scheduler, metrics.get("val_cost"))
            if job.early is not None and job.early.update(epoch, metrics, self.weights(j)):
                self.put_back_job(j, block_of[j])
        self.steps = regroup(self.steps, self.jobs)


def fit_group(
    jobs: Sequence[Job],
    data: Dataset | None,
    *,
    epochs: int,
    batch_size: int | None,
    start_epoch: int = 0,
    log_every: int = 100,
    save: Callable[[int, Batch], None] | None = None,
    save_every_s: float = math.inf,
    on_epoch: Callable[[int], None] | None = None,
    loss: Loss = PLAIN,
) -> Batch:
    """Train every job for epochs ``start_epoch``..``epochs``, as ``pipeline.core.loop.fit``
    trains one: the same metrics, given to each job's ``record``, read every ``log_every``.
    ``data``: the jobs' shared data, or None: each job's own (``Job.data``, of equal shapes).

    A job whose cost stops being finite gets its ``failure`` and records nothing more; the
    others go on. ``save(epoch, batch)`` checkpoints every job, every ``save_every_s``
    seconds and when a signal stops the group (``stop.Stop``, raised at an epoch boundary).
    ``loss``: every job's (its class weights; not label smoothing: ``why_not_batchable``).
    Returns the batch; its ``put_back`` gives each job its trained model and optimizer state.
    """
    if loss.label_smoothing:
        raise ValueError("loss.label_smoothing has no batched form: train such jobs alone")
    own = data is None
    device = (jobs[0].data if own else data).train.features.device
    batch = Batch.of(jobs, device)
    jobs, stack = batch.jobs, batch.stack
    if own:  # each job its own rows, stacked in the batch's order
        data = stacked([job.data for job in jobs])
    controls = any(job.scheduler is not None or job.early is not None for job in jobs)
    # (epoch, time in ms, cost, correct, (val cost, val accuracy), each job's lr or None)
    held: list[tuple] = []
    n = data.train.labels.shape[-1]
    done, next_save = start_epoch - 1, time.monotonic() + save_every_s

    def report() -> None:
        """Give each job its held epochs; a job's first non-finite cost is its last epoch."""
        rows = read(held)
        held.clear()
        for j, job in enumerate(jobs):
            if job.failure is not None or not rows:
                continue
            last = job.early.stopped_epoch if job.early and job.early.stopped else epochs_to
            epochs: list[tuple[int, int, dict[str, float]]] = []
            for epoch, ms, cost, correct, val, lrs in rows:
                if epoch > last:  # stopped early: nothing more
                    break
                metrics = {"cost": cost[j], "accuracy": correct[j] / n}
                if val:
                    metrics["val_cost"], metrics["val_accuracy"] = val[0][j], val[1][j]
                if job.scheduler is not None:
                    metrics["lr"] = lrs[j]
                epochs.append((epoch, ms, metrics))
                if not math.isfinite(cost[j]):
                    fix = divergence_fix(job.optimizer.param_groups[0]["lr"], job.changed)
                    job.failure = DivergedError(
                        f"Training diverged: cost is {cost[j]} at epoch {epoch}. {fix}"
                    )
                    break
            job.record(epochs)

    epochs_to = epochs
    try:
        for epoch in range(start_epoch, epochs + 1):
            if not any(job.training for job in jobs):  # every job stopped early
                break
            lrs = [current_lr(job.optimizer) for job in jobs] if controls else None
            indices = epoch_batches(jobs, n, batch_size, device)
            cost, correct = train_epoch(stack, batch.steps, data.train, indices, loss.weight)
            val = evaluate(stack, data.val, loss.weight) if data.val is not None else ()
            held.append((epoch, int(time.time() * 1000), cost, correct, val, lrs))
            done = epoch
            if controls:
                batch.control(epoch, val)
            if on_epoch is not None:
                on_epoch(epoch)
            if epoch % log_every == 0 or epoch == epochs or len(held) >= 1000:
                report()
            if save and time.monotonic() >= next_save:
                report()
                save(epoch, batch)
                next_save = time.monotonic() + save_every_s
            stop.check()
    except stop.Stop:
        report()
        if save and done >= start_epoch:
            save(done, batch)
        raise
    except KeyboardInterrupt:
        report()
        raise
    report()  # what is held when every job stopped early
    return batch


def read(held: list[tuple]) -> list[tuple]:
    """The held epochs' tensors as Python numbers, read together (one ``tolist`` each)."""
    if not held:
        return []
    costs = torch.stack([h[2] for h in held]).tolist()
    correct = torch.stack([h[3] for h in held]).tolist()
    vals: list = [()] * len(held)
    if held[0][4]:
        val_costs = torch.stack([h[4][0] for h in held]).tolist()
        val_accuracies = torch.stack([h[4][1] for h in held]).tolist()
        vals = list(zip(val_costs, val_accuracies, strict=True))
    return [(h[0], h[1], costs[i], correct[i], vals[i], h[5]) for i, h in enumerate(held)]
