"""Loading a user's table at scale: the pipeline's CSV and Parquet loads against pandas.

    python bench/load.py [--rows 1000000] [--features 20] [--rounds 5]   (--rows 2000: a smoke run)

Writes a rows x features table of numbers (5 decimals, as a CSV of measurements has) with a
string label column (5 classes) as CSV and as Parquet in a temp dir. Then, interleaved, each
load in a fresh process of its own (so that each has its own peak RSS):

- ``pandas.read_csv`` against the pipeline's CSV load (``read_labelled_csv``: parsing, every
  check, label encoding, float32 features);
- ``pandas.read_parquet`` against the pipeline's Parquet load (``read_labelled_parquet``);
- the data digest that reruns compare (``Dataset.digest``) against the ``data=csv`` load it
  follows (the table, then stratified train/val/test splits, as ``conf/data/csv.yaml`` sets).

Prints min/median/max seconds and peak RSS of each (and how much the RSS grew during the load,
over what the imports took), and of the ratios, with the targets.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from common import ratio, summary

LOADS = {
    "pandas_csv": "pandas.read_csv",
    "pipeline_csv": "pipeline CSV load",
    "pandas_parquet": "pandas.read_parquet",
    "pipeline_parquet": "pipeline Parquet load",
    "dataset_csv": "data=csv load (table, splits)",
}

KINDS = {"csv": "CSV", "parquet": "Parquet"}


def write_table(directory: str, rows: int, features: int) -> None:
    """table.csv and table.parquet in ``directory`` (in a process of its own: see ``main``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    classes = rng.integers(0, 5, rows)
    frame = pd.DataFrame(
        rng.normal(size=(rows, features)) + classes[:, None],
        columns=[f"x{i}" for i in range(features)],
    )
    frame["label"] = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])[classes]
    frame.to_csv(Path(directory, "table.csv"), index=False, float_format="%.5f")
    frame.round(5).to_parquet(Path(directory, "table.parquet"), index=False)


def load(what: str, path: str) -> dict[str, float]:
    """In a fresh process: import what ``what`` needs, then time it; its seconds, the RSS after
    the imports and the peak RSS (MiB)."""
    if what.startswith("pandas_"):
        import pandas as pd

        call = partial(pd.read_csv if what == "pandas_csv" else pd.read_parquet, path)
    elif what == "dataset_csv":
        import sklearn.model_selection  # noqa: F401  (the first split imports it: not timed)

        from pipeline.core.data import csv

        call = partial(csv, path, "label", None, ",", True, val_fraction=0.2, test_fraction=0.2,
                       split_seed=0, standardize=True)  # fmt: skip
    else:
        from pipeline.core.tables import read_labelled_csv, read_labelled_parquet

        read = read_labelled_csv if what == "pipeline_csv" else read_labelled_parquet
        call = partial(read, path, "label", None)
    result = {"imports_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    start = time.perf_counter()
    loaded = call()
    result["seconds"] = time.perf_counter() - start
    if what == "dataset_csv":
        start = time.perf_counter()
        loaded.digest()
        result["digest"] = time.perf_counter() - start
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def child(*args: str) -> str:
    """The output of this script run with ``args`` in a fresh process.

    On Linux a child starts with its parent's peak RSS (it survives fork and exec), so this
    process stays small: it imports neither pandas nor the pipeline, and the table is written
    by a child too.
    """
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def measure(what: str, path: Path) -> dict[str, float]:
    return json.loads(child("--load", what, str(path)).splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-warm-up", action="store_true", help="smoke runs: no warm-up")
    parser.add_argument("--load", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--write", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(*args.load)))
        return
    if args.write:
        write_table(args.write, args.rows, args.features)
        return
    with tempfile.TemporaryDirectory() as tmp:
        child("--write", tmp, "--rows", str(args.rows), "--features", str(args.features))
        csv, parquet = Path(tmp, "table.csv"), Path(tmp, "table.parquet")
        sizes = [f"{path.stat().st_size / 2**20:.0f} MiB" for path in (csv, parquet)]
        print(
            f"table: {args.rows:,} rows x {args.features} features + a string label (5 classes); "
            f"CSV {sizes[0]}, Parquet {sizes[1]}; {args.rounds} rounds, each load in a fresh "
            "process"
        )
        files = {what: parquet if "parquet" in what else csv for what in LOADS}
        for what in [] if args.no_warm_up else LOADS:  # the file cache, the .pyc files
            measure(what, files[what])
        runs: dict[str, list[dict[str, float]]] = {what: [] for what in LOADS}
        for _ in range(args.rounds):
            for what in LOADS:
                runs[what].append(measure(what, files[what]))
    seconds = {what: [run["seconds"] for run in runs[what]] for what in LOADS}
    peak = {what: [run["peak_mib"] for run in runs[what]] for what in LOADS}
    digest = [run["digest"] for run in runs["dataset_csv"]]
    for what, name in LOADS.items():
        print(summary(name, seconds[what]))
    print(summary("digest", digest))
    for kind, name in KINDS.items():
        time_ratio = ratio(seconds[f"pipeline_{kind}"], seconds[f"pandas_{kind}"])
        print(summary(f"{name} load / pandas", time_ratio, "x", "(target <= 2x)"))
    for what in ("dataset_csv", "pipeline_csv"):
        digest_ratio = ratio(digest, seconds[what])
        print(summary(f"digest / {LOADS[what]}", digest_ratio, "x", "(target <= 0.1x)"))
    for what, name in LOADS.items():
        print(summary(f"peak RSS {name}", peak[what], " MiB"))
    for what, name in LOADS.items():
        growth = [run["peak_mib"] - run["imports_mib"] for run in runs[what]]
        print(summary(f"RSS growth {name}", growth, " MiB"))
    for kind, name in KINDS.items():
        memory_ratio = ratio(peak[f"pipeline_{kind}"], peak[f"pandas_{kind}"])
        print(summary(f"peak RSS {name} load / pandas", memory_ratio, "x", "(target <= 2x)"))


if __name__ == "__main__":
    main()
