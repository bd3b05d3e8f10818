"""Named points where a crash test kills this process for real, at a precise moment.

``PIPELINE_KILL_AT=checkpoint:2`` sends this process SIGKILL the second time it reaches the
point ``checkpoint`` (``:2`` may be left out: the first time). Nothing happens without the
variable; the tests use it to show that a ``kill -9`` in the middle of a flush or a checkpoint
loses nothing that was promised.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "PIPELINE_KILL_AT"
_reached: Counter[str] = Counter()


def reached(name: str) -> None:
    """Kill this process if ``$PIPELINE_KILL_AT`` names this point and this time."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, times = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(times or 1):
        os.kill(os.getpid(), signal.SIGKILL)
