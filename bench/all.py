"""Every benchmark, with the rounds the README states, and the README's performance table.

    python bench/all.py [--smoke] [--only overhead loop ...]

Runs each benchmark as a process of its own (``OMP_NUM_THREADS=1``, as the targets are stated;
``scale`` uses every core), one after another, prints each one's output, and at the end the
README's table in Markdown: medians with min-max ranges, each target met or not, the machine
(cores, versions, threads, load) and the date. With the ``bench`` extra installed, every
benchmark but ``vs_lightning`` runs with Lightning hidden (``no_lightning/``), as a user's
install without it (``import mlflow.pytorch`` would import Lightning: +2-4 s per process).
``--smoke`` runs each once with tiny settings (seconds each: the numbers mean nothing), so
that the benchmarks don't rot (``tests/test_bench.py``, which names its zygote's ``python`` in
``BENCH_PYTHON``: each process is then forked from one that imported the pipeline once).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
UNIT = r"\s?[A-Za-z/%]*"  # s, x, " MiB", " epochs/s"
LINE = re.compile(
    rf"^(?P<name>.+?)\s+min\s+(?P<min>[-\d.]+)(?P<unit>{UNIT})\s+median\s+(?P<median>[-\d.]+)"
    rf"{UNIT}\s+max\s+(?P<max>[-\d.]+)"
)


@dataclass(frozen=True)
class Stat:
    min: float
    median: float
    max: float
    unit: str

    def __str__(self) -> str:
        return f"{self.median:.3g}{self.unit}"

    def spread(self) -> str:
        """``**1.89x** (1.83-1.96x)``"""
        return f"**{self.median:.3g}{self.unit}** ({self.min:.3g}-{self.max:.3g}{self.unit})"


Stats = dict[str, Stat]


def parse(output: str) -> Stats:
    """Every ``summary`` line of a benchmark's output, by name."""
    found = {}
    for line in output.splitlines():
        if match := LINE.match(line.strip()):
            unit = " s" if match["unit"] == "s" else match["unit"]
            found[match["name"].strip()] = Stat(
                float(match["min"]), float(match["median"]), float(match["max"]), unit
            )
    return found


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


@dataclass(frozen=True)
class Benchmark:
    what: str
    args: list[str]  # the script, then its arguments as the README states them
    smoke: list[str]  # tiny settings
    row: Callable[[Stats, str], tuple[str, str]]  # (result, target) from its stats and output
    needs: str | None = None  # a module the benchmark needs (an extra)


def overhead_row(s: Stats, _: str) -> tuple[str, str]:
    ratio = s["ratio tracked/plain"]
    return (
        f"plain {s['plain reference script']}, tracked {s['tracked default run']} (medians): "
        f"{ratio.spread()}; the stack's floor (the script after importing Hydra and MLflow and "
        f"opening the store), timed in the same run: {s['ratio floor/plain'].spread()}",
        f"<= 1.6x: {verdict(ratio.median <= 1.6)}",
    )


def loop_row(s: Stats, _: str) -> tuple[str, str]:
    ratio = s["ratio tracked/plain"]
    return (
        f"plain {s['plain loop']}, tracked {s['tracked loop (buffered metrics)']}: "
        f"{ratio.spread()}; the final `log_batch` of 2002 values "
        f"{s['final flush (log_batch, 2 metrics)']}",
        f"<= 1.1x: {verdict(ratio.median <= 1.1)}",
    )


def sweep_row(s: Stats, _: str) -> tuple[str, str]:
    ratio = s["ratio sweep/single"]
    return (
        f"{s['one default run']} vs {s['2 lr x 3 seeds sweep']}: {ratio.spread()}",
        f"<= 2x: {verdict(ratio.median <= 2)}",
    )


def lightning_row(s: Stats, output: str) -> tuple[str, str]:
    ratio = s["ratio lightning/ours"]
    equal = re.search(r"largest \|ours - lightning\| (\S+) .*: (OK|MISMATCH)", output)
    costs = f"final costs: largest difference {equal[1]}" if equal else "final costs: unchecked"
    same = bool(equal) and equal[2] == "OK"
    return (
        f"ours {s['our sweep (6 runs)']}, Lightning {s['lightning sweep (6 runs)']}: ours "
        f"{ratio.spread()} faster; {costs}",
        f">= 6x faster, costs within 1e-5: {verdict(ratio.median >= 6 and same)}",
    )


def marginal_row(s: Stats, _: str) -> tuple[str, str]:
    jobs = next(name for name in s if name.startswith("sweep of") and name != "sweep of 1 job")
    cost = s["marginal cost of a job"]
    return (
        f"1 job {s['sweep of 1 job']}, {jobs.removeprefix('sweep of ')} {s[jobs]}: "
        f"{cost.spread()} per extra job",
        f"<= 0.40 s: {verdict(cost.median <= 0.40)}",
    )


def parallel_row(s: Stats, _: str) -> tuple[str, str]:
    joblib = next(name for name in s if name.startswith("joblib launcher"))
    ratio = s["ratio basic/joblib"]
    return (
        f"basic {s['basic launcher']}, joblib {s[joblib]}: joblib {ratio.spread()} faster",
        f">= 1.6x: {verdict(ratio.median >= 1.6)}",
    )


def scale_row(s: Stats, _: str) -> tuple[str, str]:
    full, mini = s["ratio full batch tracked/plain"], s["ratio batch_size=1024 tracked/plain"]
    return (
        f"full batch {s['tracked full batch']} vs {s['plain full batch']}: {full.spread()}; "
        f"`batch_size=1024` {s['tracked batch_size=1024']} vs {s['plain batch_size=1024']}: "
        f"{mini.spread()}; peak RSS {s['peak RSS']}",
        f">= 0.9x: {verdict(min(full.median, mini.median) >= 0.9)}",
    )


def load_row(s: Stats, _: str) -> tuple[str, str]:
    csv, parquet = s["CSV load / pandas"], s["Parquet load / pandas"]
    memory = [s[f"peak RSS {k} load / pandas"] for k in ("CSV", "Parquet")]
    digest = s["digest / data=csv load (table, splits)"]
    ok = max(csv.median, parquet.median, *(m.median for m in memory)) <= 2
    return (
        f"CSV {csv.spread()} `pandas.read_csv`, peak RSS {memory[0]}; Parquet "
        f"{parquet.spread()} `pandas.read_parquet`, peak RSS {memory[1]}; digest "
        f"{digest.median:.1%} of the `data=csv` load",
        f"<= 2x time and memory, digest <= 10%: {verdict(ok and digest.median <= 0.1)}",
    )


def compare_row(s: Stats, _: str) -> tuple[str, str]:
    whole = next(v for k, v in s.items() if k.endswith("whole process"))
    inside = next(v for k, v in s.items() if k.endswith("in process"))
    return (
        f"whole process {whole.spread()}, of which importing MLflow and opening the store "
        f"{s['import MLflow, open the store']}; `build_table` in process {inside.spread()}",
        f"< 3 s: {verdict(whole.median < 3)} (whole process), {verdict(inside.median < 3)} "
        "(in process)",
    )


def vectorized_row(s: Stats, output: str) -> tuple[str, str]:
    grid = next(k for k in s if k.endswith("ratio basic/vectorized") and "warm" not in k)
    name = grid.split(":")[0]
    warm = s.get(f"{name}, warm: ratio basic/vectorized")
    big = next(k for k in s if k.endswith("jobs, vectorized"))
    peak = next(k for k in s if k.endswith("jobs, peak RSS"))
    compare = next(k for k in s if k.startswith("compare on"))
    worst = re.search(rf"{name}: largest relative difference of a logged value (\S+)", output)
    difference = float(worst[1]) if worst else float("nan")
    marginal = s["marginal job"]
    ok = (s[grid].median >= 8, s[big].median <= 60, s[peak].median <= 2048,
          marginal.median <= 0.04, s[compare].median <= 3, difference == 0)  # fmt: skip
    in_python = (
        f" (in a warm interpreter, `pipeline.sweep` a second time: basic "
        f"{s[f'{name}, warm: basic launcher']}, vectorized "
        f"{s[f'{name}, warm: vectorized launcher']}: {warm.spread()}, >= 8x: "
        f"{verdict(warm.median >= 8)})"
        if warm
        else ""
    )
    return (
        f"{name}: basic {s[f'{name}: basic launcher']}, vectorized "
        f"{s[f'{name}: vectorized launcher']}: {s[grid].spread()} faster{in_python}, largest "
        f"difference of a logged value {difference:g}; {big.split(',')[0]}: {s[big].spread()}, "
        f"peak RSS {s[peak]}; marginal job {marginal.spread()}; compare {s[compare].spread()}",
        f">= 8x: {verdict(ok[0])}; <= 60 s: {verdict(ok[1])}; <= 2 GB: {verdict(ok[2])}; "
        f"<= 0.04 s: {verdict(ok[3])}; compare <= 3 s: {verdict(ok[4])}; equal: {verdict(ok[5])}",
    )


CORES = str(os.cpu_count())
BENCHMARKS = {
    "overhead": Benchmark(
        "default tracked run vs the plain reference script, whole process",
        ["overhead.py", "--rounds", "7"],
        ["overhead.py", "--rounds", "1", "--no-warm-up"],
        overhead_row,
    ),
    "loop": Benchmark(
        "tracked training loop vs the same plain loop, in process (1001 steps, toy set, "
        "checkpointing on)",
        ["loop.py", "--rounds", "15"],
        ["loop.py", "--rounds", "1", "--epochs", "20"],
        loop_row,
    ),
    "scale": Benchmark(
        f"scale: `data=synthetic` 1,000,000 x 64, 10 classes, tracked `fit` vs a plain loop "
        f"({CORES} threads)",
        ["scale.py", "--rounds", "5", "--threads", CORES],
        ["scale.py", "--rounds", "1", "--samples", "2000", "--threads", CORES],
        scale_row,
    ),
    "sweep": Benchmark(
        "2 lr x 3 seeds sweep vs one default run, whole process",
        ["sweep.py", "--rounds", "4"],
        ["sweep.py", "--rounds", "1", "--epochs", "5", "--no-warm-up"],
        sweep_row,
    ),
    "marginal": Benchmark(
        "marginal cost of a job: (T(12 jobs) - T(1 job)) / 11, basic launcher, default runs",
        ["marginal.py", "--rounds", "3"],
        ["marginal.py", "--rounds", "1", "--jobs", "2", "--epochs", "5", "--no-warm-up"],
        marginal_row,
    ),
    "parallel": Benchmark(
        "24-job sweep, joblib launcher with `n_jobs=2` vs the basic launcher",
        ["parallel.py", "--rounds", "3"],
        ["parallel.py", "--rounds", "1", "--jobs", "2", "--epochs", "5", "--no-warm-up"],
        parallel_row,
        needs="hydra_plugins.hydra_joblib_launcher",
    ),
    "vs_lightning": Benchmark(
        "the 6-job sweep as LightningModule + Trainer + `MLFlowLogger` (`bench/lightning_peer/`)",
        ["vs_lightning.py", "--rounds", "3"],
        ["vs_lightning.py", "--rounds", "1", "--epochs", "3", "--no-warm-up"],
        lightning_row,
        needs="lightning",
    ),
    "load": Benchmark(
        "loading a 1,000,000 x 20 table (string label) vs pandas, each in a fresh process",
        ["load.py", "--rounds", "5"],
        ["load.py", "--rounds", "1", "--rows", "500", "--no-warm-up"],
        load_row,
    ),
    "vectorized": Benchmark(
        "batched sweeps: the default (vectorized) launcher vs basic, whole process, fresh "
        "stores: 10 lr x 10 seeds, and 1000 jobs (10 lr x 100 seeds)",
        ["vectorized.py", "--rounds", "1", "--big-rounds", "1", "--warm"],  # basic: 70 s a round
        ["vectorized.py", "--rounds", "1", "--smoke", "--warm"],
        vectorized_row,
    ),
    "compare": Benchmark(
        "`python -m pipeline.compare` on a sweep of 1000 runs (sqlite)",
        ["compare.py", "--rounds", "5"],
        ["compare.py", "--rounds", "1", "--runs", "3"],
        compare_row,
    ),
}


def environment(benchmark: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if benchmark != "vs_lightning" and importlib.util.find_spec("pytorch_lightning"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "no_lightning"),
                                                          env.get("PYTHONPATH")]))  # fmt: skip
    return env


def machine() -> str:
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("torch", "mlflow", "hydra-core", "numpy")
    )
    lightning = "installed, hidden but in vs_lightning" if importlib.util.find_spec(
        "pytorch_lightning") else "not installed"  # fmt: skip
    return (
        f"{datetime.date.today().isoformat()} on "
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{versions}; `OMP_NUM_THREADS=1`; Lightning {lightning}; load average at the end "
        f"{os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="each once, tiny settings")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    args = parser.parse_args()
    rows, failed = [], []
    for name in args.only:
        bench = BENCHMARKS[name]
        argv = bench.smoke if args.smoke else bench.args
        command = f"`cd bench && python {' '.join(bench.args)}`"
        if bench.needs and importlib.util.find_spec(bench.needs) is None:
            rows.append((bench.what, command, f"not run: needs `{bench.needs}`", ""))
            continue
        print(f"== {name}: python {' '.join(argv)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(
            [os.environ.get("BENCH_PYTHON", sys.executable), *argv], cwd=HERE,
            env=environment(name), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        print(done.stdout, f"({time.perf_counter() - started:.0f} s)", flush=True)
        try:
            if done.returncode != 0:
                raise RuntimeError(f"exit status {done.returncode}")
            result, target = bench.row(parse(done.stdout), done.stdout)
        except (RuntimeError, KeyError, StopIteration) as err:
            failed.append(name)
            result, target = f"failed: {err}", ""
        rows.append((bench.what, command, result, target))
    print("\n| what | command | result (median, range) | target |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nMeasured {machine()}.")
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
