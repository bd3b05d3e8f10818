"""Bad input across the whole surface: one clear message, exit status != 0, no traceback, no run
left RUNNING, earlier runs untouched. Plus secrets and signals during a sweep."""

from __future__ import annotations

import importlib
import signal
import time

import pandas as pd
import pytest

from conftest import cost_history, run_cli, runs_of, sqlite_uri, start_cli, sweep_runs, train_into
from pipeline.errors import PipelineError

CSV_FILES = {
    "empty.csv": "",
    "text.csv": "a,b,label\n1,x,0\n2,3,1\n",
    "holes.csv": "a,b,label\n1,,0\n2,3,1\n",
    "ragged.csv": "a,b,label\n1,2,0\n2,3,1,7\n",
    "nolabel.csv": "a,b,kind\n1,2,0\n2,3,1\n",
    "oneclass.csv": "a,b,label\n1,2,0\n2,3,0\n",
}

CLI, HERE = "in a process", "in this process"
# (arguments, command, what the message must say, how): every case is one line with a fix,
# exit status != 0 and nothing new in the store. "in a process" runs the command as a user
# does; "in this process" calls it (each kind of error has at least one case in a process).
BAD_INPUTS = [
    (["optim.lr=-0.1"], "train", "optim.lr must be > 0, got -0.1. Fix: e.g. optim.lr=0.1", CLI),
    (["optim.lr=abc"], "train", "Value 'abc' of type 'str' could not be converted to Float", CLI),
    (["epochs=1.5"], "train", "Value '1.5' of type 'float' could not be converted to Integer", CLI),
    (["epochs=0"], "train", "epochs must be >= 1, got 0", CLI),
    (["batch_size=0"], "train", "batch_size must be >= 1 (or null for full batch)", CLI),
    (["seed=-1"], "train", "seed must be in [0, 2**32)", CLI),
    (["optim=rmsprop"], "train", "Could not find 'optim/rmsprop'", CLI),
    (["data=mnist"], "train", "Could not find 'data/mnist'", CLI),
    (["hydra/launcher=nope"], "train", "Could not find 'hydra/launcher/nope'", CLI),
    (["epoch=10"], "train", "Could not override 'epoch'", CLI),
    (["+extra=1"], "train", "unknown key 'extra'", CLI),
    (["model=mlp", "model.activation=sigmoid"], "train", "expected one of [relu, tanh, gelu]", CLI),
    (["optim=lbfgs", "batch_size=32"], "train", "optim=lbfgs needs full-batch training", CLI),
    (["optim.nesterov=true"], "train", "optim.nesterov=true needs momentum", CLI),
    (["data=iris", "data.val_fraction=0.5", "data.test_fraction=0.45"], "train",
     "must leave >= 10% to train on", CLI),
    (["data.val_fraction=0.2"], "train", "cannot split 8 samples into stratified", HERE),
    (["device=cuda"], "train", "device=cuda but no CUDA GPU is available", CLI),
    (["data=csv"], "train", "data.path is required. Fix: pass data.path=<value>", CLI),
    (["optim._target_=torch.optim.NoSuch"], "train", "optim (torch.optim.NoSuch) cannot be built",
     HERE),
    (["data=csv", "data.path=missing.csv"], "train", "CSV error: file not found: missing.csv",
     HERE),
    (["data=csv", "data.path=empty.csv"], "train", "CSV error: empty.csv is empty", HERE),
    (["data=csv", "data.path=text.csv"], "train", "line 2, column 'b': 'x' is not a number", CLI),
    (["data=csv", "data.path=holes.csv"], "train", "line 2, column 'b': missing value", HERE),
    (["data=csv", "data.path=ragged.csv"], "train", "Expected 3 fields in line 3, saw 4", HERE),
    (["data=csv", "data.path=nolabel.csv"], "train", "has no column 'label' (columns: a, b, kind)",
     HERE),
    (["data=csv", "data.path=oneclass.csv"], "train", "column 'label' has a single class ('0')",
     HERE),
    (["data=parquet", "data.path=text.csv"], "train", "text.csv is not a Parquet file (Parquet",
     HERE),
    (["data=parquet", "data.path=text.parquet"], "train", "row 1, column 'b': 'x' is not a number",
     HERE),
    (["tracking.uri=nosuchscheme://x"], "train", "Tracking store error at nosuchscheme://x", HERE),
    (["tracking.uri=http://127.0.0.1:9"], "train", "Tracking server http://127.0.0.1:9 is unre",
     HERE),
    (["tracking.uri=sqlite:////proc/mlflow.db"], "train",
     "Tracking store error at sqlite:////proc/mlflow.db: [Errno 2] No such file", HERE),
    (["tracking.uri=\"sqlite:///file:{store}?mode=ro&uri=true\""], "train",
     "attempt to write a readonly database", CLI),
    (["0123456789abcdef"], "rerun", "No run '0123456789abcdef' in sqlite:///", HERE),
    (["0123456789abcdef", "text.csv"], "predict", "No run '0123456789abcdef'", HERE),
    (["0123456789abcdef", "text.csv", "--tracking-uri", "http://127.0.0.1:9"], "predict",
     "Tracking server http://127.0.0.1:9 is unreachable", HERE),
    (["text.csv"], "predict", "the following arguments are required: INPUT", CLI),
    (["x", "a.csv", "--colour", "red"], "predict", "unrecognized arguments: --colour red", CLI),
]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """A directory with one earlier FINISHED run in its default store, and the bad CSV files
    (and text.csv as Parquet)."""
    cwd = tmp_path_factory.mktemp("hardening")
    uri = sqlite_uri(cwd / "mlruns")
    train_into(uri, "epochs=20")
    for name, text in CSV_FILES.items():
        (cwd / name).write_text(text)
    pd.read_csv(cwd / "text.csv", dtype=str).to_parquet(cwd / "text.parquet")
    (earlier,) = runs_of(uri)
    return cwd, uri, earlier


def test_there_are_at_least_25_bad_inputs():
    assert len(BAD_INPUTS) >= 25
    assert len([case for case in BAD_INPUTS if case[3] == CLI]) >= 18


def error_here(module: str, args: list[str], uri: str) -> str:
    """The one-line error of the command, called in this process with the workspace's store."""
    if module == "train":
        store = None if any(a.startswith("tracking.uri=") for a in args) else uri
        with pytest.raises(PipelineError) as raised:
            train_into(store, *args)
        return str(raised.value)
    command = importlib.import_module(f"pipeline.{module}")
    with_store = args if "--tracking-uri" in args else [*args, "--tracking-uri", uri]
    with pytest.raises(PipelineError) as raised:
        command.main(with_store)
    return str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "module", "message", "how"), BAD_INPUTS,
                         ids=[" ".join(a) for a, *_ in BAD_INPUTS])  # fmt: skip
def test_bad_input_is_one_clear_error_and_loses_nothing(
    workspace, monkeypatch, args, module, message, how
):
    cwd, uri, earlier = workspace
    args = [a.format(store=cwd / "mlruns" / "mlflow.db") for a in args]
    if how == CLI:
        result = run_cli(*args, cwd=cwd, module=f"pipeline.{module}")
        output = result.stdout + result.stderr
        assert result.returncode not in (0, None)
        assert "Traceback" not in output
    else:
        monkeypatch.chdir(cwd)
        output = error_here(module, args, uri)
        assert "\n" not in output
    assert message in output
    assert (
        "Fix:" in output
        or "Available options" in output
        or "To append" in output
        or ("could not be converted" in output)
        or ("expected one of" in output)
    )
    runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FINISHED"]  # nothing new, nothing RUNNING
    assert runs[0].info.run_id == earlier.info.run_id
    assert runs[0].data.metrics == earlier.data.metrics
    assert runs[0].info.end_time == earlier.info.end_time


def test_hydra_full_error_shows_the_traceback(workspace):
    cwd, _, _ = workspace
    result = run_cli("optim.lr=-1", cwd=cwd, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "optim.lr must be > 0" in result.stderr


def test_a_single_diverging_run_fails_at_once_and_keeps_its_metrics(store):
    with pytest.raises(PipelineError) as raised:
        train_into(store, "optim.lr=1e38")
    assert "Training diverged: cost is nan at epoch 1. Fix: a smaller optim.lr" in str(raised.value)
    uri = store
    (run,) = runs_of(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("Training diverged")
    assert len(cost_history(uri, run.info.run_id)) == 2  # epochs 0 and 1, then it stopped


def test_secrets_never_reach_the_store(tmp_path):
    secret, password = "tok-4f9a8b7c6d", "hunter2hunter2"
    env = {"MY_SERVICE_TOKEN": secret}
    uri = sqlite_uri(tmp_path / "store")
    result = run_cli(
        f"tracking.uri={uri}",
        "epochs=5",
        "+tracking.tags.owner=${oc.env:MY_SERVICE_TOKEN}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (run,) = runs_of(uri)
    assert run.data.tags["owner"] == "***"
    leaked = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and secret.encode() in
              p.read_bytes()]  # fmt: skip
    assert leaked == []
    assert secret not in result.stdout + result.stderr
    with pytest.raises(PipelineError) as raised:
        train_into(None, f"tracking.uri=http://alice:{password}@127.0.0.1:9")
    message = str(raised.value)
    assert message.startswith("Tracking server http://alice:***@127.0.0.1:9 is unreachable")
    assert password not in message


@pytest.mark.slow
def test_ctrl_c_during_a_sweep_kills_the_run_and_closes_the_parent(tmp_path):
    process = start_cli("-m", "seed=1,2", "epochs=100000000", cwd=tmp_path)
    try:
        for line in process.stdout:  # wait until the first job trains
            if line.startswith("Epoch    0/"):
                break
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    parent, runs = sweep_runs(sqlite_uri(tmp_path / "mlruns"))
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in runs] == ["KILLED"]  # the second job never started
    assert len(cost_history(sqlite_uri(tmp_path / "mlruns"), runs[0].info.run_id)) > 1
