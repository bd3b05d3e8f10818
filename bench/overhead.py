"""Whole-process cost of a tracked default run against the plain reference script.

    python bench/overhead.py [--rounds 7] [--no-warm-up]

Times three processes, in turn, in a fresh temp dir (the store is created by a warm-up run
first, as it is for every run but a user's very first):

- plain: the reference script;
- floor: the same script after importing Hydra and MLflow and opening the sqlite store
  (``floor_reference.py``), the least any single-process Hydra + MLflow pipeline pays;
- two-process floor: the same, with MLflow imported and the store opened by a second process
  while the first trains (``floor_reference.py --two-process``);
- tracked: ``python -m pipeline.train``.

Prints min/median/max seconds of each and the median ratios to plain, so that the tracked
run's overhead splits into what the stack costs (floor) and what the pipeline adds on top.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import interleaved, ratio, summary

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-warm-up", action="store_true", help="smoke runs: no warm-up")
    args = parser.parse_args()
    commands = [
        [sys.executable, str(HERE / "plain_reference.py")],
        [sys.executable, str(HERE / "floor_reference.py")],
        [sys.executable, str(HERE / "floor_reference.py"), "--two-process"],
        [sys.executable, "-m", "pipeline.train"],
    ]
    plain, floor, two_process, tracked = interleaved(commands, args.rounds, not args.no_warm_up)
    print(summary("plain reference script", plain))
    print(summary("floor (+ Hydra, MLflow, store)", floor))
    print(summary("two-process floor", two_process))
    print(summary("tracked default run", tracked))
    print(summary("ratio floor/plain", ratio(floor, plain), "x"))
    print(summary("ratio two-process floor/plain", ratio(two_process, plain), "x"))
    print(summary("ratio tracked/plain", ratio(tracked, plain), "x", "(target <= 1.3x)"))
    print(summary("tracked - floor", [t - f for t, f in zip(tracked, floor, strict=True)]))


if __name__ == "__main__":
    main()
