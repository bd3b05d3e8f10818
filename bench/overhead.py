"""Whole-process cost of a tracked default run against the plain reference script.

    python bench/overhead.py [--rounds 7]

Runs both as separate processes, interleaved, in a fresh temp dir (the store is created by a
warm-up run first, as it is for every run but a user's very first), and prints min/median/max
seconds of each and the median ratio tracked/plain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import interleaved, summary

PLAIN = Path(__file__).with_name("plain_reference.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    plain_cmd = [sys.executable, str(PLAIN)]
    tracked_cmd = [sys.executable, "-m", "pipeline.train"]
    plain, tracked = interleaved(plain_cmd, tracked_cmd, args.rounds)
    ratios = [t / p for t, p in zip(tracked, plain, strict=True)]
    print(summary("plain reference script", plain))
    print(summary("tracked default run", tracked))
    print(summary("ratio tracked/plain", ratios, "x", "(target <= 1.3x)"))


if __name__ == "__main__":
    main()
