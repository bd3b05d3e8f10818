"""Ctrl-C, SIGTERM and a scheduler's preemption signal stop a run at a safe point.

An interrupt raised in the middle of a store write could leave a lock held and hang the
cleanup. So while a run is open, the first SIGINT, SIGTERM or SIGUSR2 is only noted; training
stops at the next epoch boundary (``check`` raises ``Stop``), where a checkpoint is taken and
the run is closed as KILLED. A signal that comes once training is over (while the model and the
last metrics are written) lets the run finish: it is closed FINISHED, then ``Stop`` is raised,
so that no next job starts. A second signal, or one outside a run, interrupts at once.

SIGUSR2 is what Slurm and submitit send before a time limit or a preemption; submitit's own
handler for it requeues the job. ``hand_over`` gives the signal to that handler once the run is
closed, so the requeued job resumes the run from its checkpoint.

A noted signal is a stop request of ``pipeline.core.stop``, which the training loop checks;
``Stop`` and ``check`` are handed on from there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from pipeline.core.stop import Stop, check, request, withdraw

__all__ = ["STOP_SIGNALS", "Stop", "check", "deferred", "hand_over", "install", "installed"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class _State:
    def __init__(self) -> None:
        self.deferring = False
        self.previous: dict[int, Any] = {}  # handlers before ours (submitit's, in its jobs)


_state = _State()


def install() -> None:
    """Route the stop signals through this module (in the main thread; else nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if current is not _on_signal:
            _state.previous[signum] = current
            signal.signal(signum, _on_signal)


@contextmanager
def installed() -> Iterator[None]:
    """``install`` inside; the handlers that were there before (a Jupyter kernel's) restored on
    leaving. For the Python API, which trains inside someone else's process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    install()
    try:
        yield
    finally:
        for signum, handler in before.items():
            if handler is not None:  # None: a handler not set from Python, left as it is
                signal.signal(signum, handler)
            _state.previous.pop(signum, None)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.deferring and request(signum):  # noted: raised at the next check
        return
    raise Stop(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, a first signal is noted, not raised; it is raised on leaving if ``check`` didn't
    (a ``Stop`` with ``after_run``)."""
    _state.deferring = True
    withdraw()
    try:
        yield
    finally:
        _state.deferring = False
    check(after_run=True)


def hand_over(stop: Stop) -> None:
    """Give a SIGUSR2 to the handler installed before ours, if there was one: in a submitit
    job, submitit's, which requeues the job and ends this process."""
    previous: Callable[[int, FrameType | None], Any] | Any = _state.previous.get(stop.signum)
    if stop.signum == signal.SIGUSR2 and callable(previous):
        for signum in STOP_SIGNALS:  # the requeue's SIGTERM must not break into the exit
            signal.signal(signum, signal.SIG_IGN)
        previous(stop.signum, None)
