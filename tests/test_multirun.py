"""``-m`` sweeps: one FINISHED run per job, each equal to the same config run alone."""

from __future__ import annotations

import pytest

from conftest import cost_history, run_cli, runs_of, sqlite_uri


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_cli("-m", "optim.lr=0.01,0.1", "seed=1,2,3", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd, sqlite_uri(cwd / "mlruns")


def test_six_finished_runs_with_readable_names(sweep):
    _, uri = sweep
    runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FINISHED"] * 6
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"optim.lr={lr},seed={seed}" for lr in ("0.01", "0.1") for seed in (1, 2, 3)
    )
    assert sorted(r.data.tags["hydra.job_num"] for r in runs) == [str(n) for n in range(6)]
    by_name = {r.info.run_name: r for r in runs}
    run = by_name["optim.lr=0.01,seed=2"]
    assert run.data.params["optim.lr"] == "0.01" and run.data.params["seed"] == "2"
    assert run.data.tags["hydra.overrides"] == "optim.lr=0.01 seed=2"


def test_each_job_has_its_own_metrics_and_model(sweep):
    _, uri = sweep
    finals = set()
    for run in runs_of(uri):
        assert len(cost_history(uri, run.info.run_id)) == 1001
        assert run.info.artifact_uri
        finals.add(run.data.metrics["final_cost"])
    assert len(finals) == 6


def test_a_sweep_job_equals_the_same_config_run_alone(sweep, tmp_path):
    _, sweep_uri = sweep
    (swept,) = [r for r in runs_of(sweep_uri) if r.info.run_name == "optim.lr=0.01,seed=2"]
    alone = run_cli("optim.lr=0.01", "seed=2", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    alone_uri = sqlite_uri(tmp_path / "mlruns")
    (single,) = runs_of(alone_uri)
    assert cost_history(alone_uri, single.info.run_id) == cost_history(sweep_uri, swept.info.run_id)
    assert cost_history(alone_uri, single.info.run_id, "accuracy") == cost_history(
        sweep_uri, swept.info.run_id, "accuracy"
    )


def test_a_failing_job_does_not_stop_the_others(tmp_path):
    result = run_cli("-m", "optim.lr=-1,0.1", "epochs=5", cwd=tmp_path)
    assert result.returncode == 1
    assert "Config error: optim.lr must be > 0, got -1.0" in result.stderr
    (run,) = runs_of(sqlite_uri(tmp_path / "mlruns"))
    assert run.info.run_name == "epochs=5,optim.lr=0.1"
    assert run.info.status == "FINISHED"
