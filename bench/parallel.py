"""A sweep with the joblib launcher (2 workers) against the basic launcher, whole processes.

    python bench/parallel.py [--rounds 3] [--jobs 24] [--n-jobs 2] [--epochs 1000]

Times ``python -m pipeline.train -m seed=1,...,N`` with the basic launcher (one job after
another in this process) and with ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (jobs in 2
worker processes, reused from job to job), interleaved, in a fresh temp dir whose store a
warm-up run created; every sweep logs to an experiment of its own, so no job is skipped. Prints
min/median/max seconds of each and the ratio basic/joblib (how many times faster joblib is).
Needs the ``parallel`` extra: ``pip install -e ".[parallel]"``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile

from common import ratio, summary, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--no-warm-up", action="store_true", help="smoke runs: no warm-up")
    args = parser.parse_args()
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        sys.exit('needs the joblib launcher: pip install -e ".[parallel]"')
    seeds = ",".join(str(seed) for seed in range(1, args.jobs + 1))
    train = [sys.executable, "-m", "pipeline.train"]
    command = [*train, "-m", f"seed={seeds}", f"epochs={args.epochs}", "hydra/sweeper=basic"]
    joblib = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"]
    basic_s, joblib_s = [], []
    with tempfile.TemporaryDirectory() as cwd:
        if not args.no_warm_up:
            timed([*train, "epochs=1"], cwd)  # creates the store
        for r in range(args.rounds):
            basic = [*command, f"tracking.experiment=basic-{r}", "hydra/launcher=basic"]
            basic_s.append(timed(basic, cwd))
            joblib_s.append(timed([*command, f"tracking.experiment=joblib-{r}", *joblib], cwd))
    print(f"{args.jobs} jobs of {args.epochs} epochs, {args.rounds} rounds, interleaved")
    print(summary("basic launcher", basic_s))
    print(summary(f"joblib launcher, n_jobs={args.n_jobs}", joblib_s))
    print(summary("ratio basic/joblib", ratio(basic_s, joblib_s), "x", "(target >= 1.6x)"))


if __name__ == "__main__":
    main()
