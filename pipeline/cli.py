"""The command-line convention of every command but ``train`` (a Hydra app).

Run ids, model URIs and files are positional; options are ``--flags``; ``-h``/``--help`` shows
the usage with an example. A mistake in the arguments, or a run, store or file that cannot be
used, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from pipeline.errors import PipelineError

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that point at ``--help``."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}. Fix: see `{self.prog} --help`", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parser(module: str, doc: str, example: str, tracking_uri: bool = True) -> Parser:
    """A parser for ``python -m pipeline.<module>``: the doc's first line, then an example;
    with ``--tracking-uri`` unless the command does not read runs (``server``)."""
    built = Parser(
        prog=f"python -m pipeline.{module}",
        description=doc.strip().splitlines()[0],
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if tracking_uri:
        built.add_argument(
            "--tracking-uri",
            default=None,
            help="the store (default: $MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db)",
        )
    return built


def run(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status; a PipelineError is its one line and status 2."""
    try:
        status = main()
        sys.stdout.flush()
    except PipelineError as err:
        print(err, file=sys.stderr)
        status = EXIT_USAGE
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
