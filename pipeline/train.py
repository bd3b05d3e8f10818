"""The training stage: ``python -m pipeline.train [overrides]`` (``-m`` for a sweep)."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from collections.abc import Callable

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from pipeline.config import Device, register_configs, validate
from pipeline.data import Dataset, load_dataset
from pipeline.determinism import seed_everything
from pipeline.job import JobContext
from pipeline.model import build_model
from pipeline.optim import build_optimizer
from pipeline.provenance import provenance_tags
from pipeline.tracking import (
    log_config,
    log_model,
    prepare_store,
    resolve_tracking_uri,
    tracked_run,
)

log = logging.getLogger(__name__)
register_configs()


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    epochs: int,
    log_every: int,
    record: Callable[..., None],
) -> None:
    """Full-batch training, as in the reference script; ``record`` gets each epoch's metrics."""
    x, y = data.features, data.labels
    for epoch in range(epochs + 1):
        prediction = model(x)
        cost = F.cross_entropy(prediction, y)
        optimizer.zero_grad()
        cost.backward()
        optimizer.step()
        accuracy = (prediction.argmax(dim=1) == y).float().mean()
        record(epoch, cost=cost.item(), accuracy=accuracy.item())
        if epoch % log_every == 0 or epoch == epochs:
            log.info("Epoch %4d/%d Cost: %.6f", epoch, epochs, cost.item())


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Dataset) -> dict[str, float]:
    """Cost and accuracy of the trained model."""
    prediction = model(data.features)
    return {
        "cost": F.cross_entropy(prediction, data.labels).item(),
        "accuracy": (prediction.argmax(dim=1) == data.labels).float().mean().item(),
    }


def resolve_device(device: Device) -> torch.device:
    if device == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device.value)


def train(cfg: DictConfig, job: JobContext | None = None) -> float:
    """Validate, build, train and track one run; return the trained model's cost."""
    job = job or JobContext.current()
    validate(cfg)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data)
    seed_everything(cfg.seed, cfg.threads)
    model = build_model(cfg.model, data.n_features, data.n_classes)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    experiment_id = prepare_store(resolve_tracking_uri(cfg.tracking.uri), cfg.tracking.experiment)

    run_name = cfg.tracking.run_name or job.run_name
    tags = {**provenance_tags(device, data.digest()), **cfg.tracking.tags}
    with tracked_run(experiment_id, run_name, job, cfg.tracking.flush_every_s, tags) as metrics:
        log_config(cfg)
        model.to(device)
        on_device = Dataset(data.features.to(device), data.labels.to(device), data.class_names)
        fit(model, optimizer, on_device, cfg.epochs, cfg.log_every, metrics.log)
        final = evaluate(model, on_device)
        metrics.log_final(final)
        log_model(model, data.features[:2])
    log.info(
        "Run %s (%s) finished: final cost %.6f, accuracy %.3f",
        run_name,
        metrics.run_id,
        final["cost"],
        final["accuracy"],
    )
    return final["cost"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM ends the run like Ctrl-C
    try:
        main()
        # Skip the interpreter's final garbage collections over torch's and MLflow's objects:
        # exiting is ~0.9 s faster (bench/overhead.py).
        gc.freeze()
    except KeyboardInterrupt:
        print("Interrupted: the run was marked KILLED.", file=sys.stderr)
        sys.exit(130)
