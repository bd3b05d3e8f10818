"""The batched loop: every job of a group trains as it would alone, bit for bit; a job that
diverges fails alone; a stopped group resumes from its checkpoints; what cannot batch trains
one job at a time."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import compose_job, cost_history, run_cli, sqlite_uri, sweep_runs
from pipeline.core import batched, checkpoint, stop
from pipeline.core.loop import fit
from pipeline.stage import build_data, build_run


class Silent:
    def update(self, epoch: int, cost: torch.Tensor) -> None: ...

    def clear(self) -> None: ...


@pytest.mark.parametrize("n", [*range(1, 40), 255, 256, 257, 4097])
def test_the_cost_is_summed_in_cross_entropys_order(n):
    generator = torch.Generator().manual_seed(n)
    logits = torch.randn(4, n, 3, generator=generator) * 5
    labels = torch.randint(0, 3, (4, n), generator=generator)
    alone = torch.stack([F.cross_entropy(logits[j], labels[j]) for j in range(4)])
    assert torch.equal(batched.mean_cost(logits, labels), alone)


def built_jobs(*configs: tuple[str, ...]):
    """Each config's model, optimizer and shuffler as a run alone builds them, on shared data."""
    cfgs = [compose_job(*overrides)[0] for overrides in configs]
    data, scaler = build_data(cfgs[0])
    builts = [build_run(cfg, data, scaler) for cfg in cfgs]
    inputs = builts[0].prepared()
    return cfgs, builts, inputs


def trained_alone(configs):
    """Each config trained by ``fit``: its records and final weights."""
    cfgs, builts, inputs = built_jobs(*configs)
    results = []
    for cfg, built in zip(cfgs, builts, strict=True):
        records = {}
        fit(built.model, built.optimizer, inputs, epochs=cfg.epochs, batch_size=cfg.batch_size,
            log_every=cfg.log_every, generator=built.batches, progress=Silent(),
            record=lambda epoch, values, ms, r=records: r.__setitem__(epoch, values))  # fmt: skip
        results.append((records, [p.detach().clone() for p in built.model.parameters()]))
    return results


def trained_batched(configs, start=None, stop_at=None, saved=None):
    """The configs trained as one group: each job's records and final weights."""
    cfgs, builts, inputs = built_jobs(*configs)
    if start is not None:
        for built, state in zip(builts, start, strict=True):
            checkpoint.restore(state, built.model, built.optimizer, built.batches)
    records = [{} for _ in builts]
    jobs = [
        batched.Job(b.model, b.optimizer, b.batches,
                    lambda epochs, r=r: r.update((e, values) for e, _, values in epochs))
        for b, r in zip(builts, records, strict=True)
    ]  # fmt: skip

    def save(epoch, batch):
        batch.put_back()
        saved[:] = [
            checkpoint.from_bytes(checkpoint.to_bytes(
                checkpoint.capture(epoch, b.model, b.optimizer, b.batches)))
            for b in builts
        ]  # fmt: skip

    batch = batched.fit_group(
        jobs, inputs, epochs=cfgs[0].epochs, batch_size=cfgs[0].batch_size,
        start_epoch=start[0]["epoch"] + 1 if start else 0, save=save,
        on_epoch=lambda epoch: epoch == stop_at and stop.request(signal.SIGINT),
    )  # fmt: skip
    batch.put_back()
    return [(r, [p.detach().clone() for p in b.model.parameters()]) for r, b in zip(
        records, builts, strict=True)], jobs  # fmt: skip


SWEEPS = {
    "reference sgd": ((), ("optim.lr=0.01",), ("optim.lr=0.3", "seed=2")),
    "momentum nesterov decay": tuple(
        ("optim.momentum=0.9", "optim.nesterov=true", "optim.weight_decay=0.001", lr, seed)
        for lr in ("optim.lr=0.1", "optim.lr=0.01")
        for seed in ("seed=1", "seed=2")
    ),
    "adam": (("optim=adam",), ("optim=adam", "optim.lr=0.1", "seed=3")),
    "adamw mlp on wine": tuple(
        ("data=wine", "model=mlp", "optim=adamw", "epochs=60", lr, "seed=2")
        for lr in ("optim.lr=0.01", "optim.lr=0.001")
    ),
    "iris mini-batches": tuple(
        ("data=iris", "batch_size=16", "epochs=80", lr, seed)
        for lr in ("optim.lr=0.1", "optim.lr=0.3")
        for seed in ("seed=1", "seed=5")
    ),
    "iris_mlp": tuple(("experiment=iris_mlp", "epochs=30", seed) for seed in ("seed=1", "seed=2")),
}


INNER_LOOP = ("reference sgd", "iris_mlp")  # the others are marked slow


@pytest.mark.parametrize(
    "configs",
    [
        pytest.param(configs, id=name, marks=() if name in INNER_LOOP else pytest.mark.slow)
        for name, configs in SWEEPS.items()
    ],
)
def test_every_job_of_a_group_trains_as_it_would_alone_bit_for_bit(configs):
    alone = trained_alone(configs)
    together, _ = trained_batched(configs)
    for (records, weights), (batch_records, batch_weights) in zip(alone, together, strict=True):
        assert batch_records == records  # every epoch's cost, accuracy and val_* metrics
        assert all(torch.equal(a, b) for a, b in zip(weights, batch_weights, strict=True))


@pytest.mark.slow  # seconds: in CI, not the inner loop
def test_a_stopped_group_resumed_from_its_checkpoints_equals_one_never_stopped():
    configs = SWEEPS["iris mini-batches"]
    whole, _ = trained_batched(configs)
    saved = []
    with pytest.raises(stop.Stop):
        trained_batched(configs, stop_at=40, saved=saved)
    assert {state["epoch"] for state in saved} == {40}
    rest, _ = trained_batched(configs, start=saved)
    for (records, weights), (resumed, resumed_weights) in zip(whole, rest, strict=True):
        assert resumed == {e: v for e, v in records.items() if e > 40}
        assert all(torch.equal(a, b) for a, b in zip(weights, resumed_weights, strict=True))


def test_a_diverging_job_fails_alone_and_the_others_train_on():
    configs = (("optim.lr=1e38", "epochs=50"), ("optim.lr=0.1", "epochs=50"))
    ((diverged, _), (healthy, _)), jobs = trained_batched(configs)
    assert jobs[1].failure is None
    assert str(jobs[0].failure).startswith("Training diverged: cost is nan at epoch")
    last = max(diverged)  # recorded up to its first non-finite cost, nothing after
    assert math.isnan(diverged[last]["cost"])
    assert all(math.isfinite(values["cost"]) for epoch, values in diverged.items() if epoch < last)
    assert healthy == trained_alone(configs[1:])[0][0]


def test_what_cannot_batch_says_why():
    _, builts, _ = built_jobs(("optim=lbfgs",), ("model=mlp", "model.dropout=0.5"))
    assert batched.why_not_batchable(builts[0].model, builts[0].optimizer) == (
        "LBFGS has no batched update (SGD, Adam and AdamW have)"
    )
    assert batched.why_not_batchable(builts[1].model, builts[1].optimizer) == (
        "dropout draws random numbers per job"
    )


@pytest.mark.slow
def test_a_sweep_that_cannot_batch_trains_one_job_at_a_time(tmp_path):
    result = run_cli("-m", "optim=lbfgs", "seed=1,2", "epochs=5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Jobs 0, 1 train one at a time: LBFGS has no batched update" in result.stdout
    _, runs = sweep_runs(sqlite_uri(tmp_path / "mlruns"))
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert not any("batch.jobs" in r.data.tags for r in runs)


JOB_OVERRIDES = [
    ["optim.lr=0.1", "seed=2"],
    ["optim=adam", "optim.lr=0.003"],
    ["experiment=iris_mlp", "seed=3", "+tracking.tags.purpose=test"],
    ["data=iris", "batch_size=16", "model=mlp", "model.hidden=[8,4]"],
]


def test_a_job_composed_once_per_set_of_group_choices_equals_hydras_own_composition():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_launcher.compose import Composer
    from pipeline.config import CONF_DIR, register_configs
    from pipeline.config.copies import task_part

    register_configs()

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        master = compose("config", return_hydra_config=True)
        OmegaConf.update(master, "hydra.job.config_name", "config", force_add=True)
        loader = GlobalHydra.instance().config_loader()
        composer = Composer(loader, master)
        for overrides in JOB_OVERRIDES:
            ours, hydras = composer(overrides), loader.load_sweep_config(master, overrides)
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras)
            task = composer.task(overrides)  # the task's part alone, as run_job gives it
            assert "hydra" not in task
            assert OmegaConf.is_struct(task)
            assert OmegaConf.to_yaml(task) == OmegaConf.to_yaml(task_part(hydras))
        assert len(composer.composed) == 4  # none, optim=adam, experiment=..., data+model
        assert composer(["optim.lr=0.5"]).optim.lr == 0.5
        assert composer.task(["optim.lr=0.5"]).optim.lr == 0.5
        assert composer.task(["optim.lr=0.5", "hydra.job.chdir=true"]).optim.lr == 0.5
        assert len(composer.composed) == 4  # values only: the first composition, copied
        for compose in composer, composer.task:
            with pytest.raises(ConfigCompositionException, match=r"optim\.lrr"):
                compose(["optim.lrr=0.5"])
            with pytest.raises(ConfigCompositionException, match=r"seed"):
                compose(["seed=abc"])


def test_job_files_from_a_template_equal_the_whole_dump(tmp_path, monkeypatch):
    """A job's ``.hydra/config.yaml`` and ``hydra.yaml`` come from its composition's template
    (the job's own values put in) and equal ``OmegaConf.to_yaml`` of its config byte for byte;
    what a template cannot render (a new key, a list, a long line with spaces) is dumped."""
    import textwrap

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_launcher.compose import Composer
    from hydra_plugins.pipeline_launcher.vectorized import job_config
    from pipeline.config import CONF_DIR, register_configs

    register_configs()
    monkeypatch.chdir(tmp_path)
    long = "'" + "a b " * 30 + "'"  # a line over 80 characters, with spaces: PyYAML breaks it
    jobs = [["optim.lr=0.1", "seed=2"], ["optim.lr=1e-05", "seed=3"], ["optim.lr=-0.0", "seed=1"],
            ["seed=7", "optim.lr=2"], [f"tracking.run_name={long}"], ["tracking.run_name='123'"],
            ["model.bias=false", "data.val_fraction=0.25"], *JOB_OVERRIDES]  # fmt: skip
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        master = compose("config", return_hydra_config=True)
        OmegaConf.update(master, "hydra.job.config_name", "config", force_add=True)
        composer = Composer(GlobalHydra.instance().config_loader(), master)
        for num, overrides in enumerate(jobs):
            task = composer.task(overrides)
            config = job_config(composer(overrides), num, task=task, composer=composer)
            hydra_dir = tmp_path / config.hydra.runtime.output_dir / ".hydra"
            assert (hydra_dir / "config.yaml").read_text() == OmegaConf.to_yaml(task)
            hydra_yaml = "hydra:\n" + textwrap.indent(OmegaConf.to_yaml(config.hydra), "  ")
            assert (hydra_dir / "hydra.yaml").read_text() == hydra_yaml
    templates = next(iter(composer.composed.values())).templates
    assert len(templates) >= 4  # the hydra node's; the task's for lr+seed, seed+lr, bias+val
    assert all(t.pieces is not None for t in templates.values())  # none found wrong


def test_a_yaml_template_renders_the_whole_dump_or_nothing():
    import yaml

    from pipeline.tracking.run.yaml_text import YamlTemplate

    def dump(structure):
        return yaml.safe_dump(structure, default_flow_style=False)

    base = {"a": {"b": 1, "c": "x"}, "items": ["p", "q"], "z": 2.5, "long_key_" * 8: "v"}
    template = YamlTemplate(base, [("a", "c"), ("items",), ("long_key_" * 8,)], dump)
    values = ["plain", "123", "true", "", "-0.0", "x: y", "a b " * 30, "é", None, 0.0, -0.0, 1e-05,
              True, 7, ["x"], {"k": 1}]  # fmt: skip
    rendered = 0
    for value in values:
        for items in (["one"], ["one", value], []):
            for last in ("v", value):
                structure = {**base, "a": {"b": 1, "c": value}, "items": items}
                structure["long_key_" * 8] = last
                text = template.render([value, items, last])
                if text is not None:
                    rendered += 1
                    assert text == dump(structure), (value, items, last)
    assert rendered >= 40  # of 96: not the empty lists, containers, long lines


def test_a_sweeps_heap_is_frozen_while_it_runs_and_unfrozen_after():
    import gc

    from pipeline.group import keep, long_lived_heap, release_heap

    keep()  # outside a sweep: nothing is frozen
    assert gc.get_freeze_count() == 0
    with long_lived_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with long_lived_heap():  # a launcher's block around group.launch's own
            kept = [[] for _ in range(1000)]
            keep()
            assert gc.get_freeze_count() > frozen + 900
        release_heap()  # inside a block: nothing
        assert gc.get_freeze_count() > frozen + 900
    assert gc.get_freeze_count() > frozen + 900  # through the sweep's summary
    del kept
    release_heap()
    assert gc.get_freeze_count() == 0


def artifact_dir(run) -> Path:
    from mlflow.utils.file_utils import local_file_uri_to_path

    return Path(local_file_uri_to_path(run.info.artifact_uri))


@pytest.mark.slow
def test_a_batched_job_is_the_run_the_basic_launcher_makes(tmp_path):
    """Everything MLflow shows of a run: params, tags, every metric's history, artifacts,
    models and dataset inputs, as the same job trained by ``hydra/launcher=basic``."""
    from mlflow.tracking import MlflowClient

    sweep = ("-m", "optim.lr=0.01,0.1", "data=iris", "epochs=30")
    for launcher, where in ((), "vectorized"), (("hydra/launcher=basic",), "basic"):
        (tmp_path / where).mkdir()
        result = run_cli(*sweep, *launcher, cwd=tmp_path / where)
        assert result.returncode == 0, result.stderr
    batched_uri, basic_uri = (sqlite_uri(tmp_path / w / "mlruns") for w in ("vectorized", "basic"))
    ours = {r.info.run_name: r for r in sweep_runs(batched_uri)[1]}
    theirs = {r.info.run_name: r for r in sweep_runs(basic_uri)[1]}
    assert sorted(ours) == sorted(theirs) == ["optim.lr=0.01", "optim.lr=0.1"]
    for name, run in ours.items():
        other = theirs[name]
        assert run.info.status == other.info.status == "FINISHED"
        assert run.data.params == other.data.params
        assert set(run.data.tags) - set(other.data.tags) == {"batch.jobs"}
        assert run.data.tags["batch.jobs"] == "2"
        assert run.data.metrics == other.data.metrics
        for key in run.data.metrics:
            assert cost_history(batched_uri, run.info.run_id, key) == cost_history(
                basic_uri, other.info.run_id, key
            )
        paths = [
            sorted(a.path for a in MlflowClient(uri).list_artifacts(r.info.run_id))
            for uri, r in ((batched_uri, run), (basic_uri, other))
        ]
        assert paths[0] == paths[1]
        assert "test_report.json" in paths[0]
        for path in ("config.yaml", "hydra/config.yaml"):  # the same text, whoever wrote it
            texts = [(artifact_dir(r) / path).read_text() for r in (run, other)]
            assert texts[0] == texts[1]
        assert len(run.outputs.model_outputs) == len(other.outputs.model_outputs) == 2
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == [
            d.dataset.name for d in other.inputs.dataset_inputs
        ]


FOLDS = {  # iris, 3 folds: 80 training rows each (wine's 3 folds differ: 94, 95, 95)
    "full batch sgd": ("data=iris", "cv.folds=3", "epochs=30"),
    "mlp adam mini-batches early stopping": (
        "data=iris", "cv.folds=3", "epochs=40", "model=mlp", "optim=adam", "optim.lr=0.05",
        "batch_size=16", "early_stopping.patience=3", "scheduler=step", "scheduler.step_size=5",
    ),
}  # fmt: skip


def fold_builts(overrides: tuple[str, ...]):
    """The config and each fold's build (its rows, standardized with their own statistics)."""
    from pipeline.core.data import training_part
    from pipeline.cv import assignment_of, build_fold

    cfg, _ = compose_job(*overrides)
    part = training_part(build_data(cfg)[0])
    assignment = assignment_of(cfg, part)
    return cfg, [build_fold(cfg, part, assignment, fold) for fold in (1, 2, 3)]


@pytest.mark.parametrize("overrides", FOLDS.values(), ids=FOLDS.keys())
def test_jobs_with_their_own_rows_train_as_each_would_alone_bit_for_bit(overrides):
    """The folds of a cross-validation as one group (``Job.data``): each fold's records and
    weights are those of the fold trained alone by ``fit``, early stopping and schedule too."""
    cfg, builts = fold_builts(overrides)
    alone = []
    for built in builts:
        records = {}
        fit(built.model, built.optimizer, built.prepared(), epochs=cfg.epochs,
            batch_size=cfg.batch_size, log_every=cfg.log_every, generator=built.batches,
            progress=Silent(), scheduler=built.scheduler, early=built.early,
            record=lambda epoch, values, ms, r=records: r.__setitem__(epoch, values))  # fmt: skip
        if built.early is not None:
            built.early.restore(built.model)
        alone.append((records, [p.detach().clone() for p in built.model.parameters()]))
    cfg, builts = fold_builts(overrides)
    records = [{} for _ in builts]
    jobs = [
        batched.Job(b.model, b.optimizer, b.batches,
                    lambda epochs, r=r: r.update((e, values) for e, _, values in epochs),
                    scheduler=b.scheduler, early=b.early, data=b.prepared())
        for b, r in zip(builts, records, strict=True)
    ]  # fmt: skip
    batched.fit_group(jobs, None, epochs=cfg.epochs, batch_size=cfg.batch_size).put_back()
    for (expected, weights), got, built in zip(alone, records, builts, strict=True):
        assert got == expected  # every epoch's cost, accuracy, val_* metrics (and lr)
        if built.early is not None:
            built.early.restore(built.model)
        assert all(torch.equal(a, b) for a, b in zip(weights, built.model.parameters(),
                                                     strict=True))  # fmt: skip
    if cfg.early_stopping.patience is not None:  # the folds stopped, not all at once
        stops = {b.early.stopped_epoch for b in builts}
        assert None not in stops
        assert len(stops) > 1


def test_jobs_whose_rows_differ_in_number_do_not_stack():
    _, builts = fold_builts(("data=wine", "cv.folds=3"))
    assert sorted(len(b.data.train) for b in builts) == [94, 95, 95]
    with pytest.raises(ValueError, match="the jobs' train splits differ in shape: train them"):
        batched.stacked([b.prepared() for b in builts])
