"""What ``tracking.system_metrics=true`` costs a default run (the reference experiment).

    python bench/system_metrics.py [--rounds 5] [--no-warm-up]

Times, in turn, in a fresh temp dir (the store made by a warm-up run first):

- off: ``python -m pipeline.train``;
- on: ``python -m pipeline.train tracking.system_metrics=true`` (MLflow's monitor, a sample
  every 10 s, and the last samples logged when training ends).

Prints min/median/max seconds of each and the per-round difference, then what the monitor
itself costs in one process: importing it, starting it, and stopping it (which writes its
last sample).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import interleaved, summary

PROBE = """
import tempfile, time
t0 = time.perf_counter()
import mlflow
from mlflow.tracking import MlflowClient
t1 = time.perf_counter()
from pipeline.tracking.run.system import monitor
t2 = time.perf_counter()
uri = "sqlite:///" + tempfile.mkdtemp() + "/mlflow.db"
client = MlflowClient(uri)
run_id = client.create_run(client.create_experiment("probe")).info.run_id
t3 = time.perf_counter()
watcher = monitor(client, [run_id], 10, False)
t4 = time.perf_counter()
watcher.finish()
t5 = time.perf_counter()
print(f"{t2 - t1:.4f} {t4 - t3:.4f} {t5 - t4:.4f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-warm-up", action="store_true")
    args = parser.parse_args()
    train = [sys.executable, "-m", "pipeline.train"]
    off, on = interleaved(
        [train, [*train, "tracking.system_metrics=true"]],
        args.rounds,
        warm_up=not args.no_warm_up,
    )
    print(summary("default run, system metrics off", off))
    print(summary("default run, system metrics on", on))
    print(summary("on - off (per round)", [b - a for a, b in zip(off, on, strict=True)]))
    parts: list[list[float]] = [[], [], []]
    for _ in range(args.rounds):
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for part, value in zip(parts, out.stdout.split(), strict=True):
            part.append(float(value))
    for name, values in zip(("import the monitor", "start it", "stop it"), parts, strict=True):
        print(summary(f"monitor: {name}", values))


if __name__ == "__main__":
    main()
