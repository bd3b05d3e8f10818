"""Real server processes for tests: a free loopback port, start in a session, stop the group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def live_members(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def stop_group(server: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if server.poll() is not None and not live_members(server.pid):
                return
            time.sleep(0.1)


def wait_healthy(base: str, server: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"no 200 from {base}/health in {timeout_s} s:\n{log.read_text()}")


def bound_addresses(port: int) -> set[str]:
    """The IPv4 addresses listening on ``port`` (Linux /proc/net/tcp), e.g. {"127.0.0.1"}."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def start_server(
    command: list[str], cwd: Path, log: Path, port: int, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``command`` in a session of its own (output to ``log``), with this environment
    less any tracking URI, plus ``env``; wait for its /health."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
    except BaseException:
        stop_group(process)
        raise
    return process


@contextmanager
def plain_server(store: Path) -> Iterator[str]:
    """A plain ``mlflow server`` on a free port (one worker, a sqlite store and artifacts in
    ``store``, no job execution): its URL, while inside; stopped after."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
               "--artifacts-destination", str(store / "artifacts")]  # fmt: skip
    no_jobs = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = start_server(command, store, store / "server.log", port, no_jobs)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)
