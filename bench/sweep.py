"""A 2 lr x 3 seeds sweep against one default run, both as whole processes.

    python bench/sweep.py [--rounds 5] [--epochs 1000] [--no-warm-up]

``python -m pipeline.train -m optim.lr=0.01,0.1 seed=1,2,3`` (6 tracked runs, a parent run and
its summary) vs ``python -m pipeline.train``, interleaved, in a fresh temp dir whose store a
warm-up run created. Prints min/median/max seconds and the median ratio sweep/single.
"""

from __future__ import annotations

import argparse
import sys

from common import interleaved, summary

# sweep.resume=false: each round trains its 6 jobs again (by default a sweep run again skips
# the jobs that already have a FINISHED run).
SWEEP = [sys.executable, "-m", "pipeline.train", "-m", "optim.lr=0.01,0.1", "seed=1,2,3",
         "sweep.resume=false"]  # fmt: skip
SINGLE = [sys.executable, "-m", "pipeline.train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--no-warm-up", action="store_true", help="smoke runs: no warm-up")
    args = parser.parse_args()
    epochs = [f"epochs={args.epochs}"]
    commands = [[*SINGLE, *epochs], [*SWEEP, *epochs]]
    single, sweep = interleaved(commands, args.rounds, not args.no_warm_up)
    ratios = [s / o for s, o in zip(sweep, single, strict=True)]
    print(summary("one default run", single))
    print(summary("2 lr x 3 seeds sweep", sweep))
    print(summary("ratio sweep/single", ratios, "x", "(target <= 2x)"))


if __name__ == "__main__":
    main()
