"""From a sweep to a served model: ``compare``, ``diff``, ``register``, predict by alias and
``mlflow models serve``, on one real sweep (2 lr x 2 seeds on iris; the lr=1e38 jobs diverge and
end FAILED); and ``sweep.direction=maximize`` picking the best run, ``compare``'s ranking and
``register``'s choice, on a second one."""

from __future__ import annotations

import csv
import io
import json
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli, sqlite_uri, sweep_runs
from helpers.servers import free_port, listening, live_members, start_server, stop_group
from pipeline import compare, diff, register
from pipeline import predict as predict_command
from pipeline.errors import PipelineError
from pipeline.predict import predict

SWEEP = ("-m", "data=iris", "epochs=40", "optim.lr=0.1,1e38", "seed=1,2")
PARENT_NAME = "sweep data=iris epochs=40 optim.lr=0.1,1e38 seed=1,2"
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]
CHAMPION = "models:/softmax-regression@champion"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    """The sweep, in the default store of a fresh directory: (cwd, uri, parent, runs by name)."""
    cwd = tmp_path_factory.mktemp("best")
    result = run_cli(*SWEEP, cwd=cwd)
    assert result.returncode == 1, result.stderr  # two jobs diverged
    assert "View run" not in result.stdout + result.stderr
    uri = sqlite_uri(cwd / "mlruns")
    parent, runs = sweep_runs(uri)
    assert parent.info.run_name == PARENT_NAME
    return cwd, uri, parent, {run.info.run_name: run for run in runs}


def ranked(runs: dict) -> list:
    """The finished runs, best (lowest objective) first."""
    finished = [r for r in runs.values() if r.info.status == "FINISHED"]
    return sorted(finished, key=lambda r: r.data.metrics["objective"])


def call(capsys, command, *args: str) -> str:
    """``command.main(args)`` in this process: its stdout (it must return 0)."""
    assert command.main(list(args)) == 0
    return capsys.readouterr().out


def one_line_error(command, *args: str) -> str:
    """The one-line error ``command.main(args)`` raises (exit status 2 from the command line)."""
    with pytest.raises(PipelineError) as raised:
        command.main(list(args))
    message = str(raised.value)
    assert "\n" not in message
    assert "Fix:" in message
    return message


# compare


def test_compare_the_latest_sweep_from_the_command_line(sweep):
    cwd, _, parent, runs = sweep
    result = run_cli(cwd=cwd, module="pipeline.compare", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    title, header, *rows = result.stdout.splitlines()
    assert title == f"4 runs of {PARENT_NAME!r} ({parent.info.run_id}), by objective (minimize)"
    assert header.split() == ["run", "status", "optim.lr", "seed", "objective", "final_cost",
                              "final_accuracy", "test_cost", "test_accuracy", "run_id"]  # fmt: skip
    best, second = ranked(runs)
    assert [row.split()[0] for row in rows[:2]] == [best.info.run_name, second.info.run_name]
    assert rows[0].split()[-1] == best.info.run_id
    assert rows[0].split()[4] == f"{best.data.metrics['objective']:.6g}"
    for row in rows[2:]:  # the diverged runs: last, with their status and no final metrics
        assert row.split()[1:3] == ["FAILED", "1e+38"]
        assert row.split()[4:9] == ["-"] * 5


def test_compare_formats_for_reports_and_scripts(sweep, capsys):
    _, uri, parent, runs = sweep
    target = [parent.info.run_id, "--tracking-uri", uri]
    rows = json.loads(call(capsys, compare, *target, "--format", "json"))
    assert [r["run_id"] for r in rows[:2]] == [r.info.run_id for r in ranked(runs)]
    assert rows[0]["objective"] == ranked(runs)[0].data.metrics["objective"]
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED", "FAILED", "FAILED"]
    assert rows[3]["final_cost"] is None
    assert set(rows[0]) == {"run", "status", "optim.lr", "seed", "objective", "final_cost",
                            "final_accuracy", "test_cost", "test_accuracy", "run_id"}  # fmt: skip
    table = list(csv.DictReader(io.StringIO(call(capsys, compare, *target, "--format", "csv"))))
    assert [r["run_id"] for r in table] == [r["run_id"] for r in rows]
    assert float(table[0]["objective"]) == rows[0]["objective"]
    markdown = call(capsys, compare, *target, "--format", "md").splitlines()
    assert markdown[0].startswith("| run | status | optim.lr | seed | objective |")
    assert markdown[1].startswith("| --- | --- | --- | --- | ---: |")
    assert len(markdown) == 6


def test_compare_every_param_sorted_by_another_metric(sweep, capsys):
    _, uri, parent, _ = sweep
    out = call(capsys, compare, parent.info.run_id, "--all", "--sort", "final_accuracy",
               "--desc", "--format", "json", "--tracking-uri", uri)  # fmt: skip
    rows = json.loads(out)
    assert {"data", "epochs", "optim._target_", "data.standardize"} <= set(rows[0])
    accuracies = [r["final_accuracy"] for r in rows[:2]]
    assert accuracies == sorted(accuracies, reverse=True)


def test_compare_an_experiment_fits_a_narrow_terminal(sweep, capsys, monkeypatch):
    _, uri, _, _ = sweep
    monkeypatch.setenv("COLUMNS", "60")
    lines = call(capsys, compare, "softmax-regression", "--tracking-uri", uri).splitlines()
    assert lines[0].startswith("4 runs of experiment 'softmax-regression', by objective")
    assert len(lines) == 6  # the title, the header, the 4 runs (the sweep's parent is not one)
    assert all(len(line) <= 60 for line in lines)
    assert "…" in lines[1]  # shortened, not wrapped


def test_compare_bad_targets_are_one_line(sweep):
    cwd, uri, _, runs = sweep
    child = runs["optim.lr=0.1,seed=1"].info.run_id
    store = ["--tracking-uri", uri]
    assert "No experiment 'nope' and no run" in one_line_error(compare, "nope", *store)
    assert "is not a sweep's parent run" in one_line_error(compare, child, *store)
    message = one_line_error(compare, "softmax-regression", "--sort", "x", *store)
    assert message.startswith("No run in experiment 'softmax-regression' has a metric 'x'")
    empty = cwd / "empty"
    message = one_line_error(compare, "--tracking-uri", sqlite_uri(empty))
    assert message.startswith("No tracking store at sqlite:///")
    assert not empty.exists()


# diff


def test_diff_of_two_seeds(sweep, capsys):
    _, uri, _, runs = sweep
    a, b = runs["optim.lr=0.1,seed=1"], runs["optim.lr=0.1,seed=2"]
    lines = call(capsys, diff, a.info.run_id, b.info.run_id, "--tracking-uri", uri).splitlines()
    assert lines[0] == f"A: {a.info.run_id} 'optim.lr=0.1,seed=1' (FINISHED)"
    assert lines[2:4] == ["params: 1 differ", "  seed: 1 -> 2"]
    assert lines[4] == "metrics: 11 in both"
    (objective,) = [line.split() for line in lines if line.split()[0] == "objective"]
    was, now = a.data.metrics["objective"], b.data.metrics["objective"]
    assert objective[1:] == [f"{was:.6g}", f"{now:.6g}", f"{now - was:+.6g}"]
    assert "facts: all equal" in lines
    assert lines[-1].startswith(
        "cost history: 0/41 cost values identical; first difference at step 0 ("
    )
    assert "largest absolute difference" in lines[-1]


def test_diff_of_a_finished_and_a_diverged_run_with_a_changed_fact(sweep, capsys):
    _, uri, _, runs = sweep
    a, b = runs["optim.lr=0.1,seed=1"], runs["optim.lr=1e+38,seed=1"]
    MlflowClient(tracking_uri=uri).set_tag(b.info.run_id, "env.torch", "1.0.0")
    lines = call(capsys, diff, a.info.run_id, b.info.run_id, "--tracking-uri", uri).splitlines()
    assert lines[1].endswith("(FAILED)")
    assert "  optim.lr: 0.1 -> 1e+38" in lines
    (only_in_a,) = [line for line in lines if line.startswith("  only in A: ")]
    assert only_in_a.split(": ")[1].split(", ") == [
        "final_accuracy", "final_cost", "objective", "test_accuracy", "test_cost", "test_macro_f1",
        "val_macro_f1",
    ]  # fmt: skip
    assert "facts: 1 differ" in lines
    assert f"  env.torch: {a.data.tags['env.torch']} -> 1.0.0" in lines
    assert "first difference at step 1 (" in lines[-1]


def test_diff_of_a_run_with_itself(sweep, capsys):
    _, uri, _, runs = sweep
    run_id = runs["optim.lr=0.1,seed=2"].info.run_id
    lines = call(capsys, diff, run_id, run_id, "--tracking-uri", uri).splitlines()
    assert "params: all equal" in lines
    assert lines[-1] == "cost history: 41/41 cost values identical"


def test_diff_with_a_bad_id_exits_2_with_one_line(sweep):
    cwd, _, _, runs = sweep
    result = run_cli(runs["optim.lr=0.1,seed=2"].info.run_id, "0123abcd", cwd=cwd,
                     module="pipeline.diff")  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("No run '0123abcd' in sqlite:///")


# register, predict by alias, serve


def registry_state(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    state = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = {alias: str(version) for alias, version in model.aliases.items()}
        state.append((model.name, aliases, sorted(str(v.version) for v in versions)))
    return state


@pytest.fixture(scope="module")
def champion(sweep):
    """The sweep's best run registered from the command line (version 1, alias champion)."""
    cwd, _, parent, runs = sweep
    result = run_cli(parent.info.run_id, cwd=cwd, module="pipeline.register")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # MLflow's own "Successfully registered" lines are not shown
    return result.stdout.splitlines(), ranked(runs)[0]


def test_register_the_sweeps_best_run(sweep, champion):
    _, uri, parent, _ = sweep
    lines, best = champion
    objective = best.data.metrics["objective"]
    assert lines == [
        f"Registered run {best.info.run_id} {best.info.run_name!r} (objective {objective:.6g}, "
        f"the best of sweep {parent.info.run_id})",
        "as softmax-regression version 1, alias 'champion' (new)",
        CHAMPION,
    ]
    client = MlflowClient(tracking_uri=uri)
    version = client.get_model_version_by_alias("softmax-regression", "champion")
    assert str(version.version) == "1"
    assert version.run_id == best.info.run_id
    assert version.tags["run_id"] == best.info.run_id
    assert float(version.tags["objective"]) == objective
    assert version.tags["sweep_run_id"] == parent.info.run_id


def test_predict_by_alias_and_move_the_alias(sweep, champion, tmp_path, capsys):
    _, uri, _, runs = sweep
    best, second = ranked(runs)
    rows = tmp_path / "rows.csv"
    pd.DataFrame(ROWS, columns=FEATURES).to_csv(rows, index=False)
    by_alias = predict(CHAMPION, str(rows), uri, ",", True)
    pd.testing.assert_frame_equal(by_alias, predict(best.info.run_id, str(rows), uri, ",", True))
    assert by_alias["label"].tolist() == ["setosa", "virginica", "versicolor"]

    out = call(capsys, register, second.info.run_id, "--alias", "challenger", "--tracking-uri", uri)
    assert out.splitlines()[1] == "as softmax-regression version 2, alias 'challenger' (new)"
    assert out.splitlines()[2] == "models:/softmax-regression@challenger"
    out = call(capsys, register, second.info.run_id, "--tracking-uri", uri)
    assert out.splitlines()[1:] == [
        "as softmax-regression version 3, alias 'champion' (moved from version 1)",
        CHAMPION,
    ]
    assert call(capsys, predict_command, CHAMPION, str(rows), "--tracking-uri", uri) == (
        predict(second.info.run_id, str(rows), uri, ",", True).to_csv(index=False)
    )
    call(capsys, register, best.info.run_id, "--tracking-uri", uri)  # champion: best again
    assert registry_state(uri) == [
        ("softmax-regression", {"challenger": "2", "champion": "4"}, ["1", "2", "3", "4"])
    ]


def test_register_bad_inputs_change_nothing(sweep, champion):
    _, uri, parent, runs = sweep
    before = registry_state(uri)
    store = ["--tracking-uri", uri]
    failed = runs["optim.lr=1e+38,seed=1"].info.run_id
    assert "(FAILED) has no classifier model" in one_line_error(register, failed, *store)
    assert "No run '0123abcd'" in one_line_error(register, "0123abcd", *store)
    message = one_line_error(register, parent.info.run_id, "--alias", "latest", *store)
    assert message.startswith("Cannot register as softmax-regression@latest:")
    message = one_line_error(register, parent.info.run_id, "--name", "a/b", *store)
    assert "Names cannot contain '/'" in message
    assert registry_state(uri) == before


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_predict(sweep, champion, tmp_path):
    cwd, uri, _, _ = sweep
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION,
               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]  # fmt: skip
    served = start_server(command, cwd, tmp_path / "serve.log", port, {"MLFLOW_TRACKING_URI": uri})
    try:
        as_json = json.dumps({"dataframe_split": {"columns": FEATURES, "data": ROWS}})
        as_csv = pd.DataFrame(ROWS, columns=FEATURES).to_csv(index=False)
        answers = [
            invoke(port, as_json.encode(), "application/json"),
            invoke(port, as_csv.encode(), "text/csv"),
        ]
    finally:
        stop_group(served)
    assert not live_members(served.pid), "the model server left processes behind"
    assert not listening(port)
    rows = tmp_path / "rows.csv"
    rows.write_text(as_csv)
    expected = predict(CHAMPION, str(rows), uri, ",", True)
    for answer in answers:
        table = pd.DataFrame(answer["predictions"])
        assert table.columns.tolist() == ["setosa", "versicolor", "virginica"]
        for name in table.columns:  # the model computes in float32; JSON carries it as float64
            assert np.array_equal(table[name].astype(np.float32), expected[f"prob_{name}"])


def invoke(port: int, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


# sweep.direction=maximize: the run with the highest objective is the best


@pytest.fixture(scope="module")
def maximized(tmp_path_factory: pytest.TempPathFactory):
    """A sweep of 3 learning rates that maximizes its objective (the training cost, here: the
    opposite of what minimizing picks): (uri, its output, the parent, runs highest first)."""
    cwd = tmp_path_factory.mktemp("maximize")
    result = run_cli("-m", "optim.lr=0.03,0.1,0.3", "epochs=50", "sweep.direction=maximize",
                     cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr
    uri = sqlite_uri(cwd / "mlruns")
    parent, runs = sweep_runs(uri)
    highest = sorted(runs, key=lambda run: run.data.metrics["objective"], reverse=True)
    objectives = [run.data.metrics["objective"] for run in highest]
    assert len(set(objectives)) == 3  # a strict order to check
    return uri, result.stdout, parent, highest


def test_maximize_makes_the_highest_objective_the_best_run(maximized):
    _, output, parent, (best, *_) = maximized
    assert parent.data.tags["sweep.direction"] == "maximize"
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.tags["best_run_name"] == best.info.run_name
    assert parent.data.metrics["best_objective"] == best.data.metrics["objective"]
    assert parent.data.params["best.optim.lr"] == best.data.params["optim.lr"]
    line = f"Best run by objective (maximize): {best.info.run_name} ({best.info.run_id})"
    assert line in output


def test_compare_ranks_a_maximized_sweep_highest_first(maximized, capsys, monkeypatch):
    uri, _, parent, highest = maximized
    rows = json.loads(call(capsys, compare, parent.info.run_id, "--format", "json",
                           "--tracking-uri", uri))  # fmt: skip
    assert [row["run_id"] for row in rows] == [run.info.run_id for run in highest]
    monkeypatch.setenv("COLUMNS", "200")
    text = call(capsys, compare, "--tracking-uri", uri)  # the latest sweep
    title = f"3 runs of {parent.info.run_name!r} ({parent.info.run_id}), by objective (maximize)"
    assert text.splitlines()[0] == title


def test_register_a_maximized_sweep_takes_its_highest_run(maximized, capsys):
    uri, _, parent, (best, *_) = maximized
    out = call(capsys, register, parent.info.run_id, "--tracking-uri", uri)
    objective = best.data.metrics["objective"]
    assert out.splitlines()[0] == (
        f"Registered run {best.info.run_id} {best.info.run_name!r} (objective {objective:.6g}, "
        f"the best of sweep {parent.info.run_id})"
    )
    version = MlflowClient(tracking_uri=uri).get_model_version_by_alias(
        "softmax-regression", "champion"
    )
    assert version.run_id == best.info.run_id
    assert version.tags["sweep.direction"] == "maximize"
    assert version.tags["sweep_run_id"] == parent.info.run_id
