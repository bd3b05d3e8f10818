"""Epoch throughput at scale: the tracked loop against a plain torch loop over the same tensors.

    python bench/scale.py [--samples 1000000] [--features 64] [--classes 10] [--device cpu]

``data=synthetic`` (1,000,000 x 64, 10 classes, no held-out split), softmax regression, SGD.
For full batch and for ``batch_size=1024`` (shuffled mini-batches by indexing): epochs per
second of ``pipeline.core.loop.fit`` (metrics buffered into a real MLflow run) and of a plain
loop doing the same steps, interleaved; and the peak memory (RSS; on CUDA, allocated memory).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import summary
from mlflow.tracking import MlflowClient

from pipeline.core.data import synthetic
from pipeline.core.loop import fit
from pipeline.runtime.console import Progress
from pipeline.tracking.run.metrics import MetricBuffer
from pipeline.tracking.store.access import prepare_store


def plain_epochs(x, y, classes, batch_size, epochs, device) -> float:
    """Seconds for ``epochs`` epochs of a plain loop (the same steps as ``fit``)."""
    torch.manual_seed(1)
    model = torch.nn.Linear(x.shape[1], classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for _ in range(epochs):
        if batch_size is None:
            batches = [slice(None)]
        else:
            batches = torch.randperm(len(y), generator=generator).to(device).split(batch_size)
        for index in batches:
            cost = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            cost.backward()
            optimizer.step()
        cost.item()
    return time.perf_counter() - start


def tracked_epochs(data, classes, batch_size, epochs, device, client, experiment_id) -> float:
    torch.manual_seed(1)
    model = torch.nn.Linear(data.n_features, classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = client.create_run(experiment_id)
    metrics = MetricBuffer(client, run.info.run_id, flush_every_s=5)
    start = time.perf_counter()
    fit(
        model,
        optimizer,
        data,
        epochs=epochs - 1,
        batch_size=batch_size,
        log_every=10**9,
        generator=torch.Generator().manual_seed(1),
        record=metrics.log,
        progress=Progress(epochs),
    )
    metrics.flush()
    seconds = time.perf_counter() - start
    client.set_terminated(run.info.run_id)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = synthetic(
        n_samples=args.samples, n_features=args.features, n_classes=args.classes, separation=1.0,
        seed=0,
    ).to(device)  # fmt: skip
    x, y = data.train.features, data.train.labels
    print(
        f"data: {args.samples:,} x {args.features}, {args.classes} classes, on {device}, "
        f"{torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        experiment_id = prepare_store(uri, "bench-scale")
        client = MlflowClient(tracking_uri=uri)
        for batch_size, epochs in ((None, 20), (1024, 3)):
            plain, tracked = [], []
            for _ in range(args.rounds):
                plain.append(epochs / plain_epochs(x, y, args.classes, batch_size, epochs, device))
                tracked.append(
                    epochs
                    / tracked_epochs(
                        data, args.classes, batch_size, epochs, device, client, experiment_id
                    )
                )
            ratios = [t / p for t, p in zip(tracked, plain, strict=True)]
            label = "full batch" if batch_size is None else f"batch_size={batch_size}"
            print(
                f"{label:16s} plain {statistics.median(plain):8.2f} epochs/s  tracked "
                f"{statistics.median(tracked):8.2f} epochs/s  ratio tracked/plain min "
                f"{min(ratios):.2f}x median {statistics.median(ratios):.2f}x max "
                f"{max(ratios):.2f}x   (target >= 0.9x)"
            )
            print(summary(f"plain {label}", plain, " epochs/s"))
            print(summary(f"tracked {label}", tracked, " epochs/s"))
            print(summary(f"ratio {label} tracked/plain", ratios, "x", "(target >= 0.9x)"))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(summary("peak RSS", [peak_rss], " MiB"))
    print(f"peak memory: RSS {peak_rss:,.0f} MiB", end="")
    if device.type == "cuda":
        print(f", CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB", end="")
    print()


if __name__ == "__main__":
    main()
