"""Imbalanced classes and what runs measure (issue 26, items 4 to 6): the ``loss`` block (class
weights, label smoothing), system metrics through MLflow's monitor, and the macro-F1 metrics that
a sweep, ``compare`` and ``register`` rank by. Real data (a user's imbalanced CSV, iris, wine),
real runs in a real store."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score

from conftest import compose_job, cost_history, run_cli, runs_of, sqlite_uri, sweep_runs, train_into
from pipeline import compare, register
from pipeline import resume as resume_command
from pipeline.config import validate
from pipeline.core import batched
from pipeline.core.loop import fit
from pipeline.errors import ConfigError
from pipeline.stage import build_data, build_run
from pipeline.tracking.run.system import monitor

COUNTS = {"common": 90, "rare": 24, "scarce": 12}  # a user's imbalanced classes


@pytest.fixture(scope="module")
def imbalanced_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``data.path=`` a CSV of three overlapping classes of 90, 24 and 12 rows, string labels."""
    rng = np.random.default_rng(7)
    frames = [
        pd.DataFrame({"x": rng.normal(i, 1.0, n), "y": rng.normal(-i, 1.0, n), "kind": name})
        for i, (name, n) in enumerate(COUNTS.items())
    ]
    path = tmp_path_factory.mktemp("data") / "imbalanced.csv"
    pd.concat(frames).sample(frac=1, random_state=0).to_csv(path, index=False)
    return f"data.path={path}"


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_uri(tmp_path_factory.mktemp("store"))


def untrained_cost(overrides: tuple[str, ...], **loss) -> float:
    """F.cross_entropy (with ``loss``'s options) of the seed's untrained model on the training
    split: what a run logs as its epoch 0 cost."""
    cfg, _ = compose_job(*overrides)
    built = build_run(cfg, *build_data(cfg))
    inputs = built.prepared()
    with torch.no_grad():
        logits = built.model(inputs.train.features)
        return F.cross_entropy(logits, inputs.train.labels, **loss).item()


def artifact(uri: str, run_id: str, path: str, into: Path) -> str:
    return Path(MlflowClient(uri).download_artifacts(run_id, path, str(into))).read_text()


def test_balanced_weights_are_n_over_k_n_c_of_the_training_split(uri, imbalanced_csv, tmp_path):
    overrides = ("data=csv", imbalanced_csv, "data.label=kind", "epochs=30")
    _, run = train_into(uri, *overrides, "loss.class_weights=balanced")
    cfg, _ = compose_job(*overrides)
    data, _ = build_data(cfg)
    counts = torch.bincount(data.train.labels, minlength=data.n_classes).tolist()
    n, k = sum(counts), len(counts)
    expected = [n / (k * n_c) for n_c in counts]
    assert sorted(data.class_names) == sorted(COUNTS)
    assert n < sum(COUNTS.values())  # the training split's counts, not the file's
    logged = json.loads(run.data.params["loss.weights"])
    assert logged == pytest.approx(expected, rel=1e-7)
    assert len(set(logged)) == 3
    by_class = json.loads(artifact(uri, run.info.run_id, "class_weights.json", tmp_path))
    assert by_class == pytest.approx(dict(zip(data.class_names, expected, strict=True)), rel=1e-7)
    # The run minimized the weighted cost: its epoch 0 is the weighted cross-entropy.
    cost = cost_history(uri, run.info.run_id)
    weight = torch.tensor(expected, dtype=torch.float32)
    assert cost[0] == untrained_cost(overrides, weight=weight)
    assert cost[0] != untrained_cost(overrides)
    # Each class counts the same in macro-F1: the test report's "macro avg".
    report = json.loads(artifact(uri, run.info.run_id, "test_report.json", tmp_path))
    assert run.data.metrics["test_macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])


@pytest.mark.parametrize(
    ("setting", "options"),
    [
        ("loss.label_smoothing=0.1", {"label_smoothing": 0.1}),
        ("loss.class_weights=[1,2,0.5]", {"weight": torch.tensor([1.0, 2.0, 0.5])}),
    ],
)
def test_a_loss_setting_is_the_cost_trained_and_reruns_bit_identically(uri, setting, options):
    overrides = ("data=iris", "epochs=8", setting)
    _, first = train_into(uri, *overrides)
    _, again = train_into(uri, *overrides)
    assert first.info.run_id != again.info.run_id
    cost = cost_history(uri, first.info.run_id)
    assert cost[0] == untrained_cost(overrides, **options)
    assert cost[0] != untrained_cost(overrides)
    for key in ("cost", "val_cost", "accuracy"):
        histories = [cost_history(uri, r.info.run_id, key) for r in (first, again)]
        assert histories[0] == histories[1]
    assert again.data.metrics == first.data.metrics


def test_a_list_of_the_wrong_length_names_the_number_of_classes(tmp_path):
    store = sqlite_uri(tmp_path)
    with pytest.raises(ConfigError) as raised:
        train_into(store, "data=iris", "epochs=2", "loss.class_weights=[1,2]")
    assert str(raised.value) == (
        "Config error: loss.class_weights has 2 weights, but the data has 3 classes (setosa, "
        "versicolor, virginica). Fix: one weight per class, e.g. loss.class_weights=[1,1,1], "
        "or loss.class_weights=balanced"
    )
    assert runs_of(store) == []  # before any run


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.label_smoothing=1.0"], "loss.label_smoothing must be in [0, 1), got 1.0"),
        (["loss.class_weights=even"], "loss.class_weights must be null, balanced, or a list"),
        (["loss.class_weights=[1,-1,1]"], "loss.class_weights must be null, balanced, or a"),
        (["loss.class_weights=[0,0]"], "loss.class_weights must be null, balanced, or a list"),
        (["tracking.system_metrics_every_s=0"], "tracking.system_metrics_every_s must be > 0"),
        (
            ["data=iris", "sweep.metric=val_macro_f1"],
            "sweep.metric=val_macro_f1 is better when higher, but sweep.direction=minimize. "
            "Fix: sweep.direction=maximize",
        ),
        (
            ["sweep.metric=val_macro_f1", "sweep.direction=maximize", "data.val_fraction=0"],
            "sweep.metric=val_macro_f1 needs a validation split. Fix: data.val_fraction=0.2",
        ),
        (
            ["sweep.metric=test_macro_f1", "sweep.direction=maximize"],  # the toy set: no test
            "sweep.metric=test_macro_f1 needs a test split. Fix: data.test_fraction=0.2",
        ),
    ],
)
def test_bad_loss_and_metric_settings_are_one_config_error(overrides, message):
    cfg, _ = compose_job(*overrides)
    with pytest.raises(ConfigError, match=r"^Config error: .*Fix: ") as raised:
        validate(cfg)
    assert message in str(raised.value)


def test_the_macro_f1_metrics_are_the_logged_models_on_each_split(uri):
    overrides = ("data=wine", "epochs=15", "sweep.metric=val_macro_f1", "sweep.direction=maximize")
    outcome, run = train_into(uri, *overrides)
    cfg, _ = compose_job(*overrides)
    data, _ = build_data(cfg)  # raw: the logged model standardizes
    mlflow.set_tracking_uri(uri)
    classifier = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/classifier")
    for split, key in ((data.val, "val_macro_f1"), (data.test, "test_macro_f1")):
        rows = pd.DataFrame(split.features.numpy(), columns=data.feature_names)
        named = classifier.predict(rows).idxmax(axis=1)
        predicted = [data.class_names.index(name) for name in named]
        expected = f1_score(split.labels.numpy(), predicted, average="macro")
        assert run.data.metrics[key] == pytest.approx(expected, abs=1e-12)
    assert outcome.value == run.data.metrics["val_macro_f1"]  # what a sweeper gets


def test_label_smoothing_does_not_batch_and_says_why_class_weights_do():
    reasons = {}
    for setting in ("loss.label_smoothing=0.1", "loss.class_weights=balanced", "seed=1"):
        cfg, _ = compose_job("data=iris", setting)
        built = build_run(cfg, *build_data(cfg))
        reasons[setting] = batched.why_not_batchable(built.model, built.optimizer, built.loss)
    assert reasons == {
        "loss.label_smoothing=0.1": "loss.label_smoothing has no batched form",
        "loss.class_weights=balanced": None,
        "seed=1": None,
    }


@pytest.mark.parametrize("n", [1, 2, 16, 17, 33, 255, 256, 257, 4097])
def test_the_weighted_cost_and_its_gradient_are_cross_entropys_bits(n):
    generator = torch.Generator().manual_seed(n)
    logits = (torch.randn(4, n, 3, generator=generator) * 5).requires_grad_()
    labels = torch.randint(0, 3, (4, n), generator=generator)
    weight = torch.tensor([0.7, 2.3, 1.1])
    alone, grads = [], []
    for j in range(4):
        own = logits[j].detach().clone().requires_grad_()
        cost = F.cross_entropy(own, labels[j], weight=weight)
        cost.backward()
        alone.append(cost.detach())
        grads.append(own.grad)
    assert torch.equal(batched.mean_cost(logits, labels, weight), torch.stack(alone))
    losses = batched.sample_losses(logits, labels, weight)
    (losses.sum(dim=1) / batched.total_weight(labels, weight)).sum().backward()
    assert torch.equal(logits.grad, torch.stack(grads))


class Silent:
    def update(self, epoch: int, cost: torch.Tensor) -> None: ...

    def clear(self) -> None: ...


def built_group(configs: tuple[tuple[str, ...], ...]) -> list:
    """Each config built as a run alone builds it, on data loaded once."""
    cfgs = [compose_job(*overrides)[0] for overrides in configs]
    data, scaler = build_data(cfgs[0])
    builts = [build_run(cfg, data, scaler) for cfg in cfgs]
    builts[0].prepared()
    for built in builts[1:]:
        built.inputs = builts[0].inputs
    return builts


def weights_of(built) -> list[torch.Tensor]:
    return [p.detach().clone() for p in built.model.parameters()]


CSV = "data.path=<the imbalanced csv>"
WEIGHTED = {
    "balanced, full batch, sgd, a user's csv": tuple(
        ("data=csv", CSV, "data.label=kind", "loss.class_weights=balanced", "epochs=40", lr, seed)
        for lr in ("optim.lr=0.1", "optim.lr=0.3")
        for seed in ("seed=1", "seed=2")
    ),
    "a list, mini-batches, adam, wine": tuple(
        ("data=wine", "batch_size=16", "optim=adam", "loss.class_weights=[1,2.5,0.4]", seed)
        for seed in ("seed=1", "seed=3", "seed=4")
    ),
}


@pytest.mark.parametrize("configs", WEIGHTED.values(), ids=WEIGHTED.keys())
def test_weighted_jobs_of_a_group_train_as_they_would_alone_bit_for_bit(configs, imbalanced_csv):
    configs = tuple(tuple(imbalanced_csv if o == CSV else o for o in c) for c in configs)
    cfg = compose_job(*configs[0])[0]
    epochs = min(cfg.epochs, 40)
    alone = []
    for built in built_group(configs):
        records: dict = {}
        fit(built.model, built.optimizer, built.inputs, epochs=epochs, batch_size=cfg.batch_size,
            log_every=100, generator=built.batches, progress=Silent(), loss=built.loss,
            record=lambda epoch, values, ms, r=records: r.__setitem__(epoch, values))  # fmt: skip
        alone.append((records, weights_of(built)))
    builts = built_group(configs)
    together: list[dict] = [{} for _ in builts]
    jobs = [
        batched.Job(b.model, b.optimizer, b.batches,
                    lambda epochs, r=r: r.update((e, values) for e, _, values in epochs))
        for b, r in zip(builts, together, strict=True)
    ]  # fmt: skip
    batch = batched.fit_group(jobs, builts[0].inputs, epochs=epochs, batch_size=cfg.batch_size,
                              loss=builts[0].loss)  # fmt: skip
    batch.put_back()
    assert builts[0].loss.weight is not None
    for (records, weights), records_batched, built in zip(alone, together, builts, strict=True):
        assert records_batched == records  # every epoch's cost, accuracy and val_* metrics
        assert all(torch.equal(a, b) for a, b in zip(weights, weights_of(built), strict=True))


def test_system_metrics_are_logged_under_system(uri):
    _, run = train_into(uri, "data=iris", "epochs=3", "tracking.system_metrics=true")
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    _, plain = train_into(uri, "data=iris", "epochs=3")
    assert not any(k.startswith("system/") for k in plain.data.metrics)  # off by default


@pytest.mark.slow  # a second and more of sampling
@pytest.mark.parametrize("runs", [1, 2], ids=["a run alone", "a batched group"])
def test_the_monitor_samples_every_interval_and_logs_each_sample_to_every_run(uri, runs):
    """A run alone has MLflow's monitor; a batched group one monitor whose samples go to each
    of its runs. Either samples every ``every_s`` (a sleep of that long between two) and logs
    its last sample when it finishes."""
    client = MlflowClient(uri)  # the module's store: a new one costs seconds of migrations
    experiment = client.create_experiment(f"a monitor of {runs}")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(runs)]
    watcher = monitor(client, run_ids, every_s=0.3, resumed=False)
    time.sleep(1.2)
    watcher.finish()
    key = "system/system_memory_usage_megabytes"
    histories = [
        [(m.step, m.timestamp) for m in client.get_metric_history(run_id, key)]
        for run_id in run_ids
    ]
    steps = [step for step, _ in histories[0]]
    assert len(steps) >= 3  # in 1.2 s: not the default 10 s; and the last one at finish
    assert steps == list(range(len(steps)))
    sampled = [ms for _, ms in histories[0][:-1]]  # the last one is finish's, at any time
    assert all(b - a >= 150 for a, b in itertools.pairwise(sampled))  # ms: 300 less jitter
    assert all(history == histories[0] for history in histories)


@pytest.mark.slow
def test_a_weighted_sweep_batches_but_smoothing_and_it_ranks_by_macro_f1(tmp_path, capsys):
    result = run_cli(
        "-m", "data=iris", "loss.class_weights=balanced", "loss.label_smoothing=0.1,0",
        "seed=1,2", "epochs=5", "sweep.metric=val_macro_f1", "sweep.direction=maximize",
        "tracking.system_metrics=true", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Jobs 0, 1 train one at a time: loss.label_smoothing has no batched form" in (
        result.stdout
    )
    assert "Training jobs 2-3 as one batch of 2" in result.stdout
    store = sqlite_uri(tmp_path / "mlruns")
    parent, runs = sweep_runs(store)
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    together = [r for r in runs if r.data.tags.get("batch.jobs") == "2"]
    assert {r.data.params["loss.label_smoothing"] for r in together} == {"0.0"}
    (logged,) = {r.data.params["loss.weights"] for r in runs}  # one split: the same weights
    client = MlflowClient(store)
    for run in together:  # a batched run records its weights as a run alone does
        by_class = json.loads(artifact(store, run.info.run_id, "class_weights.json", tmp_path))
        assert list(by_class.values()) == pytest.approx(json.loads(logged), rel=1e-7)
    # Every run has system metrics: its own monitor's, or its group's (the same samples).
    assert all("system/cpu_utilization_percentage" in r.data.metrics for r in runs)
    key = "system/system_memory_usage_megabytes"
    shared = [[m.value for m in client.get_metric_history(r.info.run_id, key)] for r in together]
    assert shared[0] == shared[1]
    # The sweep, compare and register rank by val_macro_f1, highest first.
    scores = {r.info.run_id: r.data.metrics["val_macro_f1"] for r in runs}
    assert scores[parent.data.tags["best_run_id"]] == max(scores.values())
    capsys.readouterr()
    assert compare.main([parent.info.run_id, "--format", "json", "--tracking-uri", store]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["val_macro_f1"] for row in rows] == sorted(scores.values(), reverse=True)
    assert register.main([parent.info.run_id, "--tracking-uri", store]) == 0
    registered = capsys.readouterr().out
    assert f"Registered run {parent.data.tags['best_run_id']}" in registered
    assert f"(val_macro_f1 {max(scores.values()):.6g}, the best of sweep" in registered


@pytest.mark.slow
def test_a_weighted_smoothed_run_killed_and_resumed_has_the_uninterrupted_history(
    tmp_path, monkeypatch, capfd
):
    config = ("data=iris", "batch_size=16", "optim=adam", "epochs=150",
              "loss.class_weights=[1,3,0.5]", "loss.label_smoothing=0.2")  # fmt: skip
    alone_uri = sqlite_uri(tmp_path / "alone")
    _, alone = train_into(alone_uri, *config)
    keys = ("cost", "accuracy", "val_cost", "val_accuracy")
    expected = {key: cost_history(alone_uri, alone.info.run_id, key) for key in keys}
    uri = sqlite_uri(tmp_path / "mlruns")
    env = {"PIPELINE_KILL_AT": "checkpoint:2"}  # SIGKILL while its second checkpoint is written
    killed = run_cli(*config, "checkpoint.every_s=0.05", cwd=tmp_path, env=env)
    assert killed.returncode == -9
    (run,) = runs_of(uri)
    assert run.info.status == "RUNNING"
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert resume_command.main([run.info.run_id, "--tracking-uri", uri]) == 0
    assert "from epoch " in capfd.readouterr().out
    for key, values in expected.items():
        assert cost_history(uri, run.info.run_id, key) == values, key
    resumed = MlflowClient(uri).get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics == alone.data.metrics
