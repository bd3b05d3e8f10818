"""Sweeps on other launchers and sweepers: joblib, submitit (local), Optuna; each job equal to
the same config trained alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import cost_history, forked_workers, run_cli, sqlite_uri, sweep_runs, train_into
from helpers.alone import EPOCHS, histories_alone

SWEEP = ["-m", "optim.lr=0.01,0.1", "seed=1,2", EPOCHS]


def histories(uri: str, runs: list) -> dict[str, list[float]]:
    return {run.info.run_name: cost_history(uri, run.info.run_id) for run in runs}


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """Each job of the sweep trained alone, in process: the numbers every launcher must give
    (test_multirun shows that a basic-launcher job equals its run alone). Trained once per
    session, shared with test_slurm.py."""
    return histories_alone(tmp_path_factory)


@pytest.mark.slow
def test_four_joblib_workers_racing_on_a_fresh_store_equal_their_runs_alone(tmp_path, alone):
    """All four jobs start at once in four worker processes, on a directory with no store yet:
    every run FINISHED, nested, whole, in the sweep's experiment, equal to its run alone."""
    result = run_cli(
        *SWEEP,
        "tracking.experiment=parallel",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        cwd=tmp_path,
        env=forked_workers(tmp_path / "bin"),
    )
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri, "parallel")
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert histories(uri, runs) == alone  # 51 values each, identical
    from mlflow.tracking import MlflowClient

    names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    assert sorted(names) == ["Default", "parallel"]  # nothing landed in another experiment


@pytest.mark.slow
def test_submitit_gives_nested_runs_equal_to_their_runs_alone(tmp_path, alone):
    """A job a process: two jobs of the sweep, each in a submitit process of its own."""
    result = run_cli(*SWEEP[:2], "seed=1", SWEEP[3], "hydra/launcher=submitit_local", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * 2
    found = histories(uri, runs)
    assert found == {name: alone[f"{name},seed=1"] for name in found}


@pytest.mark.slow
def test_optuna_trials_nest_under_the_study_and_the_best_params_reach_it(tmp_path):
    """Each batch of ``n_jobs`` trials trains as one group, every trial as it would alone."""
    result = run_cli(
        "-m", "hydra/sweeper=lr_search", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
        "epochs=30", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri)
    assert parent.info.run_name == "sweep epochs=30 (OptunaSweeper)"
    assert len(runs) == 4
    assert [r.data.tags["batch.jobs"] for r in runs] == ["2"] * 4  # two batches of two trials
    trial = runs[0]
    lr = trial.data.params["optim.lr"]
    _, alone = train_into(sqlite_uri(tmp_path / "alone"), f"optim.lr={lr}", "epochs=30")
    assert cost_history(uri, trial.info.run_id) == cost_history(
        sqlite_uri(tmp_path / "alone"), alone.info.run_id
    )
    assert all(r.info.status == "FINISHED" for r in runs)
    lrs = [float(r.data.params["optim.lr"]) for r in runs]
    assert all(1e-3 <= lr <= 1 for lr in lrs)
    assert len(set(lrs)) == 4
    (results_file,) = Path(tmp_path, "multirun").glob("*/*/optimization_results.yaml")
    found = yaml.safe_load(results_file.read_text())
    best = min(runs, key=lambda r: r.data.metrics["objective"])
    assert found["best_value"] == pytest.approx(best.data.metrics["objective"])
    assert float(parent.data.params["best.optim.lr"]) == pytest.approx(
        found["best_params"]["optim.lr"]
    )
    assert parent.data.tags["best_run_id"] == best.info.run_id
