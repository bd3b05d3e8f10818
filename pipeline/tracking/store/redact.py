"""Keep secrets out of the store: tracking passwords and tokens never become params or tags.

Two kinds are masked wherever the pipeline writes text to MLflow (params, tags, run names,
config and log artifacts) or to the console: the password in a URL (``http://user:pw@host``),
and the value of any environment variable whose name says it is secret (``*PASSWORD*``,
``*TOKEN*``, ``*SECRET*``, ``*KEY*``, ``*CREDENTIAL*``), e.g. ``MLFLOW_TRACKING_PASSWORD`` or a
config value read from one with ``${oc.env:...}``.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)(?P<pw>[^/\s@]+)(?=@)")


def secret_values() -> tuple[str, ...]:
    """Values of secret-looking environment variables, longest first (4 characters or more).

    Found again only when the environment changed: a sweep's thousand runs redact ~45 texts
    each, and scanning the environment costs ~70 us a text."""
    raw = getattr(os.environ, "_data", os.environ)  # CPython's own copy: a tuple of it ~1 us
    return _secret_values(tuple(raw.items()))


@functools.lru_cache(maxsize=8)
def _secret_values(environment_now: tuple) -> tuple[str, ...]:
    """Scans ``os.environ``; ``environment_now`` (its raw items) only keys the cache."""
    values = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 4}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with URL passwords and secret environment values masked."""
    text = URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    for value in secret_values():
        text = text.replace(value, MASK)
    return text


def redact_value(value: Any) -> Any:
    """Strings (also inside lists and dicts) redacted; other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value
