"""The training loop reads its per-epoch metrics in bulk: same values as reading them each epoch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import ROOT
from pipeline.config import register_configs
from pipeline.console import Progress
from pipeline.data import load_dataset
from pipeline.training import UnreadEpochs, fit


def toy_config(*overrides: str):
    """The default config (the reference experiment), composed by Hydra, with ``overrides``."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("config", overrides=list(overrides))


TOY = load_dataset(toy_config().data)


def recorded_fit(batch_size: int | None, epochs: int = 300) -> list[tuple[int, dict]]:
    cfg = toy_config(f"epochs={epochs}", f"batch_size={batch_size or 'null'}")
    torch.manual_seed(cfg.seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    rows = []
    record = lambda epoch, metrics, ms: rows.append((epoch, metrics))  # noqa: E731
    fit(model, optimizer, TOY, cfg, record, Progress(epochs))
    return rows


def plain_history(epochs: int = 300) -> list[tuple[float, float]]:
    """The reference loop, reading cost and accuracy at every step."""
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = TOY.train.features, TOY.train.labels
    history = []
    for _ in range(epochs + 1):
        logits = model(x)
        cost = F.cross_entropy(logits, y)
        history.append((cost.item(), (logits.argmax(dim=1) == y).sum().item() / len(y)))
        optimizer.zero_grad()
        cost.backward()
        optimizer.step()
    return history


def test_full_batch_metrics_equal_the_plain_loop_read_every_step():
    rows = recorded_fit(batch_size=None)
    assert [epoch for epoch, _ in rows] == list(range(301))
    assert [(m["cost"], m["accuracy"]) for _, m in rows] == plain_history()


@pytest.mark.parametrize("batch_size", [None, 3])
def test_reading_every_epoch_gives_the_same_metrics(monkeypatch, batch_size):
    in_bulk = recorded_fit(batch_size)
    monkeypatch.setattr(UnreadEpochs, "MAX_SAMPLES", 1)  # large data: read after each epoch
    each_epoch = recorded_fit(batch_size)
    assert in_bulk == each_epoch
    assert len({m["accuracy"] for _, m in in_bulk}) > 1  # accuracy moves: the test can fail
