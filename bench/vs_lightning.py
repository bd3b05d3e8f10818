"""Our sweep against the same sweep written the Lightning way, whole processes, same results.

    python bench/vs_lightning.py [--rounds 3] [--epochs 1000] [--lightning-arg ...]

Runs ``python -m pipeline.train -m optim.lr=0.01,0.1 seed=1,2,3`` and
``python bench/lightning_peer/app.py -m optim.lr=0.01,0.1 seed=1,2,3`` (6 runs each, every
step's cost and accuracy logged to a sqlite MLflow store) as separate processes, interleaved,
in a fresh temp dir (both stores are created by a one-epoch warm-up run first), and prints
min/median/max seconds of each and the ratio lightning/ours. Then it checks, for every
(lr, seed) of every round, that the ``cost`` logged at the last step (epoch 1000) is the same in
both stores within 1e-5, and prints the largest difference (exit status 1 if over).
Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import summary, timed

APP = Path(__file__).with_name("lightning_peer") / "app.py"
SWEEP = ["optim.lr=0.01,0.1", "seed=1,2,3"]
EPOCHS = 1000
TOLERANCE = 1e-5


def final_costs(uri: str, lr_key: str, epochs: int) -> dict[tuple[float, int], list[float]]:
    """(lr, seed) -> the cost logged at step ``epochs``, for every run of that many epochs."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    costs: dict[tuple[float, int], list[float]] = {}
    for run in client.search_runs(experiments, max_results=1000):
        params = run.data.params
        if params.get("epochs") != str(epochs) or "cost" not in run.data.metrics:
            continue  # the warm-up run, a sweep's parent run
        history = client.get_metric_history(run.info.run_id, "cost")
        (last,) = [m.value for m in history if m.step == epochs]
        costs.setdefault((float(params[lr_key]), int(params["seed"])), []).append(last)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--no-warm-up", action="store_true", help="smoke runs: no warm-up")
    parser.add_argument(
        "--lightning-arg",
        action="append",
        default=[],
        help="an extra Hydra override for the Lightning app (repeatable)",
    )
    args = parser.parse_args()
    ours_cmd = [sys.executable, "-m", "pipeline.train"]
    lightning_cmd = [sys.executable, str(APP)]
    extra = args.lightning_arg
    epochs = f"epochs={args.epochs}"
    with tempfile.TemporaryDirectory() as cwd:
        if not args.no_warm_up:  # creates the stores, warms the file cache
            timed([*ours_cmd, "epochs=1"], cwd)
            timed([*lightning_cmd, "epochs=1", *extra], cwd)
        ours, lightning = [], []
        for _ in range(args.rounds):
            # sweep.resume=false: every round trains its 6 jobs (not skipped as done before)
            ours.append(timed([*ours_cmd, "-m", *SWEEP, epochs, "sweep.resume=false"], cwd))
            lightning.append(timed([*lightning_cmd, "-m", *SWEEP, epochs, *extra], cwd))
        mine = final_costs(f"sqlite:///{cwd}/mlruns/mlflow.db", "optim.lr", args.epochs)
        theirs = final_costs(f"sqlite:///{cwd}/mlruns-lightning/mlflow.db", "lr", args.epochs)
    ratios = [t / o for t, o in zip(lightning, ours, strict=True)]
    print(summary("our sweep (6 runs)", ours))
    print(summary("lightning sweep (6 runs)", lightning))
    print(summary("ratio lightning/ours", ratios, "x", "(target >= 2x)"))
    rounds = "  ".join(f"{o:.1f}/{t:.1f}" for o, t in zip(ours, lightning, strict=True))
    print(f"each round, ours/lightning s: {rounds}")
    expected = {(lr, seed) for lr in (0.01, 0.1) for seed in (1, 2, 3)}
    counts = {key: (len(mine.get(key, [])), len(theirs.get(key, []))) for key in expected}
    if (
        set(mine) != expected
        or set(theirs) != expected
        or set(counts.values()) != {(args.rounds, args.rounds)}
    ):
        sys.exit(f"final cost: runs missing; (ours, lightning) runs per (lr, seed): {counts}")
    diff = max(abs(a - b) for key in expected for a in mine[key] for b in theirs[key])
    verdict = "OK" if diff <= TOLERANCE else "MISMATCH"
    print(
        f"final cost at epoch {args.epochs}, 6 (lr, seed) x {args.rounds} rounds: largest "
        f"|ours - lightning| {diff:.3g} (tolerance {TOLERANCE:g}): {verdict}"
    )
    for lr, seed in sorted(expected):
        print(
            f"  lr {lr:<5g} seed {seed}: ours {mine[lr, seed][0]:.9f}  "
            f"lightning {theirs[lr, seed][0]:.9f}"
        )
    if verdict != "OK":
        sys.exit(1)


if __name__ == "__main__":
    main()
