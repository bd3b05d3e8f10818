"""The suite's zygote (tests/helpers/zygote.py) behaves as ``python`` does where the tests rely
on it: exit statuses, signals, and its shim passing signals on."""

from __future__ import annotations

import signal
import subprocess
import time

from conftest import cli_env
from helpers.zygote import python_shim

WAIT_FOR_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_the_shim_passes_a_signal_on_and_exits_with_its_childs_status(tmp_path):
    """SIGTERM to the shim (as joblib sends its workers) reaches the forked command, whose
    handler exits 7: so does the shim."""
    shim = python_shim(tmp_path / "bin", cli_env())
    process = subprocess.Popen([str(shim), "-c", WAIT_FOR_TERM], stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        assert process.stdout.readline() == "ready\n"
        time.sleep(0.1)  # the shim's handlers are set before it waits for the child's status
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 7
    finally:
        process.kill()


def test_a_command_ended_by_a_signal_ends_the_shim_by_it(tmp_path):
    shim = python_shim(tmp_path / "bin", cli_env())
    done = subprocess.run([str(shim), "-c", "import os, signal; os.kill(os.getpid(), 9)"],
                          timeout=30)  # fmt: skip
    assert done.returncode == -signal.SIGKILL
