"""What one more job adds to a sweep: (T(N jobs) - T(1 job)) / (N - 1), basic launcher.

    python bench/marginal.py [--rounds 3] [--jobs 12] [--epochs 1000]

Times ``python -m pipeline.train -m seed=1`` and ``python -m pipeline.train -m seed=1,...,N``
(default runs, one after another in one process), interleaved, in a fresh temp dir whose store a
warm-up run created. Every sweep logs to an experiment of its own, so no job is skipped as done
before. Prints min/median/max seconds of each, and each round's marginal cost of a job (the
whole-process start, imports and the sweep's parent run cancel out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import summary, timed


def sweep(jobs: int, epochs: int, experiment: str) -> list[str]:
    seeds = ",".join(str(seed) for seed in range(1, jobs + 1))
    return [
        sys.executable, "-m", "pipeline.train", "-m", f"seed={seeds}", f"epochs={epochs}",
        "hydra/launcher=basic", "hydra/sweeper=basic",  # one job after another
        f"tracking.experiment={experiment}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--no-warm-up", action="store_true", help="smoke runs: no warm-up")
    args = parser.parse_args()
    one, many = [], []
    with tempfile.TemporaryDirectory() as cwd:
        if not args.no_warm_up:  # creates the store, warms the file cache
            timed(sweep(1, args.epochs, "warm-up"), cwd)
        for r in range(args.rounds):
            one.append(timed(sweep(1, args.epochs, f"one-{r}"), cwd))
            many.append(timed(sweep(args.jobs, args.epochs, f"many-{r}"), cwd))
    marginal = [(m - o) / (args.jobs - 1) for m, o in zip(many, one, strict=True)]
    print(f"{args.epochs} epochs per job, {args.rounds} rounds, interleaved")
    print(summary("sweep of 1 job", one))
    print(summary(f"sweep of {args.jobs} jobs", many))
    print(summary("marginal cost of a job", marginal, note="(target <= 0.40 s)"))


if __name__ == "__main__":
    main()
