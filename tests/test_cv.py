"""k-fold cross-validation (``cv.folds``): the folds, their nested runs, the CV score, and what
the commands that read runs make of a cross-validated run."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    compose_job,
    cost_history,
    run_cli,
    runs_of,
    sqlite_uri,
    sweep_runs,
    train_into,
)
from pipeline.config import validate
from pipeline.core.data import fold_assignment, training_part
from pipeline.cv import FOLD_FILE, assignment_digest, assignment_of
from pipeline.errors import ConfigError, DataError, PipelineError
from pipeline.stage import build_data

CV = ("data=iris", "cv.folds=3", "debug=fast")
CV_LINES: list[
    str
] = []  # what the cv_run fixture's run logged (pipeline.cv)  # 150 rows: 120 train+val, 30 test


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """One cross-validated run: (store uri, its outcome, its run, its fold runs by fold)."""
    uri = sqlite_uri(tmp_path_factory.mktemp("store"))
    lines, logger = Lines(), logging.getLogger("pipeline.cv")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        outcome, run = train_into(uri, *CV)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    CV_LINES[:] = lines.lines
    return uri, outcome, run, folds_of(uri, run.info.run_id)


class Lines(logging.Handler):
    """The messages logged while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def folds_of(uri: str, parent_id: str) -> dict[int, object]:
    nested = [r for r in runs_of(uri) if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return {int(r.data.tags["cv.fold"]): r for r in nested}


def fold_rows(uri: str, run) -> dict:
    """The fold run's ``cv_fold.json``: its fold, seed and rows."""
    return json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{FOLD_FILE}"))


def test_the_folds_are_disjoint_and_cover_the_training_part(cv_run):
    uri, _, run, folds = cv_run
    assert sorted(folds) == [1, 2, 3]
    rows = {fold: fold_rows(uri, fold_run) for fold, fold_run in folds.items()}
    held_out = [set(rows[fold]["val_rows"]) for fold in (1, 2, 3)]
    assert sum(len(h) for h in held_out) == 120  # iris: 150 rows less the 30 of the test split
    assert set().union(*held_out) == set(range(120))
    assert all(a.isdisjoint(b) for i, a in enumerate(held_out) for b in held_out[i + 1 :])
    for fold in (1, 2, 3):  # each fold trains on the other folds' rows
        assert set(rows[fold]["train_rows"]) == set(range(120)) - held_out[fold - 1]
        assert len(held_out[fold - 1]) == 40
    tags = [f.data.tags for f in folds.values()]
    assert {t["cv.folds"] for t in tags} == {"3"}
    assert {t["cv.seed"] for t in tags} == {"0"}
    assert all(f.info.status == "FINISHED" for f in folds.values())
    assert run.info.status == "FINISHED"
    assert "cv.fold" not in run.data.tags


def test_the_assignment_is_recorded_and_follows_from_the_seed(cv_run):
    uri, _, _, folds = cv_run
    cfg, _ = compose_job(*CV)
    data, _ = build_data(cfg)
    part = training_part(data)
    again = assignment_of(cfg, part)
    assert {f.data.tags["cv.assignment"] for f in folds.values()} == {assignment_digest(again)}
    for fold, run in folds.items():
        assert fold_rows(uri, run)["val_rows"] == np.flatnonzero(again == fold - 1).tolist()
    labels = part.train.labels.numpy()
    same = fold_assignment(labels, 3, True, 0)
    assert np.array_equal(same, again)
    assert not np.array_equal(fold_assignment(labels, 3, True, 1), again)  # another seed
    for fold in range(3):  # stratified: each fold holds each class's share (40 of each: 13-14)
        counts = np.bincount(labels[again == fold], minlength=3)
        assert counts.max() - counts.min() <= 1
        assert counts.sum() == 40


def test_the_folds_train_as_one_batch_and_log_what_each_alone_logs(cv_run):
    """The three folds (80 rows each) trained as one batched group: each fold run's histories
    are, bit for bit, those of the fold trained alone by ``pipeline.core.loop.fit``."""
    from pipeline.core.loop import fit
    from pipeline.cv import build_fold

    uri, _, _, folds = cv_run
    assert "Folds 1, 2, 3 of 3 train as one batch" in CV_LINES
    cfg, _ = compose_job(*CV)
    part = training_part(build_data(cfg)[0])
    assignment = assignment_of(cfg, part)
    for fold, run in folds.items():
        built, records = build_fold(cfg, part, assignment, fold), {}
        fit(
            built.model,
            built.optimizer,
            built.prepared(),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            log_every=cfg.log_every,
            generator=built.batches,
            progress=Quiet(),
            record=lambda e, values, ms, r=records: r.__setitem__(e, values),
        )
        for key in ("cost", "accuracy", "val_cost", "val_accuracy"):
            expected = [records[epoch][key] for epoch in sorted(records)]
            assert cost_history(uri, run.info.run_id, key) == expected


class Quiet:
    def update(self, epoch: int, cost: object) -> None: ...

    def clear(self) -> None: ...


def test_the_cv_mean_is_the_mean_of_the_fold_runs_metrics(cv_run):
    _, outcome, run, folds = cv_run
    metrics = run.data.metrics
    for key in ("val_cost", "val_accuracy", "final_cost", "test_accuracy", "objective"):
        values = np.array([f.data.metrics[key] for f in folds.values()])
        assert metrics[f"cv_mean_{key}"] == pytest.approx(values.mean(), rel=1e-12)
        assert metrics[f"cv_std_{key}"] == pytest.approx(values.std(), rel=1e-12, abs=1e-15)
    assert metrics["cv_mean_val_cost"] == pytest.approx(metrics["cv_mean_objective"], rel=1e-12)
    assert metrics["objective"] == metrics["cv_mean_objective"] == outcome.value
    for fold in folds.values():  # a fold's objective: its own validation cost
        assert fold.data.metrics["objective"] == pytest.approx(fold.data.metrics["val_cost"])


def test_the_configuration_run_has_the_model_refit_on_the_training_part(cv_run):
    uri, _, run, _ = cv_run
    client = MlflowClient(uri)
    assert "120/30 train/val/test" in run.data.tags["mlflow.note.content"]
    history = client.get_metric_history(run.info.run_id, "cost")
    assert sorted(m.step for m in history) == list(range(21))  # its own training: epochs 0..20
    assert "test_accuracy" in run.data.metrics
    assert run.data.params["cv.folds"] == "3"
    assert [m.name for m in client.search_logged_models([run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'")]  # fmt: skip


def test_register_takes_the_refit_model_and_compare_shows_the_cv_scores(cv_run, capsys):
    from pipeline import compare, register, rerun, resume

    uri, _, run, folds = cv_run
    assert register.main([run.info.run_id, "--name", "cv-model", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"Registered run {run.info.run_id}" in out
    version = MlflowClient(uri).get_model_version_by_alias("cv-model", "champion")
    assert version.run_id == run.info.run_id
    compare.main(["softmax-regression", "--format", "json", "--tracking-uri", uri])
    rows = json.loads(capsys.readouterr().out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [r["run_id"] for r in rows] == [run.info.run_id]  # the folds are not listed apart
    assert rows[0]["cv_mean_val_accuracy"] == run.data.metrics["cv_mean_val_accuracy"]
    fold = folds[2].info.run_id
    for command in (register, rerun, resume):  # a fold goes with its configuration's run
        with pytest.raises(
            PipelineError, match=f"Fix: python -m {command.__name__} {run.info.run_id}$"
        ):
            command.main([fold, "--tracking-uri", uri])
    compare.main([run.info.run_id, "--format", "json", "--tracking-uri", uri])  # its folds
    rows = json.loads(capsys.readouterr().out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert {r["run_id"] for r in rows} == {f.info.run_id for f in folds.values()}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("cv.folds=1",), "Config error: cv.folds must be >= 2"),
        (("cv.folds=3",), "its smallest class has 2 samples. Fix: cv.folds=2 or fewer, or "),
        (
            ("cv.folds=2", "data.val_fraction=0.25", "scheduler=plateau"),
            "Config error: scheduler=plateau does not combine with cv.folds=2: the model refit "
            "on the whole training part has no validation cost to step it on. Fix: another "
            "scheduler (e.g. scheduler=cosine), or cv.folds=null",
        ),
    ],
)
def test_bad_folds_fail_before_any_run(store, overrides, message):
    with pytest.raises((ConfigError, DataError), match=re.escape(message)):
        train_into(store, "data=toy", *overrides)
    assert runs_of(store) == []


def test_unstratified_folds_need_only_as_many_rows():
    labels = np.array([0, 0, 0, 0, 0, 1])
    assignment = fold_assignment(labels, 3, False, 0)
    assert np.bincount(assignment).tolist() == [2, 2, 2]
    with pytest.raises(DataError, match=r"cv\.stratified=false"):
        fold_assignment(labels, 3, True, 0)
    cfg, _ = compose_job("cv.folds=2")
    validate(cfg)  # the default reference config cross-validates too (8 rows: 2 folds)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "skipped", "resumed"),
    [
        ("fold:2", [1, 2], {3: 21}),  # the batch trained, folds 1 and 2 recorded FINISHED
        ("checkpoint:29", [], {1: 10, 2: 9, 3: 9}),  # while saving fold 2's epoch 9
    ],
    ids=["after-fold-2", "in-the-batch"],
)
def test_a_killed_cv_run_resumes_skipping_its_finished_folds(tmp_path, cv_run, kill_at, skipped,
                                                             resumed):  # fmt: skip
    """``kill -9`` once two folds of the batch FINISHED, or in the middle of the batch (a
    checkpoint of each fold every epoch: the 29th is fold 2's of epoch 9, so fold 1 has epoch 9's
    and folds 2 and 3 epoch 8's): ``pipeline.resume`` skips the FINISHED folds, continues each
    interrupted one from its own checkpoint (those from one epoch as a batch again, fold 1 alone)
    and trains the refit: the numbers of a run never stopped."""
    whole_uri, _, whole, whole_folds = cv_run
    uri = sqlite_uri(tmp_path / "store")
    every = "checkpoint.every_s=1e-9"  # a run setting: the same run key, the same numbers
    env = {"PIPELINE_KILL_AT": kill_at}
    killed = run_cli(*CV, every, f"tracking.uri={uri}", cwd=tmp_path, env=env)
    assert killed.returncode == -9
    (run,) = [r for r in runs_of(uri) if "cv.fold" not in r.data.tags]
    before = folds_of(uri, run.info.run_id)
    assert sorted(before) == [1, 2, 3]  # one batch: every fold's run opened at once
    assert [f for f in (1, 2, 3) if before[f].info.status == "FINISHED"] == skipped
    listed = run_cli("--list", "--tracking-uri", uri, cwd=tmp_path, module="pipeline.resume")
    assert run.info.run_id in listed.stdout  # the configuration's run, not its folds
    assert not any(f.info.run_id in listed.stdout for f in before.values())
    assert run.info.status == "RUNNING"
    resumed_cli = run_cli(
        run.info.run_id, "--tracking-uri", uri, cwd=tmp_path, module="pipeline.resume"
    )
    output = resumed_cli.stderr + resumed_cli.stdout
    assert resumed_cli.returncode == 0, resumed_cli.stderr
    for fold in skipped:
        assert f"Fold {fold}/3 FINISHED before" in output
    after = folds_of(uri, run.info.run_id)
    assert sorted(after) == [1, 2, 3]
    assert all(after[f].info.run_id == before[f].info.run_id for f in (1, 2, 3))
    for fold, epoch in resumed.items():  # each went on from its own last checkpoint
        assert after[fold].data.tags["resume.epochs"] == str(epoch)
        assert f"Fold {fold}/3 resumed from epoch {epoch}" in output
    if len(set(resumed.values())) > 1:
        assert "Folds 2, 3 of 3 train as one batch" in output
        assert "Fold 1 of 3 trains alone: it resumes from epoch 10, fold 2 from epoch 9" in output
    run = MlflowClient(uri).get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    for key in ("objective", "cv_mean_val_cost", "cv_std_val_accuracy", "test_cost"):
        assert run.data.metrics[key] == whole.data.metrics[key]
    for fold in (1, 2, 3):
        assert after[fold].data.metrics == whole_folds[fold].data.metrics
        for key in ("cost", "val_cost", "val_accuracy"):
            assert cost_history(uri, after[fold].info.run_id, key) == cost_history(
                whole_uri, whole_folds[fold].info.run_id, key
            )


@pytest.mark.slow
def test_a_sweep_nests_folds_under_each_configuration(tmp_path):
    """sweep parent -> configuration runs -> fold runs; each configuration's value is its CV
    score; the vectorized launcher trains each CV job alone, and says why; each job trains its
    folds as one batch."""
    uri = sqlite_uri(tmp_path / "store")
    swept = run_cli("-m", "data=iris", "cv.folds=2", "epochs=5", "optim.lr=0.1,0.5",
                    f"tracking.uri={uri}", cwd=tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    output = swept.stdout + swept.stderr
    assert (
        "Jobs 0, 1 train one at a time: cross-validation (cv.folds): each job batches its "
        "own folds" in output
    )
    assert output.count("Folds 1, 2 of 2 train as one batch") == 2
    parent, configs = sweep_runs(uri)
    assert len(configs) == 2
    for config in configs:
        folds = folds_of(uri, config.info.run_id)
        assert sorted(folds) == [1, 2]
        mean = np.mean([f.data.metrics["val_cost"] for f in folds.values()])
        assert config.data.metrics["objective"] == pytest.approx(mean, rel=1e-12)
    best = min(configs, key=lambda r: r.data.metrics["objective"])
    assert parent.data.tags["best_run_id"] == best.info.run_id


@pytest.mark.slow
def test_an_optuna_search_minimizes_the_cv_score(tmp_path):
    """An Optuna study over configurations scored by cross-validation: each trial is a
    configuration run with its folds nested, and the study's best value is the best trial's
    folds' mean validation cost."""
    import yaml

    uri = sqlite_uri(tmp_path / "store")
    searched = run_cli("-m", "hydra/sweeper=lr_search", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.n_jobs=2", "data=iris", "cv.folds=2", "epochs=5",
                       f"tracking.uri={uri}", cwd=tmp_path)  # fmt: skip
    assert searched.returncode == 0, searched.stderr
    parent, trials = sweep_runs(uri)
    assert len(trials) == 2
    for trial in trials:
        folds = folds_of(uri, trial.info.run_id)
        assert sorted(folds) == [1, 2]
        assert trial.data.metrics["objective"] == trial.data.metrics["cv_mean_val_cost"]
    (results_file,) = Path(tmp_path, "multirun").glob("*/*/optimization_results.yaml")
    found = yaml.safe_load(results_file.read_text())
    best = min(trials, key=lambda r: r.data.metrics["cv_mean_val_cost"])
    assert found["best_value"] == pytest.approx(best.data.metrics["cv_mean_val_cost"], rel=1e-12)
    assert parent.data.tags["best_run_id"] == best.info.run_id


@pytest.mark.slow  # a subprocess: the exit status and the one line are the point
def test_a_diverged_batch_of_folds_leaves_no_fold_run_running(tmp_path):
    """Wine's folds 2 and 3 train as a batch, fold 1 (a row fewer) alone after them: the
    batch diverges, so fold 1 never trains. Every fold run opened ends FAILED, none RUNNING,
    and so does the configuration's run; the error is the one line."""
    uri = sqlite_uri(tmp_path / "mlruns")
    result = run_cli("data=wine", "cv.folds=3", "model=mlp", "optim.lr=1e30", "epochs=20",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "Fold 1 of 3 trains alone" in result.stdout + result.stderr
    assert "Training diverged: cost is nan at epoch 1." in result.stderr
    (config,) = [r for r in runs_of(uri) if "cv.fold" not in r.data.tags]
    assert config.info.status == "FAILED"
    folds = folds_of(uri, config.info.run_id)
    assert {fold: run.info.status for fold, run in folds.items()} == dict.fromkeys(
        [1, 2, 3], "FAILED"
    )


def test_the_cv_settings_are_not_named_as_a_divergence_cause():
    from pipeline.stage import steering

    assert steering(("cv.folds=3", "optim.lr=9", "cv.stratified=false")) == ["optim.lr=9"]


def test_a_cv_run_with_class_weights_records_them_as_a_run_alone_does(tmp_path):
    """The configuration run logs the balanced weights of its training part (param and file),
    as a run without cross-validation does."""
    uri = sqlite_uri(tmp_path / "mlruns")
    _, run = train_into(uri, *CV, "loss.class_weights=balanced")
    weights = json.loads(run.data.params["loss.weights"])
    part = training_part(build_data(compose_job(*CV)[0])[0])
    counts = np.bincount(part.train.labels.numpy())
    assert weights == pytest.approx(list(len(part.train) / (len(counts) * counts)), rel=1e-7)
    path = MlflowClient(tracking_uri=uri).download_artifacts(
        run.info.run_id, "class_weights.json", str(tmp_path)
    )
    assert list(json.loads(Path(path).read_text()).values()) == weights


STOPPED = (*CV, "optim=adam", "optim.lr=0.5", "epochs=60", "early_stopping.patience=3",
           "sweep.metric=val_macro_f1", "sweep.direction=maximize")  # fmt: skip


@pytest.fixture(scope="module")
def stopped_cv_run(tmp_path_factory):
    """A cross-validated run with early stopping, ranked by val_macro_f1: (uri, outcome, run,
    its fold runs by fold)."""
    uri = sqlite_uri(tmp_path_factory.mktemp("store"))
    outcome, run = train_into(uri, *STOPPED)
    return uri, outcome, run, folds_of(uri, run.info.run_id)


def test_with_early_stopping_the_refit_trains_for_the_folds_mean_best_epoch(stopped_cv_run):
    """Each fold stops on its own validation rows; the refit (no validation split) trains,
    without early stopping, to the folds' mean best epoch (rounded half up), tagged."""
    uri, _, run, folds = stopped_cv_run
    assert run.info.status == "FINISHED"
    assert all(f.info.status == "FINISHED" for f in folds.values())
    best = [f.data.metrics["best_epoch"] for f in folds.values()]
    assert all(f.data.metrics["stopped_epoch"] < 60 for f in folds.values())  # they stopped
    refit = int(np.floor(np.mean(best) + 0.5))
    assert run.data.tags["cv.refit_epochs"] == str(refit)
    assert run.data.metrics["cv_mean_best_epoch"] == pytest.approx(np.mean(best), rel=1e-12)
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "cost")
    assert sorted(m.step for m in history) == list(range(refit + 1))
    assert "best_epoch" not in run.data.metrics  # the refit does not stop early
    assert run.data.params["early_stopping.patience"] == "3"  # the configuration as given
    assert run.data.params["epochs"] == "60"


def test_a_cv_run_ranks_by_the_folds_mean_of_a_validation_metric(stopped_cv_run):
    """sweep.metric=val_macro_f1: the refit has no validation split, so the configuration run
    logs the folds' mean as val_macro_f1, and returns it to the sweeper."""
    _, outcome, run, folds = stopped_cv_run
    mean = np.mean([f.data.metrics["val_macro_f1"] for f in folds.values()])
    assert run.data.metrics["val_macro_f1"] == pytest.approx(mean, rel=1e-12)
    assert run.data.metrics["cv_mean_val_macro_f1"] == run.data.metrics["val_macro_f1"]
    assert outcome.value == run.data.metrics["val_macro_f1"]
    assert "val_cost" not in run.data.metrics  # only what a sweep ranks by: see cv_mean_*


def test_early_stopping_and_val_macro_f1_need_no_validation_split_with_cv():
    """Each fold holds out its own rows: data.val_fraction=0 is fine with cv.folds."""
    cfg, _ = compose_job("data=iris", "data.val_fraction=0", "cv.folds=3",
                         "early_stopping.patience=3", "sweep.metric=val_macro_f1",
                         "sweep.direction=maximize")  # fmt: skip
    validate(cfg)
    cfg, _ = compose_job("data=iris", "data.val_fraction=0", "early_stopping.patience=3")
    with pytest.raises(ConfigError, match="no validation split"):
        validate(cfg)


@pytest.mark.slow
def test_a_cv_sweep_ranks_its_configurations_by_sweep_metric(tmp_path):
    """-m with sweep.metric=val_macro_f1: every configuration FINISHED with the folds' mean,
    the best is the highest, and no job's reason is an error."""
    uri = sqlite_uri(tmp_path / "store")
    swept = run_cli("-m", "data=iris", "cv.folds=2", "epochs=5", "optim.lr=0.01,0.5",
                    "sweep.metric=val_macro_f1", "sweep.direction=maximize",
                    f"tracking.uri={uri}", cwd=tmp_path)  # fmt: skip
    output = swept.stdout + swept.stderr
    assert swept.returncode == 0, output
    assert "Error" not in output
    parent, configs = sweep_runs(uri)
    assert [c.info.status for c in configs] == ["FINISHED", "FINISHED"]
    for config in configs:
        folds = folds_of(uri, config.info.run_id)
        mean = np.mean([f.data.metrics["val_macro_f1"] for f in folds.values()])
        assert config.data.metrics["val_macro_f1"] == pytest.approx(mean, rel=1e-12)
    best = max(configs, key=lambda r: r.data.metrics["val_macro_f1"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert f"Best run by val_macro_f1 (maximize): {best.info.run_name}" in output


SMALL = ("data=iris", "cv.folds=2", "epochs=5")


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """In one store: a cross-validated run, the same with another lr, and a run without CV."""
    uri = sqlite_uri(tmp_path_factory.mktemp("store"))
    _, cv = train_into(uri, *SMALL)
    _, other = train_into(uri, *SMALL, "optim.lr=0.5")
    _, plain = train_into(uri, "data=iris", "epochs=5")
    return uri, cv, other, plain


@pytest.mark.slow  # its fixture trains three runs, two cross-validated
def test_diff_marks_a_cv_run_and_compares_its_folds(small_runs):
    from pipeline import diff

    uri, cv, other, plain = small_runs
    client = MlflowClient(uri)
    lines = diff.report(client, cv, plain)
    assert lines[0].endswith("(FINISHED); cross-validated: 2 folds")
    assert not lines[1].endswith("folds")
    assert (
        "  note: A's objective and val_macro_f1 are the means of its 2 folds' validation "
        "metrics, B's are one validation split's; A's cost history and test_*/final_* metrics "
        "are its model refit on the whole training part"
    ) in lines
    assert not any("fold 1/2" in line for line in lines)
    lines = diff.report(client, cv, other)
    assert not any("note:" in line for line in lines)
    for fold in (1, 2):  # the cost before the first step is the same; then the lr tells
        prefix = f"  fold {fold}/2: 1/6 cost values identical; first difference at step 1 ("
        assert any(line.startswith(prefix) for line in lines)
    lines = diff.report(client, cv, cv)
    assert "  fold 2/2: 6/6 cost values identical" in lines


@pytest.mark.slow
def test_rerun_of_a_cv_run_checks_its_refit_and_every_fold(small_runs, capfd):
    from pipeline import rerun

    uri, cv, _, _ = small_runs
    assert rerun.main([cv.info.run_id, "--tracking-uri", uri]) == 0
    out = capfd.readouterr().out
    assert (
        f"of {cv.info.run_id} (its model refit on the whole training part): reproduced: 6/6 "
        "cost values identical"
    ) in out
    for fold in (1, 2):
        assert f"  fold {fold}/2: reproduced: 6/6 cost values identical" in out
