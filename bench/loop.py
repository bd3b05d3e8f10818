"""The tracked training loop against the same plain loop, in one process.

    python bench/loop.py [--rounds 15] [--epochs 1000]

Same data (the toy set), same model, optimizer, seed and epochs. "plain" is the reference
script's loop; "tracked" is ``pipeline.core.loop.fit`` recording cost and accuracy at every epoch,
checkpointing as a run does by default (``checkpoint.every_s``, checked at every epoch),
into the metric buffer of a real MLflow run (sqlite store in a temp dir), with the final flush
timed separately. Interleaved; prints min/median/max and the median ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import summary
from mlflow.tracking import MlflowClient

from pipeline.config import compose_config
from pipeline.core.checkpoint import capture
from pipeline.core.data import TOY_FEATURES, TOY_LABELS, Dataset, Split
from pipeline.core.loop import fit
from pipeline.runtime.console import Progress
from pipeline.tracking.run.checkpoints import Checkpoints
from pipeline.tracking.run.metrics import MetricBuffer
from pipeline.tracking.store.access import prepare_store

CHECKPOINT_EVERY_S = compose_config().checkpoint.every_s  # the default


def plain_loop(x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(epochs + 1):
        prediction = model(x)
        cost = F.cross_entropy(prediction, y)
        optimizer.zero_grad()
        cost.backward()
        optimizer.step()
        if epoch % 100 == 0:
            last = cost.item()
    return last


def tracked_loop(data: Dataset, epochs: int, client: MlflowClient, experiment_id: str):
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = client.create_run(experiment_id)
    metrics = MetricBuffer(client, run.info.run_id, flush_every_s=5)
    checkpoints = Checkpoints(client, run)
    generator = torch.Generator().manual_seed(1)

    def save(epoch: int) -> None:
        metrics.flush()
        checkpoints.save(capture(epoch, model, optimizer, generator))

    start = time.perf_counter()
    fit(
        model,
        optimizer,
        data,
        epochs=epochs,
        batch_size=None,
        log_every=100,
        generator=generator,
        record=metrics.log,
        progress=Progress(epochs),
        save=save,
        save_every_s=CHECKPOINT_EVERY_S,
    )
    looped = time.perf_counter()
    metrics.flush()
    flushed = time.perf_counter()
    client.set_terminated(run.info.run_id)
    return looped - start, flushed - looped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the pipeline runs (threads=1)
    torch.use_deterministic_algorithms(True)
    x = torch.tensor(TOY_FEATURES, dtype=torch.float32)
    y = torch.tensor(TOY_LABELS)
    data = Dataset(Split(x, y), None, None, ["0", "1", "2"], ["x0", "x1", "x2", "x3"])
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        experiment_id = prepare_store(uri, "bench-loop")
        client = MlflowClient(tracking_uri=uri)
        tracked_loop(data, args.epochs, client, experiment_id)  # warm-up
        plain_loop(x, y, args.epochs)
        plain, tracked, flush = [], [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            plain_loop(x, y, args.epochs)
            plain.append(time.perf_counter() - start)
            loop_s, flush_s = tracked_loop(data, args.epochs, client, experiment_id)
            tracked.append(loop_s)
            flush.append(flush_s)
    print(f"{args.epochs + 1} steps, {args.rounds} rounds, interleaved")
    print(summary("plain loop", plain))
    print(summary("tracked loop (buffered metrics)", tracked))
    print(summary("final flush (log_batch, 2 metrics)", flush))
    ratios = [t / p for t, p in zip(tracked, plain, strict=True)]
    with_flush = [(t + f) / p for t, f, p in zip(tracked, flush, plain, strict=True)]
    print(summary("ratio tracked/plain", ratios, "x", "(target <= 1.1x)"))
    print(summary("ratio (tracked + flush)/plain", with_flush, "x"))


if __name__ == "__main__":
    main()
