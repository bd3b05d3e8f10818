"""The console on a terminal: a live progress line (piped output: test_reference_run)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys


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
