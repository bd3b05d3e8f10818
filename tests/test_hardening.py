"""Bad input across the whole surface, as the README's "When things go wrong" table promises:
one line with a fix (Hydra's own message, naming the key and its type or options, for a config
that does not compose), the documented exit status, no traceback, no run left RUNNING, earlier
runs untouched. Plus secrets and signals during a sweep."""

from __future__ import annotations

import importlib
import signal
import time

import pandas as pd
import pytest

from conftest import (
    cost_history,
    run_cli,
    runs_of,
    sqlite_uri,
    start_cli,
    sweep_runs,
    train_into,
    without_cuda,
)
from pipeline import cli
from pipeline.errors import PipelineError

CSV_FILES = {
    "empty.csv": "",
    "text.csv": "a,b,label\n1,x,0\n2,3,1\n",
    "holes.csv": "a,b,label\n1,,0\n2,3,1\n",
    "ragged.csv": "a,b,label\n1,2,0\n2,3,1,7\n",
    "nolabel.csv": "a,b,kind\n1,2,0\n2,3,1\n",
    "oneclass.csv": "a,b,label\n1,2,0\n2,3,0\n",
}

CLI, HYDRA, HERE = "in a process", "Hydra's message, in a process", "in this process"
# (arguments, command, what the message must say, how): every case has the command's exit
# status (EXIT) and nothing new in the store. "in a process" runs the command as a user does:
# one line with a fix on stderr, nothing on stdout; "Hydra's message" is Hydra's own error for a
# config that does not compose, which names the key and its type or the options; "in this
# process" calls the command (each kind of error has at least one case in a process).
EXIT = {"train": 1, "predict": 2, "rerun": 2}
BAD_INPUTS = [
    (["optim.lr=-0.1"], "train", "optim.lr must be > 0, got -0.1. Fix: e.g. optim.lr=0.1", CLI),
    (["optim.lr=abc"], "train", "Value 'abc' of type 'str' could not be converted to Float", HYDRA),
    (["epochs=1.5"], "train", "Value '1.5' of type 'float' could not be converted to Integer",
     HYDRA),
    (["epochs=0"], "train", "epochs must be >= 1, got 0", CLI),
    (["batch_size=0"], "train", "batch_size must be >= 1 (or null for full batch)", CLI),
    (["seed=-1"], "train", "seed must be in [0, 2**32)", CLI),
    (["optim=rmsprop"], "train", "Could not find 'optim/rmsprop'", HYDRA),
    (["data=mnist"], "train", "Could not find 'data/mnist'", HYDRA),
    (["hydra/launcher=nope"], "train", "Could not find 'hydra/launcher/nope'", HYDRA),
    (["epoch=10"], "train", "Could not override 'epoch'", HYDRA),
    (["+extra=1"], "train", "unknown key 'extra'", CLI),
    (["model=mlp", "model.activation=sigmoid"], "train", "expected one of [relu, tanh, gelu]",
     HYDRA),
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


CASES = [
    pytest.param(*case, id=" ".join(case[0]),
                 marks=without_cuda if case[0] == ["device=cuda"] else ())
    for case in BAD_INPUTS
]  # fmt: skip


def assert_one_line(stderr: str) -> str:
    """The train command's error: one line on stderr, without Hydra's wrapper lines
    ("Error executing job with overrides: [...]" and the HYDRA_FULL_ERROR hint)."""
    (line,) = stderr.splitlines()
    return line


def assert_hydra_names_the_fix(output: str, args: list[str]) -> None:
    """Hydra's message for a config that does not compose names what to change: the options of
    a group it cannot find, how to add a key the config lacks, or the key of a bad value."""
    key, value = args[-1].split("=", 1)
    if "Could not find" in output:
        options = {"optim": "adam adamw lbfgs sgd", "data": "csv digits iris toy",
                   "hydra/launcher": "basic joblib slurm submitit_local"}[key]  # fmt: skip
        assert all(option in output.split("Available options", 1)[1] for option in options.split())
    elif "Could not override" in output:
        assert f"To append to your config use +{key}={value}" in output
    else:
        assert f"full_key: {key}" in output


def error_here(module: str, args: list[str], uri: str, capsys) -> str:
    """The command's error, called in this process with the workspace's store: for ``train``, the
    error it raises (Hydra prints it, exit status 1); for the others, the one line on stderr, as
    ``cli.run`` exits with EXIT."""
    if module == "train":
        store = None if any(a.startswith("tracking.uri=") for a in args) else uri
        with pytest.raises(PipelineError) as raised:
            train_into(store, *args)
        return str(raised.value)
    command = importlib.import_module(f"pipeline.{module}")
    with_store = args if "--tracking-uri" in args else [*args, "--tracking-uri", uri]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.run(lambda: command.main(with_store))
    out, err = capsys.readouterr()
    assert exited.value.code == EXIT[module]
    assert out == ""
    (line,) = err.splitlines()
    return line


@pytest.mark.slow
@pytest.mark.parametrize(("args", "module", "message", "how"), CASES)
def test_bad_input_is_one_clear_error_and_loses_nothing(
    workspace, monkeypatch, capsys, args, module, message, how
):
    cwd, uri, earlier = workspace
    args = [a.format(store=cwd / "mlruns" / "mlflow.db") for a in args]
    if how == HERE:
        monkeypatch.chdir(cwd)
        line = error_here(module, args, uri, capsys)
        assert "\n" not in line
        assert message in line
        assert "Fix:" in line
    else:
        result = run_cli(*args, cwd=cwd, module=f"pipeline.{module}")
        assert result.returncode == EXIT[module], result.stderr
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        if how == HYDRA:
            assert message in result.stderr
            assert_hydra_names_the_fix(result.stderr, args)
        else:
            if module == "train":
                line = assert_one_line(result.stderr)
            else:  # every other command: exactly one line
                (line,) = result.stderr.splitlines()
            assert message in line
            assert "Fix:" in line
    runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FINISHED"]  # nothing new, nothing RUNNING
    assert runs[0].info.run_id == earlier.info.run_id
    assert runs[0].data.metrics == earlier.data.metrics
    assert runs[0].info.end_time == earlier.info.end_time


@pytest.mark.slow  # seconds: in CI, not the inner loop
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


@pytest.mark.slow
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
@pytest.mark.parametrize(
    ("launcher", "started", "statuses"),
    [
        ((), "Training jobs 0-1 as one batch of 2", ["KILLED", "KILLED"]),  # both in the batch
        (("hydra/launcher=basic",), "Epoch    0/", ["KILLED"]),  # the second never started
    ],
    ids=["vectorized", "basic"],
)
def test_ctrl_c_during_a_sweep_kills_the_run_and_closes_the_parent(
    tmp_path, launcher, started, statuses
):
    process = start_cli("-m", "seed=1,2", "epochs=100000000", *launcher, cwd=tmp_path)
    try:
        for line in process.stdout:  # wait until the first job trains
            if line.startswith(started):
                break
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    parent, runs = sweep_runs(sqlite_uri(tmp_path / "mlruns"))
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in runs] == statuses
    for run in runs:
        assert len(cost_history(sqlite_uri(tmp_path / "mlruns"), run.info.run_id)) > 1
