"""``python -m pipeline.rerun RUN_ID``: bit-for-bit reruns, difference reports, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from conftest import copy_store, cost_history, run_cli, runs_of
from pipeline import rerun as rerun_command
from pipeline.errors import PipelineError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, reference_run):
    """A default run (a copy of the session's reference run) and a two-job sweep, in the default
    store of a fresh directory."""
    cwd = tmp_path_factory.mktemp("rerun")
    uri = copy_store(reference_run[1], cwd)
    result = run_cli("-m", "seed=2,3", "epochs=100", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd, uri, {run.info.run_name: run for run in runs_of(uri)}


def rerun(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return run_cli(*args, cwd=cwd, env=env, module="pipeline.rerun")


def rerun_here(capfd, uri: str, *args: str) -> tuple[int, str]:
    """``python -m pipeline.rerun args --tracking-uri uri``, called in this process."""
    status = rerun_command.main([*args, "--tracking-uri", uri])
    return status, capfd.readouterr().out


def test_every_run_records_what_a_rerun_needs(trained):
    _, _, runs = trained
    tags = runs["default"].data.tags
    for key in (
        "code.version",
        "code.commit",
        "code.dirty",
        "env.python",
        "env.torch",
        "env.mlflow",
        "env.hydra",
        "env.platform",
        "env.device",
        "env.torch_threads",
        "data.digest",
    ):
        assert tags.get(key), key
    assert tags["hydra.overrides"] == ""
    assert tags["env.torch_threads"] == "1"
    assert len(tags["data.digest"]) == 64


def test_rerun_of_the_default_run_reproduces_all_1001_values(trained, monkeypatch, capfd):
    """From another directory, naming the store the way the rerun passes it on: an override.
    The command runs in this process (its training child is a process; ``python -m
    pipeline.rerun`` succeeding as a process: test_compat)."""
    cwd, uri, runs = trained
    original = runs["default"]
    monkeypatch.chdir(cwd.parent)
    capfd.readouterr()
    status = rerun_command.main([original.info.run_id, f"tracking.uri={uri}"])
    out, err = capfd.readouterr()
    assert status == 0, err
    assert "reproduced: 1001/1001 cost values identical" in out
    assert "differs:" not in out
    (new,) = [r for r in runs_of(uri) if r.data.tags.get("rerun_of") == original.info.run_id]
    assert new.info.experiment_id == original.info.experiment_id
    assert new.info.run_name == "default (rerun)"
    assert new.data.params == original.data.params
    assert cost_history(uri, new.info.run_id) == cost_history(uri, original.info.run_id)


def test_rerun_of_a_sweep_child_is_a_single_identical_run_that_reports_environment_changes(
    trained, capfd
):
    _, uri, runs = trained
    original = runs["seed=3"]
    MlflowClient(tracking_uri=uri).set_tag(original.info.run_id, "env.torch", "1.0.0")
    before = len(runs_of(uri))
    status, out = rerun_here(capfd, uri, original.info.run_id)
    assert status == 0
    assert "reproduced: 101/101 cost values identical" in out
    assert "differs: env.torch: 1.0.0 -> 2." in out
    assert len(runs_of(uri)) == before + 1


def test_rerun_with_an_override_reports_the_expected_difference(trained, capfd):
    _, uri, runs = trained
    status, out = rerun_here(capfd, uri, runs["seed=2"].info.run_id, "optim.lr=0.05")
    assert status == 0
    assert "NOT reproduced: 1/101 cost values identical; first difference at step 1" in out
    assert "a difference is expected" in out


def test_a_changed_history_is_not_reproduced(trained, capfd):
    """A run whose recorded costs differ at one step: exit 1, the step and the difference."""
    cwd, uri, runs = trained
    source = runs["seed=3"]
    client = MlflowClient(tracking_uri=uri)
    tampered = client.create_run(
        source.info.experiment_id, run_name="seed=3", tags=source.data.tags
    )
    config = Path(client.download_artifacts(source.info.run_id, "config.yaml", str(cwd)))
    client.log_artifact(tampered.info.run_id, str(config))
    costs = cost_history(uri, source.info.run_id)
    costs[7] += 0.25
    history = [Metric("cost", value, 0, step) for step, value in enumerate(costs)]
    client.log_batch(tampered.info.run_id, metrics=history)
    client.set_terminated(tampered.info.run_id)
    status, out = rerun_here(capfd, uri, tampered.info.run_id)
    assert status == 1
    assert "NOT reproduced: 100/101 cost values identical; first difference at step 7" in out
    assert "largest absolute difference 0.25" in out


def bad_rerun(cwd: Path, uri: str, *args: str) -> str:
    """The one-line error of ``rerun args`` (in this process); nothing is added to the store."""
    before = len(runs_of(uri))
    with pytest.raises(PipelineError) as raised:
        rerun_command.main(list(args))
    assert "\n" not in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert len(runs_of(uri)) == before
    return str(raised.value)


def test_unknown_run_id_exits_2_with_one_line(trained):
    cwd, uri, _ = trained
    before = len(runs_of(uri))
    result = rerun("0123abcd", cwd=cwd)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("No run '0123abcd' in sqlite:///")
    assert len(runs_of(uri)) == before


def test_no_run_id_is_a_usage_error(trained):
    cwd, _, _ = trained
    result = rerun(cwd=cwd)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "the following arguments are required: RUN_ID" in line
    assert "--help" in line


def test_a_run_not_made_by_the_pipeline(trained):
    cwd, uri, runs = trained
    client = MlflowClient(tracking_uri=uri)
    foreign = client.create_run(runs["default"].info.experiment_id)
    client.set_terminated(foreign.info.run_id)
    message = bad_rerun(cwd, uri, foreign.info.run_id, f"tracking.uri={uri}")
    assert "has no recorded config.yaml" in message


def test_a_deleted_run(trained):
    cwd, uri, runs = trained
    client = MlflowClient(tracking_uri=uri)
    doomed = client.create_run(runs["default"].info.experiment_id)
    client.delete_run(doomed.info.run_id)
    message = bad_rerun(cwd, uri, doomed.info.run_id, f"tracking.uri={uri}")
    assert f"mlflow runs restore --run-id {doomed.info.run_id}" in message


@pytest.mark.parametrize("store", ["http://127.0.0.1:9", "sqlite:////nonexistent/mlflow.db"])
def test_an_unreachable_or_missing_store(trained, store):
    cwd, uri, runs = trained
    message = bad_rerun(cwd, uri, runs["default"].info.run_id, f"tracking.uri={store}")
    assert store in message
    assert "Fix:" in message
    assert not Path("/nonexistent").exists()
