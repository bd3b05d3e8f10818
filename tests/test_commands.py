"""The commands, fast: every command's ``--help``, and ``compare``, ``diff``, ``register`` and
``predict``'s CSV options on one small store trained in this process (three 50-epoch iris runs).
Each command runs in this process through its ``main(argv)``; only train's Hydra help starts a
process. The sweep-based tests of these commands are in test_best_run.py."""

from __future__ import annotations

import importlib
import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli, sqlite_uri, train_into
from pipeline import compare, diff, register
from pipeline import predict as predict_command

# Each command's arguments and options, as its usage text must name them.
OPTIONS = {
    "predict": ["MODEL", "INPUT", "--output", "--delimiter", "--no-header", "--tracking-uri"],
    "rerun": ["RUN_ID", "OVERRIDE", "--tracking-uri"],
    "resume": ["RUN_ID", "--list", "--experiment", "--tracking-uri"],
    "compare": ["TARGET", "--all", "--sort", "--desc", "--format", "--tracking-uri"],
    "diff": ["RUN_A", "RUN_B", "--tracking-uri"],
    "register": ["TARGET", "--name", "--alias", "--tracking-uri"],
    "ui": ["--port", "--host", "--backend-store-uri", "--experiment", "--tracking-uri"],
    "server": ["--backend-store-uri", "--artifacts-destination", "--host", "--port", "--workers",
               "--no-auth", "--auth-database-uri", "--default-permission", "--auth-cache-s"],
}  # fmt: skip
# Iris rows: a setosa, a virginica and a versicolor, in the training features' order.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]
LABELS = ["setosa", "virginica", "versicolor"]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
CHAMPION = "models:/softmax-regression@champion"


@pytest.mark.parametrize("command", OPTIONS)
def test_help_shows_the_usage_with_every_option_and_ends_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"pipeline.{command}").main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m pipeline.{command} ")
    for option in OPTIONS[command]:
        assert option in out, option
    last_two = out.rstrip().splitlines()[-2:]
    assert last_two[0] == "example:"
    assert last_two[1].startswith(f"  python -m pipeline.{command} ")


@pytest.mark.slow  # seconds: in CI, not the inner loop
def test_train_help_is_the_pipelines_own_page(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert page.startswith(
        "python -m pipeline.train: train a model with PyTorch, tracked in MLflow"
    )
    assert "powered by Hydra" not in page
    groups = page.split("== Configuration groups ==", 1)[1].split("== Config ==")[0]
    for line in (
        "data: csv, digits, iris, parquet, synthetic, [toy], wine",
        "debug: fast",
        "experiment: iris_mlp, lr_seed_sweep, reference",
        "model: mlp, [softmax]",
        "optim: adam, adamw, lbfgs, [sgd]",
        "scheduler: cosine, exponential, multistep, [none], plateau, step",
    ):
        assert f"\n  {line}\n" in groups
    assert "[vectorized]" in groups  # hydra/launcher's default: the batched launcher
    assert "schema/" not in page  # the internal schema groups are not a user's choice
    config = page.split("== Config ==", 1)[1].split("Other commands")[0]
    for line in ("seed: 1", "epochs: 1000", "batch_size: null", "device: auto", "  lr: 0.1",
                 "  direction: minimize", "  every_s: 60.0"):  # fmt: skip
        assert f"\n{line}\n" in config
    commands = page.split("Other commands", 1)[1].split("Docs:")[0]
    for command in ("predict", "rerun", "resume", "compare", "diff", "register", "ui", "server"):
        assert f"\n  {command} " in commands, command
    assert "Predict with a logged model" in commands  # each command's own first doc line
    assert "Docs: docs/index.md in the repository, or the docs site (mkdocs serve)." in page
    examples = page.rstrip().split("Examples:\n", 1)[1].splitlines()
    assert [e.split("#")[0].strip() for e in examples] == [  # the page ends with them
        "python -m pipeline.train optim.lr=0.05 epochs=200",  # a run
        "python -m pipeline.train -m optim.lr=0.01,0.1 seed=1,2,3",  # a sweep
        "python -m pipeline.train data=csv data.path=my.csv data.label=species",  # a user's CSV
    ]
    assert not (tmp_path / "mlruns").exists()  # nothing trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A store with three iris runs of 50 epochs, trained in this process: (uri, runs by name)
    for lr 0.1 with seeds 1 and 2, and lr 0.01 with seed 1."""
    uri = sqlite_uri(tmp_path_factory.mktemp("commands"))
    runs = {}
    for name, overrides in {
        "lr0.1-seed1": ("optim.lr=0.1", "seed=1"),
        "lr0.1-seed2": ("optim.lr=0.1", "seed=2"),
        "lr0.01-seed1": ("optim.lr=0.01", "seed=1"),
    }.items():
        _, runs[name] = train_into(uri, "data=iris", "epochs=50", *overrides)
    return uri, runs


def write_rows(path, delimiter: str = ",", header: bool = True):
    """ROWS as a CSV file (with FEATURES as its header row); its path."""
    lines = [FEATURES] * header + [[str(value) for value in row] for row in ROWS]
    path.write_text("".join(delimiter.join(line) + "\n" for line in lines))
    return path


def call(capsys, command, *args: str) -> str:
    """``command.main(args)`` in this process: its stdout (it must return 0)."""
    capsys.readouterr()
    assert command.main(list(args)) == 0
    return capsys.readouterr().out


def test_compare_an_experiment_ranks_its_runs_by_objective(trained, capsys, monkeypatch):
    uri, runs = trained
    best_first = sorted(runs.values(), key=lambda run: run.data.metrics["objective"])
    rows = json.loads(call(capsys, compare, "softmax-regression", "--format", "json",
                           "--tracking-uri", uri))  # fmt: skip
    assert [row["run_id"] for row in rows] == [run.info.run_id for run in best_first]
    assert [row["objective"] for row in rows] == [r.data.metrics["objective"] for r in best_first]
    assert [(row["optim.lr"], row["seed"]) for row in rows] == [
        (run.data.params["optim.lr"], run.data.params["seed"]) for run in best_first
    ]
    monkeypatch.setenv("COLUMNS", "200")
    text = call(capsys, compare, "softmax-regression", "--tracking-uri", uri)
    title, header, *lines = text.splitlines()
    assert title == "3 runs of experiment 'softmax-regression', by objective (minimize)"
    assert header.split() == ["run", "status", "optim.lr", "seed", "objective", "final_cost",
                              "final_accuracy", "test_cost", "test_accuracy", "run_id"]  # fmt: skip
    assert [line.split()[-1] for line in lines] == [run.info.run_id for run in best_first]


def test_diff_of_two_learning_rates_from_the_same_start(trained, capsys):
    uri, runs = trained
    a, b = runs["lr0.1-seed1"], runs["lr0.01-seed1"]
    lines = call(capsys, diff, a.info.run_id, b.info.run_id, "--tracking-uri", uri).splitlines()
    assert lines[:5] == [
        f"A: {a.info.run_id} {a.info.run_name!r} (FINISHED)",
        f"B: {b.info.run_id} {b.info.run_name!r} (FINISHED)",
        "params: 1 differ",
        "  optim.lr: 0.1 -> 0.01",
        "metrics: 11 in both",
    ]
    (objective,) = [line.split() for line in lines if line.split()[0] == "objective"]
    was, now = a.data.metrics["objective"], b.data.metrics["objective"]
    assert objective[1:] == [f"{was:.6g}", f"{now:.6g}", f"{now - was:+.6g}"]
    assert "facts: all equal" in lines
    # The same seed and data: the same cost before the first step, then the lr tells.
    assert lines[-1].startswith(
        "cost history: 1/51 cost values identical; first difference at step 1 ("
    )


def test_register_a_run_then_predict_by_its_alias(trained, capsys, tmp_path):
    uri, runs = trained
    run = runs["lr0.1-seed2"]
    out = call(capsys, register, run.info.run_id, "--tracking-uri", uri)
    objective = run.data.metrics["objective"]
    assert out.splitlines() == [
        f"Registered run {run.info.run_id} {run.info.run_name!r} (objective {objective:.6g})",
        "as softmax-regression version 1, alias 'champion' (new)",
        CHAMPION,
    ]
    version = MlflowClient(tracking_uri=uri).get_model_version_by_alias(
        "softmax-regression", "champion"
    )
    assert (version.run_id, version.tags["run_id"]) == (run.info.run_id, run.info.run_id)
    assert float(version.tags["objective"]) == objective
    rows = write_rows(tmp_path / "rows.csv")
    by_alias = call(capsys, predict_command, CHAMPION, str(rows), "--tracking-uri", uri)
    assert by_alias == call(capsys, predict_command, run.info.run_id, str(rows), "--tracking-uri",
                            uri)  # fmt: skip
    assert [line.split(",")[0] for line in by_alias.splitlines()] == ["label", *LABELS]


def test_predict_a_csv_with_another_delimiter_and_no_header(trained, capsys, tmp_path):
    uri, runs = trained
    run_id = runs["lr0.1-seed1"].info.run_id
    plain = write_rows(tmp_path / "plain.csv")
    bare = write_rows(tmp_path / "bare.csv", ";", header=False)  # columns matched by position
    out = call(capsys, predict_command, run_id, str(bare), "--delimiter", ";", "--no-header",
               "--tracking-uri", uri)  # fmt: skip
    header, *predicted = out.splitlines()
    assert header == "label,prob_setosa,prob_versicolor,prob_virginica"
    assert [line.split(",")[0] for line in predicted] == LABELS
    assert out == call(capsys, predict_command, run_id, str(plain), "--tracking-uri", uri)
