"""What a run shows on the console: a live progress line on a terminal, and where to view it."""

from __future__ import annotations

import sys
import time
from typing import SupportsFloat, TextIO

CLEAR_LINE = "\r\x1b[2K"


class Progress:
    """One line, rewritten in place: epoch, cost and speed. Silent unless ``stream`` is a TTY."""

    def __init__(self, epochs: int, stream: TextIO = sys.stderr, every_s: float = 0.1) -> None:
        self.epochs, self.stream, self.every_s = epochs, stream, every_s
        self.enabled = stream.isatty()
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


def run_address(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to see the run: the server's page for it, or the local UI's after starting it."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"http://127.0.0.1:5000/{page} (start the UI with `python -m pipeline.ui`)"
