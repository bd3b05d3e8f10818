"""Bad input across the whole surface: one clear message, exit status != 0, no traceback, no run
left RUNNING, earlier runs untouched. Plus secrets, signals during a sweep, and a UI reading the
store while a parallel sweep writes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from conftest import cost_history, run_cli, runs_of, sqlite_uri, start_cli, sweep_runs
from servers import bound_addresses, free_port, start_server, stop_group

CSV_FILES = {
    "empty.csv": "",
    "text.csv": "a,b,label\n1,x,0\n2,3,1\n",
    "holes.csv": "a,b,label\n1,,0\n2,3,1\n",
    "ragged.csv": "a,b,label\n1,2,0\n2,3,1,7\n",
    "nolabel.csv": "a,b,kind\n1,2,0\n2,3,1\n",
    "oneclass.csv": "a,b,label\n1,2,0\n2,3,0\n",
}

# (command-line arguments, module, what the message must say)
BAD_INPUTS = [
    (["optim.lr=-0.1"], "train", "optim.lr must be > 0, got -0.1. Fix: e.g. optim.lr=0.1"),
    (["optim.lr=abc"], "train", "Value 'abc' of type 'str' could not be converted to Float"),
    (["epochs=1.5"], "train", "Value '1.5' of type 'float' could not be converted to Integer"),
    (["epochs=0"], "train", "epochs must be >= 1, got 0"),
    (["batch_size=0"], "train", "batch_size must be >= 1 (or null for full batch)"),
    (["seed=-1"], "train", "seed must be in [0, 2**32)"),
    (["optim=rmsprop"], "train", "Could not find 'optim/rmsprop'"),
    (["data=mnist"], "train", "Could not find 'data/mnist'"),
    (["hydra/launcher=nope"], "train", "Could not find 'hydra/launcher/nope'"),
    (["epoch=10"], "train", "Could not override 'epoch'"),
    (["+extra=1"], "train", "unknown key 'extra'"),
    (["model=mlp", "model.activation=sigmoid"], "train", "model.activation must be relu, tanh"),
    (["optim=lbfgs", "batch_size=32"], "train", "optim=lbfgs needs full-batch training"),
    (["optim.nesterov=true"], "train", "optim.nesterov=true needs momentum"),
    (["data=iris", "data.val_fraction=0.5", "data.test_fraction=0.45"], "train",
     "must leave >= 10% to train on"),
    (["data.val_fraction=0.2"], "train", "cannot split 8 samples into stratified"),
    (["device=cuda"], "train", "device=cuda but no CUDA GPU is available"),
    (["data=csv"], "train", "data.path is required. Fix: pass data.path=<value>"),
    (["data=csv", "data.path=missing.csv"], "train", "CSV error: file not found: missing.csv"),
    (["data=csv", "data.path=empty.csv"], "train", "CSV error: empty.csv is empty"),
    (["data=csv", "data.path=text.csv"], "train", "line 2, column 'b': 'x' is not a number"),
    (["data=csv", "data.path=holes.csv"], "train", "line 2, column 'b': missing value"),
    (["data=csv", "data.path=ragged.csv"], "train", "Expected 3 fields in line 3, saw 4"),
    (["data=csv", "data.path=nolabel.csv"], "train", "has no column 'label' (columns: a, b, kind)"),
    (["data=csv", "data.path=oneclass.csv"], "train", "column 'label' has a single class ('0')"),
    (["tracking.uri=nosuchscheme://x"], "train", "Tracking store error at nosuchscheme://x"),
    (["tracking.uri=http://127.0.0.1:9"], "train", "Tracking server http://127.0.0.1:9 is unre"),
    (["tracking.uri=sqlite:////proc/mlflow.db"], "train", "unable to open database file"),
    (["tracking.uri=\"sqlite:///file:{store}?mode=ro&uri=true\""], "train",
     "attempt to write a readonly database"),
    (["0123456789abcdef"], "rerun", "No run '0123456789abcdef' in sqlite:///"),
    (["run_id=0123456789abcdef", "input=text.csv"], "predict", "No run '0123456789abcdef'"),
    (["input=text.csv"], "predict", "Missing run_id"),
    (["run_id=x", "input=a.csv", "colour=red"], "predict", "Unknown argument 'colour=red'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """A directory with one earlier FINISHED run in its default store, and the bad CSV files."""
    cwd = tmp_path_factory.mktemp("hardening")
    result = run_cli("epochs=20", cwd=cwd)
    assert result.returncode == 0, result.stderr
    for name, text in CSV_FILES.items():
        (cwd / name).write_text(text)
    uri = sqlite_uri(cwd / "mlruns")
    (earlier,) = runs_of(uri)
    return cwd, uri, earlier


def test_there_are_at_least_25_bad_inputs():
    assert len(BAD_INPUTS) >= 25


@pytest.mark.slow
@pytest.mark.parametrize(("args", "module", "message"), BAD_INPUTS,
                         ids=[" ".join(a) for a, _, _ in BAD_INPUTS])  # fmt: skip
def test_bad_input_is_one_clear_error_and_loses_nothing(workspace, args, module, message):
    cwd, uri, earlier = workspace
    args = [a.format(store=cwd / "mlruns" / "mlflow.db") for a in args]
    result = run_cli(*args, cwd=cwd, module=f"pipeline.{module}")
    output = result.stdout + result.stderr
    assert result.returncode not in (0, None)
    assert message in output
    assert "Traceback" not in output
    assert (
        "Fix:" in output
        or "Available options" in output
        or "To append" in output
        or ("could not be converted" in output)
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
    assert "Traceback" in result.stderr and "optim.lr must be > 0" in result.stderr


def test_a_single_diverging_run_fails_at_once_and_keeps_its_metrics(tmp_path):
    result = run_cli("optim.lr=1e38", cwd=tmp_path)
    assert result.returncode == 1
    assert "Training diverged: cost is nan at epoch 1. Fix: a smaller optim.lr" in result.stderr
    uri = sqlite_uri(tmp_path / "mlruns")
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
    assert leaked == [] and secret not in result.stdout + result.stderr
    bad = run_cli(f"tracking.uri=http://alice:{password}@127.0.0.1:9", cwd=tmp_path)
    assert bad.returncode == 1
    (message,) = [line for line in bad.stderr.splitlines() if line.startswith("Tracking server")]
    assert message.startswith("Tracking server http://alice:***@127.0.0.1:9 is unreachable")


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


@pytest.mark.slow
def test_the_ui_reads_while_a_parallel_sweep_writes(tmp_path):
    first = run_cli("epochs=5", cwd=tmp_path)  # the store exists, as when a user opens the UI
    assert first.returncode == 0, first.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui_command = [sys.executable, "-m", "pipeline.ui", "--port", str(port)]
    ui = start_server(ui_command, tmp_path, tmp_path / "ui.log", port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert bound_addresses(port) == {"127.0.0.1"}  # not exposed beyond this machine
        sweep = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.train",
                "-m",
                "seed=1,2,3,4",
                "epochs=300",
                "tracking.flush_every_s=0.2",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reads = 0
        while sweep.poll() is None:
            request = urllib.request.Request(
                f"{base}/api/2.0/mlflow/runs/search",
                data=b'{"experiment_ids": ["1"]}',
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            reads += 1
            time.sleep(0.2)
        stdout, stderr = sweep.communicate()
    finally:
        stop_group(ui)
    assert sweep.returncode == 0, stderr
    assert reads >= 3
    for text in (stdout, stderr, (tmp_path / "ui.log").read_text()):
        assert "database is locked" not in text and "Traceback" not in text
    parent, runs = sweep_runs(sqlite_uri(tmp_path / "mlruns"))
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2", "3", "4"]
    assert all(r.info.status == "FINISHED" for r in runs)
    uri = sqlite_uri(tmp_path / "mlruns")
    assert all(len(cost_history(uri, r.info.run_id)) == 301 for r in runs)
    assert MlflowClient(tracking_uri=uri).get_run(parent.info.run_id).info.status == "FINISHED"
