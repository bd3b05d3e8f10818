"""The errors a user sees: one line that says what is wrong and how to fix it."""

from __future__ import annotations

from hydra.errors import CompactHydraException


class PipelineError(CompactHydraException):
    """A user-facing error: printed as one line (by Hydra, or by a command), never a traceback."""


class ConfigError(PipelineError):
    """A config value that is well-typed but not allowed."""


class DataError(PipelineError):
    """Data that cannot be trained on: a bad file, too few samples per class for the split, ..."""


def first_line(err: BaseException) -> str:
    """An exception as one line: its message's first line, or its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
