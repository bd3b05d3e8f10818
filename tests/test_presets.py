"""The shipped presets run as the README says: ``experiment=iris_mlp`` trains an MLP with Adam
on iris, ``-m experiment=lr_seed_sweep`` sweeps 2 learning rates x 3 seeds (composition of every
preset: test_config)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow.pytorch
import pytest
import torch

from conftest import cost_history, sqlite_uri, sweep_runs, train_into
from pipeline import train as train_command
from pipeline.core.model import Standardize
from pipeline.runtime import interrupts


@contextmanager
def process_state_kept() -> Iterator[None]:
    """What a Hydra app changes in its process, put back afterwards: the logging set-up (Hydra
    configures it from conf/hydra/job_logging) and the stop signals' handlers (a sweep's jobs
    install the pipeline's); handlers added meanwhile (the jobs' log files) are closed."""
    manager = logging.root.manager
    loggers = [
        logging.root,
        *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    saved = [(x, x.level, list(x.handlers), x.propagate, x.disabled) for x in loggers]
    handlers = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for logger, level, kept, propagate, disabled in saved:
            for added in set(logger.handlers) - set(kept):
                added.close()
            logger.setLevel(level)
            logger.handlers[:] = kept
            logger.propagate, logger.disabled = propagate, disabled


def multirun(monkeypatch: pytest.MonkeyPatch, cwd: Path, *overrides: str) -> None:
    """``python -m pipeline.train -m overrides``, in this process: Hydra's real multirun (its
    basic launcher runs the jobs one after another, here)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["pipeline.train", "-m", *overrides])
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")  # conf/ next to the file, as when run
    with process_state_kept():
        train_command.main()


@pytest.mark.slow
def test_the_lr_seed_sweep_runs_its_six_jobs(tmp_path, monkeypatch):
    uri = sqlite_uri(tmp_path / "store")
    sweep_dir = tmp_path / "sweep"
    handler = signal.getsignal(signal.SIGTERM)
    multirun(monkeypatch, tmp_path, "experiment=lr_seed_sweep", "epochs=5",
             f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    parent, runs = sweep_runs(uri)
    assert parent.info.run_name == "sweep experiment=lr_seed_sweep epochs=5"
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs_finished"] == 6
    pairs = [(lr, seed) for lr in ("0.01", "0.1") for seed in ("1", "2", "3")]
    assert sorted(r.info.run_name for r in runs) == [f"optim.lr={lr},seed={s}" for lr, s in pairs]
    assert sorted((r.data.params["optim.lr"], r.data.params["seed"]) for r in runs) == pairs
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "5"
        assert (
            run.info.run_name
            == f"optim.lr={run.data.params['optim.lr']},seed={run.data.params['seed']}"
        )
        assert len(cost_history(uri, run.info.run_id)) == 6  # epochs 0 to 5
    assert len({r.data.metrics["final_cost"] for r in runs}) == 6
    recorded = json.loads((sweep_dir / "sweep.json").read_text())
    assert (recorded["swept"], recorded["jobs"], recorded["failed_jobs"]) == (
        ["optim.lr", "seed"],
        6,
        [],
    )
    assert signal.getsignal(signal.SIGTERM) == handler  # put back for the next tests


@pytest.mark.slow
def test_iris_mlp_trains_its_mlp_with_adam_on_mini_batches(tmp_path):
    uri = sqlite_uri(tmp_path)
    outcome, run = train_into(uri, "experiment=iris_mlp")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["data"], params["model"], params["optim"]) == ("iris", "mlp", "adam")
    assert (params["model.hidden"], params["epochs"], params["batch_size"]) == ("[16]", "300", "16")
    assert (params["optim.lr"], params["optim._target_"]) == ("0.01", "torch.optim.Adam")
    assert len(cost_history(uri, run.info.run_id)) == 301
    assert run.data.metrics["test_accuracy"] >= 0.9
    assert outcome.value == run.data.metrics["objective"] == run.data.metrics["val_cost"]
    scaler, mlp = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert isinstance(scaler, Standardize)  # iris is standardized
    shapes = [tuple(p.shape) for p in mlp.parameters()]
    assert shapes == [(16, 4), (16,), (3, 16), (3,)]  # 4 features -> 16 hidden -> 3 classes
    assert [type(layer) for layer in mlp] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
