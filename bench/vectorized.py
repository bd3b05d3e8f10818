"""Batched sweeps: the default (vectorized) launcher against Hydra's basic one, whole process.

    python bench/vectorized.py [--rounds 3] [--big-rounds 1] [--more] [--smoke]

Every timed command runs in a fresh temp dir (a fresh store), ``OMP_NUM_THREADS=1``, the two
sides interleaved. Prints min/median/max of each and:

- 10 lr x 10 seeds of the default run: basic / vectorized (target >= 8x), and the largest
  relative difference between the two sides' logged values (every metric of every job);
- 10 lrs x 100 seeds (1000 jobs), vectorized: seconds (target <= 60 s) and peak RSS
  (<= 2 GB); the marginal job (T(1000) - T(100)) / 900 (<= 0.04 s); ``python -m
  pipeline.compare`` on that sweep, whole process (<= 3 s);
- with ``--more``: ``experiment=iris_mlp`` 8 lr x 8 seeds (>= 5x) and ``data=synthetic``
  200,000 x 64, 10 classes, 16 jobs (>= 3x), against basic;
- with ``--warm``: the 100 jobs again in one warm interpreter (``pipeline.sweep`` from Python,
  as a notebook's second sweep runs: the imports and first-use costs paid by a warm-up sweep),
  basic and vectorized in turn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import summary

TRAIN = [sys.executable, "-m", "pipeline.train", "-m"]
BASIC = ["hydra/launcher=basic", "hydra/sweeper=basic"]


def values(n: int, start: float = 0.01, stop: float = 0.7) -> str:
    """``n`` learning rates, evenly spaced on a log scale."""
    return ",".join(f"{start * (stop / start) ** (i / max(n - 1, 1)):.4g}" for i in range(n))


def seeds(n: int) -> str:
    return ",".join(str(s) for s in range(1, n + 1))


def one_thread() -> dict[str, str]:
    """The environment a timed command gets: the default store, ``OMP_NUM_THREADS=1``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(command: list[str], cwd: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``command`` in ``cwd``; exit if it fails."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=one_thread(), stdout=out, stderr=out)
        _, status, usage = os.wait4(process.pid, 0)  # this process's own peak RSS
        elapsed = time.perf_counter() - start
        if status != 0:
            out.seek(0)
            sys.exit(f"{' '.join(command)} failed ({status}):\n{out.read()[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024


def histories(cwd: str) -> dict[tuple[str, str], list[float]]:
    """Every job's metric histories in the store under ``cwd``, by (run name, metric)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{Path(cwd) / 'mlruns' / 'mlflow.db'}")
    found = {}
    for experiment in client.search_experiments():
        for r in client.search_runs([experiment.experiment_id], max_results=5000):
            if "sweep.dir" in r.data.tags:
                continue
            for key in r.data.metrics:
                steps = client.get_metric_history(r.info.run_id, key)
                found[r.info.run_name, key] = [m.value for m in sorted(steps, key=lambda m: m.step)]
    return found


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), "the two sides logged different runs or metrics"
    worst = 0.0
    for key, xs in a.items():
        for x, y in zip(xs, b[key], strict=True):
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


def versus(name: str, overrides: list[str], rounds: int, check: bool = False) -> list[float]:
    """Basic and vectorized, interleaved; prints both, the ratio and (``check``) the largest
    difference. Returns the vectorized side's seconds."""
    basic, ours, worst = [], [], 0.0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            basic.append(run([*TRAIN, *overrides, *BASIC], a)[0])
            ours.append(run([*TRAIN, *overrides], b)[0])
            if check:
                worst = max(worst, largest_difference(histories(a), histories(b)))
    print(summary(f"{name}: basic launcher", basic))
    print(summary(f"{name}: vectorized launcher", ours))
    ratios = [b / o for b, o in zip(basic, ours, strict=True)]
    print(summary(f"{name}: ratio basic/vectorized", ratios, "x"))
    if check:
        print(f"{name}: largest relative difference of a logged value {worst:.3g}")
    return ours


WARM = """
import json, sys, time
import pipeline

grid, basic, rounds = sys.argv[1:4], sys.argv[4:6], int(sys.argv[6])
pipeline.sweep(*grid, "tracking.experiment=warm-up")  # the imports, the store, first uses
seconds = {"basic": [], "vectorized": []}
for r in range(rounds):
    for side, extra in (("basic", basic), ("vectorized", [])):
        start = time.perf_counter()
        pipeline.sweep(*grid, *extra, f"tracking.experiment={side}-{r}")
        seconds[side].append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def warm(name: str, grid: list[str], rounds: int) -> None:
    """Both launchers in one warm interpreter, in turn (``WARM``)."""
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-c", WARM, *grid, *BASIC, str(rounds)],
            cwd=cwd, env=one_thread(), capture_output=True, text=True,
        )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the warm sweeps failed ({done.returncode}):\n{done.stderr[-3000:]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    print(summary(f"{name}, warm: basic launcher", seconds["basic"]))
    print(summary(f"{name}, warm: vectorized launcher", seconds["vectorized"]))
    ratios = [b / v for b, v in zip(seconds["basic"], seconds["vectorized"], strict=True)]
    print(summary(f"{name}, warm: ratio basic/vectorized", ratios, "x", "(target >= 8x)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-rounds", type=int, default=1)
    parser.add_argument("--more", action="store_true", help="also iris_mlp and synthetic")
    parser.add_argument("--warm", action="store_true", help="also 100 jobs in a warm interpreter")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, numbers mean nothing")
    args = parser.parse_args()
    small, big = (2, 2, 5), (2, 5, 5)  # lrs, seeds, epochs
    if not args.smoke:
        small, big = (10, 10, 1000), (10, 100, 1000)
    grid = [f"optim.lr={values(small[0])}", f"seed={seeds(small[1])}", f"epochs={small[2]}"]
    hundred = versus(f"{small[0] * small[1]} jobs", grid, args.rounds, check=True)
    if args.warm:
        warm(f"{small[0] * small[1]} jobs", grid, args.rounds)

    jobs = big[0] * big[1]
    sweep = [f"optim.lr={values(big[0])}", f"seed={seeds(big[1])}", f"epochs={big[2]}"]
    seconds, peaks, compare = [], [], []
    for _ in range(args.big_rounds):
        with tempfile.TemporaryDirectory() as cwd:
            elapsed, peak = run([*TRAIN, *sweep], cwd)
            seconds.append(elapsed)
            peaks.append(peak)
            compare.append(run([sys.executable, "-m", "pipeline.compare"], cwd)[0])
    print(summary(f"{jobs} jobs, vectorized", seconds, note="(target <= 60 s)"))
    print(summary(f"{jobs} jobs, peak RSS", peaks, " MiB", "(target <= 2048 MiB)"))
    marginal = [(t - min(hundred)) / (jobs - small[0] * small[1]) for t in seconds]
    print(summary("marginal job", marginal, note="(target <= 0.04 s)"))
    print(summary(f"compare on {jobs} runs, whole process", compare, note="(target <= 3 s)"))

    if args.more:
        mlp = ["experiment=iris_mlp", f"optim.lr={values(8, 0.001, 0.03)}", f"seed={seeds(8)}"]
        synthetic = ["data=synthetic", "data.n_samples=200000", "data.n_features=64",
                     "data.n_classes=10", f"optim.lr={values(4)}", f"seed={seeds(4)}",
                     "epochs=20"]  # fmt: skip
        if args.smoke:
            mlp, synthetic = [*mlp[:1], "optim.lr=0.01", "seed=1,2", "epochs=3"], [
                *synthetic[:4], "optim.lr=0.1", "seed=1,2", "epochs=2"]  # fmt: skip
        versus("iris_mlp", mlp, args.rounds)
        versus("synthetic", synthetic, args.rounds)


if __name__ == "__main__":
    main()
