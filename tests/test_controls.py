"""Training controls (issue 26, items 1 and 2): learning-rate schedules and early stopping.

Real data, real runs in a real store. A schedule's ``lr`` history follows its formula; early
stopping stops, records its epochs and restores the best epoch's model; both are validated
before a run exists, survive a stop (in process) and a ``kill -9`` (a real process), and
inside a batched group each job trains exactly as it would alone.
"""

from __future__ import annotations

import json
import math
import signal

import mlflow
import pytest
import torch

from conftest import (
    compose_job,
    cost_history,
    run_cli,
    runs_of,
    sqlite_uri,
    start_cli,
    sweep_runs,
    train_into,
)
from pipeline.config import validate
from pipeline.core import batched, checkpoint, stop
from pipeline.core.evaluate import evaluate
from pipeline.core.loop import fit
from pipeline.errors import ConfigError
from pipeline.stage import build_data, build_run

# Wine with Adam at lr 0.1 overfits its validation split after ~45 epochs: early stopping and a
# plateau schedule have something to act on, in a fraction of a second of training.
WINE = ("data=wine", "optim=adam", "optim.lr=0.1")
EARLY = (*WINE, "early_stopping.patience=5", "epochs=200")


class Silent:
    """A progress display that shows nothing (``stop_at``: ask to stop after that epoch)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at

    def update(self, epoch: int, cost: torch.Tensor) -> None:
        if epoch == self.stop_at:
            stop.request(signal.SIGINT)

    def clear(self) -> None: ...


# ----------------------------------------------------------------------------- schedules


def cosine_with_warmup(lr, epoch, *, warmup, start_factor, t_max, eta_min):
    if epoch < warmup:
        return lr * (start_factor + (1 - start_factor) * epoch / warmup)
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (epoch - warmup) / t_max)) / 2


SCHEDULES = {
    "step": (
        ("scheduler=step", "scheduler.step_size=10", "scheduler.gamma=0.5"),
        lambda e: 0.1 * 0.5 ** (e // 10),
    ),
    "multistep": (
        ("scheduler=multistep", "scheduler.milestones=[5,15]", "scheduler.gamma=0.1"),
        lambda e: 0.1 * 0.1 ** sum(e >= m for m in (5, 15)),
    ),
    "exponential": (
        ("scheduler=exponential", "scheduler.gamma=0.9"),
        lambda e: 0.1 * 0.9**e,
    ),
    "cosine with warm-up": (
        (
            "scheduler=cosine",
            "scheduler.warmup_epochs=5",
            "scheduler.eta_min=0.01",
            "scheduler.T_max=30",
        ),
        lambda e: cosine_with_warmup(0.1, e, warmup=5, start_factor=0.1, t_max=30, eta_min=0.01),
    ),
}


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_uri(tmp_path_factory.mktemp("controls"))


@pytest.mark.parametrize("name", SCHEDULES)
def test_scheduler_lr_history_follows_the_formula(store_uri, name):
    overrides, formula = SCHEDULES[name]
    _, run = train_into(store_uri, "data=iris", "epochs=35", *overrides)
    lrs = cost_history(store_uri, run.info.run_id, "lr")
    assert len(lrs) == 36  # one a epoch, 0..35: the rate each epoch trained with
    assert lrs == pytest.approx([formula(e) for e in range(36)], rel=1e-9, abs=1e-15)
    assert len(set(lrs)) > 2  # it did change
    params = run.data.params
    assert params["scheduler"] == overrides[0].split("=")[1]
    assert params["scheduler._target_"].startswith("torch.optim.lr_scheduler.")


def test_scheduler_cosine_params_are_resolved_and_default_to_the_epochs(store_uri):
    _, run = train_into(store_uri, "data=iris", "epochs=12", "scheduler=cosine")
    params = run.data.params
    assert params["scheduler._target_"] == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert (params["scheduler.T_max"], params["scheduler.warmup_epochs"]) == ("12", "0")
    lrs = cost_history(store_uri, run.info.run_id, "lr")
    assert lrs[0] == 0.1
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)  # annealed to eta_min


def plateau_rule(val_costs, lr, *, factor, patience, threshold):
    """``ReduceLROnPlateau``'s rule (mode min, relative threshold, no cooldown): the lr each
    epoch trained with, given the validation costs seen after the epochs before it."""
    best, bad, lrs = math.inf, 0, []
    for value in val_costs:
        lrs.append(lr)
        if value < best * (1 - threshold):
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
    return lrs


def test_scheduler_plateau_cuts_the_lr_when_the_validation_cost_stalls(store_uri):
    overrides = ("scheduler=plateau", "scheduler.patience=3", "scheduler.factor=0.5")
    _, run = train_into(store_uri, *WINE, "epochs=80", *overrides)
    val_costs = cost_history(store_uri, run.info.run_id, "val_cost")
    lrs = cost_history(store_uri, run.info.run_id, "lr")
    assert lrs == plateau_rule(val_costs, 0.1, factor=0.5, patience=3, threshold=1e-4)
    assert lrs[-1] <= 0.025  # cut at least twice


def test_the_default_run_logs_no_lr_and_no_early_stopping_metrics(store_uri):
    _, run = train_into(store_uri, "debug=fast")
    assert set(run.data.metrics) == {"cost", "accuracy", "final_cost", "final_accuracy",
                                     "objective"}  # fmt: skip
    assert run.data.params["scheduler"] == "none"
    assert run.data.params["early_stopping.patience"] == "None"


# ----------------------------------------------------------------------------- early stopping


@pytest.fixture(scope="module")
def stopped_early(store_uri):
    return train_into(store_uri, *EARLY)


def test_early_stopping_stops_below_epochs_and_records_its_epochs(store_uri, stopped_early):
    _, run = stopped_early
    metrics = run.data.metrics
    best, stopped = int(metrics["best_epoch"]), int(metrics["stopped_epoch"])
    assert stopped < 200
    assert stopped == best + 5  # patience: five epochs without improvement
    val_costs = cost_history(store_uri, run.info.run_id, "val_cost")
    assert len(val_costs) == stopped + 1  # nothing logged after it stopped
    assert val_costs[best] == min(val_costs)
    assert all(v >= val_costs[best] for v in val_costs[best + 1 :])
    assert run.data.params["early_stopping.patience"] == "5"


def test_early_stopping_restores_the_best_epochs_model(store_uri, stopped_early):
    _, run = stopped_early
    val_costs = cost_history(store_uri, run.info.run_id, "val_cost")
    best = int(run.data.metrics["best_epoch"])
    assert run.data.metrics["objective"] == min(val_costs) == val_costs[best]  # bit for bit
    # The logged model is the best epoch's: it gives that validation cost on the raw split.
    cfg, _ = compose_job(*EARLY)
    data, _ = build_data(cfg)
    mlflow.set_tracking_uri(store_uri)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert evaluate(model, data.val)["cost"] == pytest.approx(min(val_costs), rel=1e-6)


def test_early_stopping_without_restore_best_keeps_the_last_epochs_model(store_uri):
    _, run = train_into(store_uri, *EARLY, "early_stopping.restore_best=false")
    val_costs = cost_history(store_uri, run.info.run_id, "val_cost")
    assert run.data.metrics["stopped_epoch"] < 200
    assert run.data.metrics["objective"] == val_costs[-1] > min(val_costs)


def test_early_stopping_on_val_accuracy_with_mode_max(store_uri):
    _, run = train_into(store_uri, *EARLY, "early_stopping.monitor=val_accuracy",
                        "early_stopping.mode=max")  # fmt: skip
    accuracies = cost_history(store_uri, run.info.run_id, "val_accuracy")
    best = int(run.data.metrics["best_epoch"])
    assert accuracies[best] == max(accuracies)
    assert accuracies.index(max(accuracies)) == best  # the first epoch to reach it
    assert len(accuracies) == best + 6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("early_stopping.patience=5",), "early_stopping.patience=5 watches val_cost, but the "
         "data has no validation split (data.val_fraction=0). Fix: e.g. data.val_fraction=0.4"),
        (("data=iris", "early_stopping.patience=0"), "early_stopping.patience must be >= 1"),
        (("data=iris", "early_stopping.patience=5", "early_stopping.monitor=val_accuracy"),
         "early_stopping.monitor=val_accuracy needs early_stopping.mode=max, got min"),
        (("data=iris", "early_stopping.min_delta=-1"), "early_stopping.min_delta must be >= 0"),
        (("scheduler=plateau",), "scheduler=plateau watches the validation cost, but the data "
         "has no validation split"),
        (("data=iris", "scheduler=cosine",
          "scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
          "scheduler.warmup_epochs=3"),
         "scheduler.warmup_epochs does not combine with ReduceLROnPlateau"),
        (("scheduler=step", "scheduler.gamma=0"), "scheduler.gamma must be in (0, 1], got 0.0"),
        (("scheduler=step", "scheduler.step_size=0"), "scheduler.step_size must be >= 1"),
        (("scheduler=multistep", "scheduler.milestones=[20,10]"),
         "scheduler.milestones must be increasing epochs >= 1, got [20, 10]"),
        (("scheduler=cosine", "scheduler.warmup_epochs=-1"), "scheduler.warmup_epochs must be"),
        (("scheduler=cosine", "scheduler.T_max=0"), "scheduler.T_max must be >= 1"),
        (("data=iris", "scheduler=plateau", "scheduler.factor=1"), "scheduler.factor must be"),
    ],
)  # fmt: skip
def test_controls_bad_values_are_one_config_error_before_any_run(tmp_path, overrides, message):
    uri = sqlite_uri(tmp_path)
    with pytest.raises(ConfigError) as raised:
        train_into(uri, *overrides)
    assert message in str(raised.value)
    assert "Fix:" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was created


def test_scheduler_of_your_own_is_one_yaml_file(tmp_path, store_uri):
    """A user's scheduler/linear.yaml (any torch.optim.lr_scheduler class and its keywords)."""
    own = tmp_path / "my_conf" / "scheduler"
    own.mkdir(parents=True)
    (own / "linear.yaml").write_text(
        "_target_: torch.optim.lr_scheduler.LinearLR\nstart_factor: 1.0\nend_factor: 0.5\n"
        "total_iters: 10\n"
    )
    uri = store_uri
    _, run = train_into(uri, "scheduler=linear", f"hydra.searchpath=[file://{own.parent}]",
                        "epochs=12")  # fmt: skip
    assert cost_history(uri, run.info.run_id, "lr") == pytest.approx(
        [0.1 * (1 - 0.5 * min(e, 10) / 10) for e in range(13)], rel=1e-9
    )
    assert run.data.params["scheduler"] == "linear"
    assert run.data.params["scheduler.end_factor"] == "0.5"


# ----------------------------------------------------------------------------- stop and resume


def builds(*configs: tuple[str, ...]):
    """Each config's model, optimizer, shuffler, scheduler and early stopping as a run alone
    builds them, on shared data."""
    cfgs = [compose_job(*overrides)[0] for overrides in configs]
    for cfg in cfgs:
        validate(cfg)
    data, scaler = build_data(cfgs[0])
    built = [build_run(cfg, data, scaler) for cfg in cfgs]
    return cfgs, built, built[0].prepared()


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def alone(configs, start=None, stop_at=None, saved=None):
    """Each config trained by ``fit`` (from ``start``'s states; asked to stop after ``stop_at``,
    its checkpoint in ``saved``): its records, final weights (best restored) and early stop."""
    cfgs, built, inputs = builds(*configs)
    results = []
    for i, (cfg, b) in enumerate(zip(cfgs, built, strict=True)):
        first = 0
        if start is not None:
            first = 1 + checkpoint.restore(start[i], b.model, b.optimizer, b.batches, b.controls)
        records = {}

        def save(epoch, b=b):
            state = checkpoint.capture(epoch, b.model, b.optimizer, b.batches, b.controls)
            saved.append(checkpoint.from_bytes(checkpoint.to_bytes(state)))

        fit(b.model, b.optimizer, inputs, epochs=cfg.epochs, batch_size=cfg.batch_size,
            log_every=cfg.log_every, generator=b.batches, progress=Silent(stop_at),
            record=lambda epoch, values, ms, r=records: r.__setitem__(epoch, values),
            start_epoch=first, save=save if saved is not None else None,
            scheduler=b.scheduler, early=b.early)  # fmt: skip
        results.append(finished(records, b))
    return results


def finished(records, b):
    if b.early is not None:
        b.early.restore(b.model)
    early = (b.early.best_epoch, b.early.stopped_epoch) if b.early else None
    return records, weights(b.model), early


def together(configs, start=None, stop_at=None, saved=None):
    """The configs trained as one batched group: the same for each job, and the jobs."""
    cfgs, built, inputs = builds(*configs)
    if start is not None:
        for b, state in zip(built, start, strict=True):
            checkpoint.restore(state, b.model, b.optimizer, b.batches, b.controls)
    records = [{} for _ in built]
    jobs = [
        batched.Job(b.model, b.optimizer, b.batches,
                    lambda epochs, r=r: r.update((e, values) for e, _, values in epochs),
                    scheduler=b.scheduler, early=b.early)
        for b, r in zip(built, records, strict=True)
    ]  # fmt: skip

    def save(epoch, batch):
        batch.put_back()
        saved[:] = [
            checkpoint.from_bytes(checkpoint.to_bytes(checkpoint.capture(
                epoch, b.model, b.optimizer, b.batches, b.controls)))
            for b in built
        ]  # fmt: skip

    batch = batched.fit_group(
        jobs, inputs, epochs=cfgs[0].epochs, batch_size=cfgs[0].batch_size, save=save,
        start_epoch=start[0]["epoch"] + 1 if start else 0,
        on_epoch=lambda epoch: epoch == stop_at and stop.request(signal.SIGINT),
    )  # fmt: skip
    batch.put_back()
    return [finished(r, b) for r, b in zip(records, built, strict=True)], jobs


# Full batch, Adam: schedules, plateau and early stopping side by side, and a job with none.
# Jobs 0 and 4 start in one block (equal hyperparameters), then part when their plateaus cut
# their rates at other epochs.
FULL_BATCH_GROUP = tuple(
    (*WINE, "epochs=70", *extra)
    for extra in (
        ("seed=1", "scheduler=plateau", "scheduler.patience=2", "scheduler.factor=0.5"),
        ("seed=2", "early_stopping.patience=5"),
        ("seed=3", "scheduler=cosine", "scheduler.warmup_epochs=5"),
        ("seed=1",),
        ("seed=2", "scheduler=plateau", "scheduler.patience=2", "scheduler.factor=0.5"),
        ("seed=3", "early_stopping.patience=4", "scheduler=step", "scheduler.step_size=10",
         "scheduler.gamma=0.5"),
    )
)  # fmt: skip
# Mini-batches, SGD with momentum (its buffers part with the blocks), iris.
MINI_BATCH_GROUP = tuple(
    ("data=iris", "batch_size=16", "optim.lr=0.3", "optim.momentum=0.9", "epochs=60", *extra)
    for extra in (
        ("seed=1", "scheduler=plateau", "scheduler.patience=1", "scheduler.factor=0.5"),
        ("seed=2", "scheduler=plateau", "scheduler.patience=1", "scheduler.factor=0.5"),
        ("seed=3", "early_stopping.patience=3", "early_stopping.min_delta=0.001"),
        ("seed=4", "scheduler=exponential", "scheduler.gamma=0.95",
         "early_stopping.patience=3", "early_stopping.min_delta=0.001"),
    )
)  # fmt: skip


@pytest.mark.parametrize(
    "configs",
    [
        pytest.param(FULL_BATCH_GROUP, id="full-batch adam"),
        pytest.param(MINI_BATCH_GROUP, id="mini-batch sgd momentum", marks=pytest.mark.slow),
    ],
)
def test_controls_in_a_batched_group_equal_each_job_trained_alone(configs):
    solo = alone(configs)
    grouped, _ = together(configs)
    for i, ((records, final, early), (b_records, b_final, b_early)) in enumerate(
        zip(solo, grouped, strict=True)
    ):
        assert b_records == records, i  # every epoch's cost, accuracy, val_* and lr
        assert all(torch.equal(a, b) for a, b in zip(final, b_final, strict=True)), i
        assert b_early == early, i
    # Not vacuous: a job stopped early while others trained on, and two jobs that started in
    # one block (the same rate) parted when their plateaus cut their rates at other epochs.
    lengths = [len(records) for records, _, _ in solo]
    assert min(lengths) < max(lengths)
    rates = [[v["lr"] for v in records.values()] for records, _, _ in solo if "lr" in records[0]]
    assert any(a[0] == b[0] and a != b for a in rates for b in rates)


def test_controls_of_a_run_alone_resume_from_its_checkpoint_as_if_never_stopped():
    """A run alone, asked to stop at epoch 30 (its checkpoint kept), then resumed from it: the
    same records after epoch 30 and the same final (best) model as a run never stopped."""
    configs = (FULL_BATCH_GROUP[5], FULL_BATCH_GROUP[0])
    whole = alone(configs)
    for config, expected in zip(configs, whole, strict=True):
        saved = []
        with pytest.raises(stop.Stop):
            alone((config,), stop_at=30, saved=saved)
        assert saved[-1]["epoch"] == 30
        assert "scheduler" in saved[-1]
        ((records, final, early),) = alone((config,), start=[saved[-1]])
        assert records == {e: v for e, v in expected[0].items() if e > 30}
        assert all(torch.equal(a, b) for a, b in zip(final, expected[1], strict=True))
        assert early == expected[2]


@pytest.mark.slow
def test_controls_of_a_batched_group_resume_from_its_checkpoints_as_if_never_stopped():
    """Stopped at epoch 55 (after one job stopped early), every job resumed from its own
    checkpoint: the stopped job stays stopped and records nothing, the others train on."""
    configs = FULL_BATCH_GROUP
    whole, _ = together(configs)
    saved = []
    with pytest.raises(stop.Stop):
        together(configs, stop_at=55, saved=saved)
    assert {state["epoch"] for state in saved} == {55}
    assert any((state.get("early_stopping") or {}).get("stopped_epoch") for state in saved)
    rest, _ = together(configs, start=saved)
    for (records, final, early), (resumed, resumed_final, resumed_early) in zip(
        whole, rest, strict=True
    ):
        assert resumed == {e: v for e, v in records.items() if e > 55}
        assert all(torch.equal(a, b) for a, b in zip(final, resumed_final, strict=True))
        assert resumed_early == early


# ----------------------------------------------------------------------------- real processes

# Iris in mini-batches with Adam, a warm-up then a cosine; digits with Adam, which stops early
# after ~17 epochs. A checkpoint every epoch (every_s=0.001, each a few ms of writes; the
# resumed run too), so that a failpoint kills each at a known epoch.
SCHEDULED = ("data=iris", "batch_size=16", "optim=adam", "scheduler=cosine",
             "scheduler.warmup_epochs=5", "epochs=20")  # fmt: skip
STOPPING = ("data=digits", "optim=adam", "optim.lr=0.05", "early_stopping.patience=5",
            "epochs=200")  # fmt: skip
EVERY_EPOCH = ("checkpoint.every_s=0.001",)


def killed_and_resumed(tmp_path, config: tuple, kill_at: str):
    """``config`` trained by ``python -m pipeline.train``, killed with SIGKILL at the failpoint
    ``kill_at``, then ``python -m pipeline.resume RUN_ID``: the store's URI, the run, and the
    epoch its checkpoint had when it was killed."""
    uri = sqlite_uri(tmp_path / "mlruns")
    process = start_cli(*config, *EVERY_EPOCH, cwd=tmp_path, env={"PIPELINE_KILL_AT": kill_at})
    try:
        process.wait(timeout=300)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    (killed,) = runs_of(uri)
    assert killed.info.status == "RUNNING"  # nothing could close it
    saved = json.loads(killed.data.tags["checkpoint"])["epoch"]
    result = run_cli(killed.info.run_id, cwd=tmp_path, module="pipeline.resume")
    assert result.returncode == 0, result.stderr
    assert f"({killed.info.run_id}) from epoch {saved + 1}" in result.stdout
    (run,) = runs_of(uri)
    assert run.info.status == "FINISHED"
    return uri, run, saved


def assert_same_histories(uri, run, expected_uri, expected, keys) -> None:
    for key in keys:
        assert cost_history(uri, run.info.run_id, key) == cost_history(
            expected_uri, expected.info.run_id, key
        ), key


@pytest.mark.slow
def test_scheduler_kill_9_then_resume_logs_the_uninterrupted_lr_and_cost(tmp_path, store_uri):
    _, expected = train_into(store_uri, *SCHEDULED)
    uri, run, saved = killed_and_resumed(tmp_path, SCHEDULED, "checkpoint:12")
    assert 5 < saved < 20  # past the warm-up
    assert_same_histories(uri, run, store_uri, expected, ("lr", "cost", "val_cost"))
    assert run.data.metrics == expected.data.metrics


@pytest.mark.slow
def test_early_stopping_kill_9_then_resume_stops_where_it_would_have(tmp_path, store_uri):
    """Killed between its best epoch and its stop: the resumed run waits out the rest of its
    patience, stops at the same epoch and restores the same best model."""
    _, expected = train_into(store_uri, *STOPPING)
    best, stopped = (int(expected.data.metrics[k]) for k in ("best_epoch", "stopped_epoch"))
    uri, run, saved = killed_and_resumed(tmp_path, STOPPING, f"checkpoint:{stopped - 2}")
    assert best < saved < stopped
    assert_same_histories(uri, run, store_uri, expected, ("cost", "val_cost", "val_accuracy"))
    assert run.data.metrics == expected.data.metrics  # best_epoch, stopped_epoch, objective, ...


@pytest.mark.slow
def test_controls_in_a_batched_sweep_are_the_runs_each_job_makes_alone(tmp_path, store_uri):
    """``-m`` over schedules with early stopping on: one batched group; each job's run has the
    histories and final metrics of the same job trained alone, and a job that stopped early
    logged nothing after it while the others went on."""
    config = (*WINE, "epochs=70", "early_stopping.patience=5")
    sweep = ("optim.lr=0.1,0.05", "scheduler=none,exponential")
    result = run_cli("-m", *config, *sweep, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Training jobs 0-3 as one batch of 4" in result.stdout
    uri = sqlite_uri(tmp_path / "mlruns")
    _, runs = sweep_runs(uri)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    lengths = set()
    for run in runs:
        overrides = run.data.tags["hydra.overrides"].split()
        _, alone_run = train_into(store_uri, *config, *overrides)
        keys = ["cost", "val_cost"] + (["lr"] if "scheduler=exponential" in overrides else [])
        assert_same_histories(uri, run, store_uri, alone_run, keys)
        assert run.data.metrics == alone_run.data.metrics
        lengths.add(len(cost_history(uri, run.info.run_id)))
        assert len(cost_history(uri, run.info.run_id)) == run.data.metrics["stopped_epoch"] + 1
    assert len(lengths) > 1  # they stopped at different epochs


@pytest.mark.slow
def test_controls_rerun_reproduces_a_scheduled_early_stopped_run(tmp_path, store_uri):
    from pipeline import rerun as rerun_command

    _, original = train_into(store_uri, *EARLY, "scheduler=step", "scheduler.step_size=20")
    status = rerun_command.main([original.info.run_id, "--tracking-uri", store_uri])
    assert status == 0  # the cost histories are equal
    (rerun,) = [
        r for r in runs_of(store_uri) if r.data.tags.get("rerun_of") == original.info.run_id
    ]
    assert rerun.data.params == original.data.params
    assert rerun.data.metrics == original.data.metrics
    assert_same_histories(store_uri, rerun, store_uri, original, ("lr", "val_cost"))
