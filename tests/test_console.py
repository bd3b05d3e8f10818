"""The console: seed-style lines always, a live progress line only on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from conftest import run_cli


def test_piped_output_has_no_control_characters_and_ends_with_the_run_address(tmp_path):
    result = run_cli("epochs=300", "log_every=100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream
        assert "\x1b" not in stream
    lines = result.stdout.splitlines()
    assert [line.split(" Cost:")[0] for line in lines[:4]] == [
        "Epoch    0/300", "Epoch  100/300", "Epoch  200/300", "Epoch  300/300",
    ]  # fmt: skip
    assert lines[-2].startswith("Run 'epochs=300,log_every=100' finished: final_cost ")
    assert lines[-1].startswith("Run id ")
    assert "view it at http://127.0.0.1:5000/#/experiments/1/runs/" in lines[-1]
    assert "python -m pipeline.ui" in lines[-1]


def test_a_terminal_gets_a_live_progress_line(tmp_path):
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", "epochs=3000", "log_every=1000"],
        cwd=tmp_path,
        env=env,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    text = output.decode()
    assert "\r\x1b[2Kepoch " in text
    assert " epochs/s" in text
    assert "Epoch 3000/3000 Cost: " in text
