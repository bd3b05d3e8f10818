"""The MLflow schemas whose tables the pipeline reads and writes itself (``bulk``, ``reads``),
without MLflow's ORM: a sqlite or PostgreSQL store at a verified alembic revision."""

from __future__ import annotations

# Alembic revisions of MLflow's schema whose metrics/latest_metrics/tags tables this writes
# (MLflow 3.17.2's head). Another revision, e.g. after an MLflow upgrade, falls back to log_batch
# until tests/test_writes.py passes on it and it is added here.
VERIFIED_REVISIONS = frozenset({"dc11669786a5"})
DIALECTS = ("sqlite", "postgresql")  # the databases tests/test_writes.py writes to


def dialect(uri: str) -> str | None:
    """``sqlite`` or ``postgresql`` for a store this module writes to; None for any other."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    return scheme if scheme in DIALECTS else None
