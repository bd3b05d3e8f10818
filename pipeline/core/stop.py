"""Stopping training at a safe point: a request to stop, and ``Stop``, which carries it out.

Whatever wants training to end early (``pipeline.runtime.interrupts``, on a signal) calls
``request``; the training loop calls ``check`` at every epoch boundary, where stopping loses
nothing, and ``check`` raises ``Stop`` if a request is pending.
"""

from __future__ import annotations

import signal


class Stop(KeyboardInterrupt):
    """A signal asked the run to stop; raised at an epoch boundary, or (``after_run``) once the
    run, whose training was over when the signal came, is closed."""

    def __init__(self, signum: int, after_run: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.after_run = after_run


class _Pending:
    signum: int | None = None  # the signal whose stop was requested


_pending = _Pending()


def request(signum: int) -> bool:
    """Ask training to stop at the next ``check``; False if a stop is requested already."""
    if _pending.signum is not None:
        return False
    _pending.signum = signum
    return True


def withdraw() -> None:
    """Forget a pending request."""
    _pending.signum = None


def check(after_run: bool = False) -> None:
    """Raise ``Stop`` if a stop was requested since the last check (the request is then done)."""
    if _pending.signum is not None:
        signum, _pending.signum = _pending.signum, None
        raise Stop(signum, after_run)
