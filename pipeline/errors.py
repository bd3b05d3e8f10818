"""The errors a user sees: one line that says what is wrong and how to fix it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from hydra.errors import CompactHydraException

Method = TypeVar("Method", bound=Callable[..., Any])


class PipelineError(CompactHydraException):
    """A user-facing error: printed as one line (by Hydra, or by a command), never a traceback."""


class ConfigError(PipelineError):
    """A config value that is well-typed but not allowed."""


class DataError(PipelineError):
    """Data that cannot be trained on: a bad file, too few samples per class for the split, ..."""


class OverrideError(PipelineError):
    """An override that Hydra cannot apply: an unknown key or group option, a value of the wrong
    type, a syntax error (the Python API's form of what Hydra prints on the command line)."""


class SweepFailed(PipelineError):
    """Some of a sweep's jobs did not finish (the others did; the sweep's runs are recorded).
    From the Python API, ``sweep`` is the sweep (a ``pipeline.api.Sweep``)."""

    sweep: Any = None


class Fatal(SystemExit):
    """A PipelineError that must end the command where Hydra would turn an exception into a
    warning (in a callback): the interpreter prints its line to stderr and exits with status 1;
    the Python API (``pipeline.api``) raises ``error`` instead."""

    def __init__(self, error: PipelineError) -> None:
        super().__init__(str(error))
        self.error = error


def first_line(err: BaseException) -> str:
    """An exception as one line: its message's first line, or its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def fatal_in_callback(method: Method) -> Method:
    """For a Hydra callback method: a PipelineError is its one line and exit status 1 (``Fatal``).

    Hydra turns a callback's exceptions into warnings and carries on (a sweep would launch its
    jobs anyway); SystemExit passes through.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except PipelineError as err:
            raise Fatal(err) from None

    return wrapper  # type: ignore[return-value]
