"""What a run shows on the console: a live progress line, on a terminal only."""

from __future__ import annotations

import sys
import time
from typing import SupportsFloat, TextIO

CLEAR_LINE = "\r\x1b[2K"


class Progress:
    """One line, rewritten in place: epoch, cost and speed. Silent unless ``stream`` is a TTY."""

    def __init__(self, epochs: int, stream: TextIO | None = None, every_s: float = 0.1) -> None:
        # sys.stderr as it is now (a default argument would keep the one of import time)
        self.epochs, self.stream, self.every_s = epochs, stream or sys.stderr, every_s
        self.enabled = self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.shown = False

    def update(self, epoch: int, cost: SupportsFloat) -> None:
        """Redraw the line at most every ``every_s``; ``cost`` (a tensor too) is read only then."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        rate = epoch / max(now - self.start, 1e-9)
        self.stream.write(
            f"{CLEAR_LINE}epoch {epoch}/{self.epochs}  cost {float(cost):.6f}  {rate:,.0f} epochs/s"
        )
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Remove the line, so that a log line can be printed in its place."""
        if self.shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self.shown = False


class SweepProgress:
    """One live bar for a batched sweep, on a terminal only (``tqdm``): the job-epochs trained of
    all, the running batch's epoch, the jobs written and failed, and the time left. Elsewhere (a
    log file, CI) nothing: the launcher logs a line per batch instead."""

    def __init__(self, jobs: int, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        stream = stream or sys.stderr
        self.jobs, self.written, self.failed = jobs, 0, 0
        self.bar = tqdm(total=0, file=stream, disable=not stream.isatty(), unit=" job-epochs",
                        dynamic_ncols=True, leave=False)  # fmt: skip
        self.size = 0

    def batch(self, size: int, epochs: int) -> None:
        """A batch of ``size`` jobs starts, ``epochs`` epochs each to train."""
        self.size = size
        self.bar.total += size * epochs
        self.bar.refresh()

    def epoch(self, epoch: int) -> None:
        self.bar.update(self.size)
        self.bar.set_postfix_str(
            f"epoch {epoch}, jobs written {self.written}/{self.jobs}, failed {self.failed}",
            refresh=False,
        )

    def recorded(self, written: int, failed: int) -> None:
        self.written += written
        self.failed += failed

    def close(self) -> None:
        self.bar.close()
