"""Sweeps on other launchers and sweepers: joblib, submitit (local), Optuna."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import cost_history, run_cli, sqlite_uri, sweep_runs

SWEEP = ["-m", "optim.lr=0.01,0.1", "seed=1,2", "epochs=50"]


def histories(uri: str, runs: list) -> dict[str, list[float]]:
    return {run.info.run_name: cost_history(uri, run.info.run_id) for run in runs}


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """The same sweep on Hydra's basic launcher: the numbers the others must equal."""
    cwd = tmp_path_factory.mktemp("basic")
    result = run_cli(*SWEEP, cwd=cwd)
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(cwd / "mlruns")
    return histories(uri, sweep_runs(uri)[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "jobs"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], SWEEP),
        (["hydra/launcher=submitit_local"], [*SWEEP[:2], "seed=1", SWEEP[3]]),  # a job a process
    ],
    ids=["joblib", "submitit_local"],
)
def test_launcher_gives_nested_runs_equal_to_the_basic_launcher(tmp_path, basic, launcher, jobs):
    result = run_cli(*jobs, *launcher, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in runs] == ["FINISHED"] * (4 if jobs == SWEEP else 2)
    found = histories(uri, runs)
    basic_name = lambda name: name if "seed" in name else f"{name},seed=1"  # noqa: E731
    assert found == {name: basic[basic_name(name)] for name in found}


@pytest.mark.slow
def test_eight_parallel_jobs_on_a_fresh_store_lose_nothing(tmp_path):
    result = run_cli(
        "-m",
        "seed=1,2,3,4,5,6,7,8",
        "epochs=20",
        "tracking.experiment=parallel",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri, "parallel")
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.params["seed"] for r in runs) == [str(s) for s in range(1, 9)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(cost_history(uri, r.info.run_id)) == 21 for r in runs)
    from mlflow.tracking import MlflowClient

    names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    assert sorted(names) == ["Default", "parallel"]  # nothing landed in another experiment


@pytest.mark.slow
def test_optuna_trials_nest_under_the_study_and_the_best_params_reach_it(tmp_path):
    result = run_cli(
        "-m", "hydra/sweeper=lr_search", "hydra.sweeper.n_trials=4", "epochs=30", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(uri)
    assert parent.info.run_name == "sweep epochs=30 (OptunaSweeper)"
    assert len(runs) == 4
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
