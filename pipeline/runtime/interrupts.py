"""Ctrl-C and SIGTERM stop a run at a safe point, so the tracking store stays consistent.

An interrupt raised in the middle of a store write could leave a lock held and hang the
cleanup. So while a run is open, the first SIGINT or SIGTERM is only noted; training stops
at the next epoch boundary (``check``) and the run is closed as KILLED. A second signal, or
one outside a run, interrupts at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class _State:
    deferring = False
    pending = False


_state = _State()


def install() -> None:
    """Route SIGINT and SIGTERM through this module (the CLI entry points call it)."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.deferring and not _state.pending:
        _state.pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, a first signal is noted, not raised; it is raised on leaving if ``check`` didn't."""
    _state.deferring, _state.pending = True, False
    try:
        yield
    finally:
        _state.deferring = False
    check()


def check() -> None:
    """Raise KeyboardInterrupt if a signal arrived since ``deferred`` began."""
    if _state.pending:
        _state.pending = False
        raise KeyboardInterrupt
