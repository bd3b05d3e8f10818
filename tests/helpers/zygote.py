"""``python -m pipeline.<command>`` processes without each paying the imports (~3.7 s of CPU a
process: torch, MLflow, Hydra, the pipeline).

One zygote process per test worker imports them once, then forks a child for each command a
test starts. The child is a real process of its own, as ``python -m`` makes it: its arguments,
working directory and environment; its stdin, stdout and stderr pipes to the test; the default
signal dispositions; its exit status (a signal's negative number, as ``subprocess`` reports it);
``atexit`` handlers and non-daemon threads joined at exit. Signals, ``kill -9``, exit statuses
and output are what they are for a fresh process. What differs: the imports happened before the
fork, so the environment a module reads *at import* (``PYTHONPATH``, ``OMP_NUM_THREADS``,
``PYTHONHASHSEED``) is the zygote's; start those processes with ``fresh=True`` in
``conftest.run_cli``/``start_cli``.

The zygote is the child's parent and reports its exit status over a Unix socket, so the test's
``Forked`` works as a ``subprocess.Popen`` does: ``pid``, ``poll``, ``wait``, ``send_signal``,
``kill``, ``communicate``, ``returncode``, ``stdout``/``stderr``. For shell commands (the docs'
blocks), ``python_shim`` writes a ``python`` that hands its own arguments, directory,
environment and stdio to the zygote, passes the signals it is sent on to the child (all but
SIGKILL and SIGSTOP) and exits with the child's status; with ``ZYGOTE_PYTHON`` in the
environment, a command that starts ``sys.executable`` itself starts the shim.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# What a command imports (each child then imports only what its command adds). Importing runs
# no torch computation, so no thread pool exists to be broken by the fork.
PRELOAD = [
    "torch",
    "torch._dynamo",  # what the first optimizer step imports
    "mlflow",
    "mlflow.pyfunc",
    "pandas",
    "sklearn.datasets",
    "hydra",
    "pipeline.train",
    "pipeline.stage",
    "pipeline.group",
    "pipeline.compare",
    "pipeline.predict",
    "pipeline.rerun",
    "pipeline.resume",
    "pipeline.register",
    "pipeline.diff",
    "hydra_plugins.pipeline_launcher.vectorized",
]
MESSAGE = 1 << 20  # the largest request: arguments, and the environment
MAX_FDS = 250  # file descriptors one request may pass (SCM_RIGHTS takes at most 253)


# --- in the zygote -------------------------------------------------------------------------------


def serve(address: str) -> None:
    """Import ``PRELOAD``, then fork a child per request on ``address`` until the parent goes."""
    parent = os.getppid()
    import importlib

    from pipeline.tracking.run.models import import_mlflow_pytorch

    for module in PRELOAD:
        importlib.import_module(module)
    import_mlflow_pytorch()  # as a run does, without Lightning
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(f"{address}.new")
    listener.listen(64)
    os.rename(f"{address}.new", address)  # ready: the test connects once the name exists
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # a child's pid: its test's connection
    while os.getppid() == parent:
        for _ in selector.select(timeout=0.02):
            connection, _ = listener.accept()
            pid = _fork(connection, listener)
            connection.send(struct.pack("q", pid))
            waiting[pid] = connection
        _report_exits(waiting)


def _report_exits(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):  # the test may be gone
                connection.send(struct.pack("q", code))
            connection.close()


def _fork(connection: socket.socket, listener: socket.socket) -> int:
    payload, fds, _, _ = socket.recv_fds(connection, MESSAGE, MAX_FDS)
    request = json.loads(payload)
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    listener.close()
    connection.close()
    _run_child(request, fds)  # never returns


def _run_child(request: dict[str, Any], fds: list[int]) -> None:
    """Become ``python *argv`` in ``cwd`` with ``env``, and the caller's file descriptors at
    their numbers (``request["fds"]``: 0, 1, 2, and for the shim whatever else it has open, such
    as the pipes that joblib's workers are started with)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in fds]  # clear of every target
    for fd in fds:
        os.close(fd)
    for number, fd in zip(request["fds"], high, strict=True):
        os.dup2(fd, number)
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.executable = os.environ.get("ZYGOTE_PYTHON", sys.executable)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1 if unbuffered else -1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    os._exit(_main(request["argv"]))


def _run(argv: list[str]) -> None:
    """What ``python *argv`` runs: ``-m module``, ``-c code`` or a script, as ``__main__``."""
    import runpy

    if argv[0] == "-m":  # sys.path[0] is the working directory, as ``python -m`` puts it
        sys.argv, sys.path[0] = argv[1:], os.getcwd()
        sys.modules.pop(argv[1], None)  # ``python -m`` runs the module's code as __main__ only
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    else:  # a script: its directory first on sys.path
        sys.argv, sys.path[0] = argv, os.path.dirname(os.path.realpath(argv[0]))
        runpy.run_path(os.path.abspath(argv[0]), run_name="__main__")  # __file__ is absolute


def _main(argv: list[str]) -> int:
    """Run ``python *argv``'s code, then exit as the interpreter does: its status."""
    import atexit
    import traceback

    interrupted = False
    try:
        _run(argv)
        code = 0
    except SystemExit as exit_:
        code = _exit_status(exit_.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code, interrupted = 1, True
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # join non-daemon threads, as at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if interrupted:  # an uncaught KeyboardInterrupt ends the interpreter by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _exit_status(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


# --- in the test ---------------------------------------------------------------------------------


class Forked:
    """A command forked by the zygote, used as a ``subprocess.Popen`` with text pipes."""

    def __init__(self, args: list[str], connection: socket.socket, pipes: tuple[int, int, int]):
        self.args = args
        self._connection = connection
        self.pid: int = struct.unpack("q", connection.recv(8))[0]
        self.returncode: int | None = None
        stdin, stdout, stderr = pipes
        self.stdin = open(stdin, "w") if stdin >= 0 else None  # noqa: SIM115
        self.stdout = open(stdout)  # noqa: SIM115
        self.stderr = open(stderr)  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None and _readable(self._connection, 0):
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not _readable(self._connection, timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._collect()
        return self.returncode

    def _collect(self) -> None:
        data = self._connection.recv(8)
        self.returncode = struct.unpack("q", data)[0] if data else -signal.SIGKILL
        self._connection.close()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """All the output until the process ends (``TimeoutExpired`` after ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.stdin is not None:
            self.stdin.close()
        output: dict[str, str] = {}
        readers = [
            threading.Thread(target=lambda n=name, s=stream: output.__setitem__(n, s.read()))
            for name, stream in (("out", self.stdout), ("err", self.stderr))
        ]
        for reader in readers:
            reader.daemon = True
            reader.start()
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.stdout.close()
        self.stderr.close()
        return output["out"], output["err"]


def _readable(connection: socket.socket, timeout: float | None) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        return bool(selector.select(timeout))


class Zygote:
    """The zygote of this test worker: started on first use, stopped with the worker."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._address = ""
        self._lock = threading.Lock()

    def _started(self, env: dict[str, str]) -> str:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                directory = tempfile.mkdtemp(prefix="zygote-")
                self._address = str(Path(directory) / "socket")
                helpers = str(Path(__file__).resolve().parent)
                code = (
                    f"import sys; sys.path.insert(0, {helpers!r}); import zygote; "
                    f"sys.path.remove({helpers!r}); zygote.serve({self._address!r})"
                )
                self._process = subprocess.Popen(
                    [sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL
                )
                deadline = time.monotonic() + 120
                while not os.path.exists(self._address):
                    if self._process.poll() is not None:
                        raise RuntimeError("the zygote did not start")
                    assert time.monotonic() < deadline, "the zygote did not start in 120 s"
                    time.sleep(0.05)
            return self._address

    def address(self, env: dict[str, str]) -> str:
        """The zygote's socket (started with ``env`` if it is not running)."""
        return self._started(env)

    def start(
        self, module: str, args: list[str], cwd: Path, env: dict[str, str], stdin: bool = False
    ) -> Forked:
        """``python -m module args`` in ``cwd`` with exactly ``env``, forked from the zygote."""
        address = self._started(env)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        connection.connect(address)
        in_read, in_write = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), -1)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        request = {"argv": ["-m", module, *args], "cwd": str(cwd), "env": env, "fds": [0, 1, 2]}
        socket.send_fds(connection, [json.dumps(request).encode()], [in_read, out_write, err_write])
        for fd in (in_read, out_write, err_write):
            os.close(fd)
        return Forked([sys.executable, "-m", module, *args], connection,
                      (in_write, out_read, err_read))  # fmt: skip

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


ZYGOTE = Zygote()

SHIM = """#!{python} -I
import json, os, signal, socket, struct, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
connection.connect({address!r})
fds = sorted(int(n) for n in os.listdir("/proc/self/fd") if int(n) != connection.fileno())
fds = [n for n in fds if os.path.exists(f"/proc/self/fd/{{n}}")]  # less listdir's own
payload = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "fds": fds}}
socket.send_fds(connection, [json.dumps(payload).encode()], fds)
(child,) = struct.unpack("q", connection.recv(8))
def forward(signum, frame):  # what this process is sent, its child gets (SIGKILL aside)
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass
for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
    signal.signal(getattr(signal, name), forward)
(code,) = struct.unpack("q", connection.recv(8) or struct.pack("q", 1))
if code < 0:  # ended by a signal: end by it too
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def python_shim(directory: Path, env: dict[str, str]) -> Path:
    """``directory/python`` and ``python3``: the zygote's client; put ``directory`` first on
    ``PATH``. Returns the ``python`` to name as ``ZYGOTE_PYTHON``."""
    address = ZYGOTE.address(env)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        shim = directory / name
        shim.write_text(SHIM.format(python=sys.executable, address=address))
        shim.chmod(0o755)
    return directory / "python"
