"""The training loop reads its per-epoch metrics in bulk: same values as reading them each epoch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from pipeline.config import compose_config
from pipeline.core.loop import UnreadEpochs, fit
from pipeline.runtime.console import Progress

TOY = instantiate(compose_config().data)


def recorded_fit(batch_size: int | None, epochs: int = 300) -> list[tuple[int, dict]]:
    cfg = compose_config([f"epochs={epochs}", f"batch_size={batch_size or 'null'}"])
    torch.manual_seed(cfg.seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    rows = []
    fit(
        model,
        optimizer,
        TOY,
        epochs=epochs,
        batch_size=cfg.batch_size,
        log_every=cfg.log_every,
        generator=torch.Generator().manual_seed(cfg.seed),
        record=lambda epoch, metrics, ms: rows.append((epoch, metrics)),
        progress=Progress(epochs),
    )
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
