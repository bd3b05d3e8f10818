"""The training loop reads its per-epoch metrics in bulk: same values as reading them each epoch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from conftest import runs_of, train_into
from pipeline.config import compose_config
from pipeline.core.loop import DivergedError, UnreadEpochs, divergence_fix, fit
from pipeline.runtime.console import Progress
from pipeline.stage import steering

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


def test_a_divergences_fix_names_the_values_the_user_set():
    assert steering(("epochs=5", "seed=2", "+tracking.tags.a=b", "hydra.verbose=true")) == []
    assert divergence_fix(0.1, []) == "Fix: a smaller optim.lr (now 0.1)"
    assert divergence_fix(1e38, ["optim.lr=1e38"]) == "Fix: a smaller optim.lr (now 1e+38)"
    changed = steering(("optim=adam", "+optim.amsgrad=true", "batch_size=8", "device=cpu"))
    assert changed == ["optim=adam", "optim.amsgrad=true", "batch_size=8"]
    assert divergence_fix(0.01, changed) == (
        "Fix: other values for what you set (optim=adam, optim.amsgrad=true, batch_size=8), "
        "e.g. a smaller optim.lr (now 0.01)"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("optim.lr=1e38", "optim.momentum=0.9", "epochs=5"),
            "Training diverged: cost is nan at epoch 1. Fix: other values for what you set "
            "(optim.lr=1e38, optim.momentum=0.9), e.g. a smaller optim.lr (now 1e+38)",
        ),
        (
            ("optim.weight_decay=1e38", "epochs=5", "+tracking.tags.purpose=x"),
            "Training diverged: cost is nan at epoch 2. Fix: other values for what you set "
            "(optim.weight_decay=1e38), e.g. a smaller optim.lr (now 0.1)",
        ),
    ],
)
def test_a_diverged_run_fails_naming_what_the_user_changed(store, overrides, message):
    with pytest.raises(DivergedError) as raised:
        train_into(store, *overrides)
    assert str(raised.value) == message
    (run,) = runs_of(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == message
