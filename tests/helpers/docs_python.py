"""``python`` for the docs' blocks without paying the pipeline's imports (~4 s of CPU) per command.

``serve(socket_path)`` runs in one process that imported torch, MLflow, Hydra and the pipeline
once; ``python`` on the blocks' PATH is a tiny client (``CLIENT``) that hands it its arguments,
directory, environment and stdin/stdout/stderr. The server forks; the child runs the command
as the interpreter would (``-m module`` through runpy as ``__main__``, ``-c code``, or a script)
and its exit status goes back to the client. So a block's ``python -m pipeline.train ...`` runs
the same code with the same argv, directory and environment, on the same files.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys
import threading
import traceback
import warnings

PRELOAD = [
    "torch",
    "torch._dynamo",  # what the first optimizer step imports
    "mlflow",
    "mlflow.pytorch",
    "mlflow.pyfunc",
    "pandas",
    "sklearn.datasets",
    "hydra",
    "pipeline.train",
    "pipeline.stage",
    "pipeline.compare",
    "pipeline.predict",
    "pipeline.rerun",
    "pipeline.resume",
    "pipeline.diff",
    "pipeline.register",
]

CLIENT = """#!{python} -I
import json, os, socket, sys
client = socket.socket(socket.AF_UNIX)
client.connect(os.environ["DOCS_PYTHON_SOCKET"])
request = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}})
socket.send_fds(client, [request.encode()], [0, 1, 2])
client.shutdown(socket.SHUT_WR)
reply = b""
while chunk := client.recv(64):
    reply += chunk
sys.exit(int(reply or b"1"))
"""


def run_command(argv: list[str]) -> int:
    """In the forked child: what ``python *argv`` does; its exit status."""
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
    try:
        if argv[:1] == ["-m"]:
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[:1] == ["-c"]:
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def child(request: dict, fds: list[int]) -> None:
    for number, fd in enumerate(fds[:3]):
        os.dup2(fd, number)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # A command that starts `python` itself (rerun, resume: sys.executable -m pipeline.train)
    # gets this client too.
    sys.executable = request["env"].get("DOCS_PYTHON_CLIENT", sys.executable)
    status = run_command(request["argv"])
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def answer(connection: socket.socket, pid: int) -> None:
    """Send the child's exit status to its client, once it ends."""
    _, status = os.waitpid(pid, 0)
    connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())
    connection.close()


def serve(path: str) -> None:
    """Answer ``python`` requests on the Unix socket ``path`` until killed; a request made
    while another runs (a command that starts ``python``) is served at once."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        data, fds, _flags, _address = socket.recv_fds(connection, 1 << 20, 3)
        while chunk := connection.recv(1 << 20):
            data += chunk
        pid = os.fork()
        if pid == 0:
            server.close()
            connection.close()
            child(json.loads(data), fds)
        for fd in fds:
            os.close(fd)
        threading.Thread(target=answer, args=(connection, pid), daemon=True).start()


if __name__ == "__main__":
    serve(sys.argv[1])
