"""The notebook: ``examples/tour.ipynb`` executed start to end in a real Jupyter kernel
(``nbclient``) against a temp store; and a kernel interrupt while a run trains ends the run
KILLED, as Ctrl-C does on the console, and leaves the kernel's signal handling and argv as
they were."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from conftest import REFERENCE_OUTPUT, ROOT, cli_env, runs_of, sqlite_uri, sweep_runs

pytestmark = pytest.mark.slow  # a kernel and MLflow's imports in it: ~15-60 s a test

TOUR = ROOT / "examples" / "tour.ipynb"


def kernel_env() -> dict[str, str]:
    """The kernel's environment: no tracking URI (the store is ./mlruns of its directory), and
    this checkout's ``pipeline`` first on its path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return cli_env({"PYTHONPATH": path})


def outputs(cell: nbformat.NotebookNode, kind: str) -> str:
    """A code cell's ``stdout`` text, or its result's ``text/plain`` (``kind="result"``)."""
    if kind == "result":
        return "".join(o.data["text/plain"] for o in cell.outputs if "data" in o)
    return "".join(o.text for o in cell.outputs if o.get("name") == kind)


def test_the_tour_runs_from_start_to_end_in_a_kernel(tmp_path):
    notebook = nbformat.read(TOUR, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=kernel_env())

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    train, sweep, frame, plot, predict = code
    epochs = [line for line in outputs(train, "stdout").splitlines() if line.startswith("Epoch")]
    assert epochs == REFERENCE_OUTPUT.read_text().splitlines()
    assert outputs(train, "result").startswith("('default', 'FINISHED', 0.254")
    uri = sqlite_uri(tmp_path / "mlruns")
    parent, children = sweep_runs(uri)
    assert len(children) == 5  # lr x seed: six jobs, one of them the reference run, done before
    assert {r.info.status for r in runs_of(uri)} == {"FINISHED"}
    assert len(outputs(sweep, "result").splitlines()) == 7  # the header and six runs
    assert parent.info.run_id in outputs(frame, "result")
    images = [o for o in plot.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # inline: the pipeline left the notebook's matplotlib backend alone
    table = outputs(predict, "result").splitlines()
    assert table[0].split()[-2:] == ["predicted", "actual"]
    assert all(row.split()[-1] == row.split()[-2] for row in table[1:])  # the best model: right
    assert "best run: optim.lr=0.1,seed=3" in outputs(predict, "stdout")


def test_a_kernel_interrupt_ends_the_run_killed_and_leaves_the_kernel_as_it_was(tmp_path):
    manager, kernel = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=kernel_env())
    try:
        setup = "import signal, sys, pipeline\nbefore = (signal.getsignal(signal.SIGINT), sys.argv)"
        assert kernel.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"

        def interrupt_at_first_epoch(message: dict) -> None:
            if message["msg_type"] == "stream" and "Epoch" in message["content"]["text"]:
                manager.interrupt_kernel()

        reply = kernel.execute_interactive(
            'pipeline.train("epochs=1000000", "log_every=1000")',
            output_hook=interrupt_at_first_epoch,
            timeout=300,
        )["content"]
        assert (reply["status"], reply["ename"]) == ("error", "KeyboardInterrupt")
        assert reply["evalue"] == "Interrupted: the run was marked KILLED."

        printed: list[str] = []
        check = "print((signal.getsignal(signal.SIGINT), sys.argv) == before, sys.argv)"
        kernel.execute_interactive(
            check, output_hook=lambda m: printed.append(m["content"].get("text", "")), timeout=60
        )
        assert "".join(printed).startswith("True")
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    (run,) = runs_of(sqlite_uri(Path(tmp_path) / "mlruns"))
    assert run.info.status == "KILLED"
