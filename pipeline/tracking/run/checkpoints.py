"""A run's checkpoints, kept with the run as artifacts (``checkpoints/slot-0.pt``, ``slot-1.pt``),
so that a tracking server's runs have them too.

A new checkpoint is written to the slot that the run's ``checkpoint`` tag does not name, and the
tag moves to it only once it is fully written: a crash while writing leaves the tag on the
previous, complete checkpoint (kept as ``checkpoint.previous``). The tags record the epoch and
the SHA-256 of the file, which loading checks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities import Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from pipeline.core.checkpoint import from_bytes, to_bytes
from pipeline.runtime import failpoints
from pipeline.tags import CHECKPOINT, CHECKPOINT_PREVIOUS

log = logging.getLogger(__name__)

DIR = "checkpoints"


class Checkpoints:
    """Save, load and remove the checkpoints of one run."""

    def __init__(self, client: MlflowClient, run: Run) -> None:
        self.client = client
        self.run_id = run.info.run_id
        self.artifact_uri: str | None = run.info.artifact_uri
        tags = run.data.tags
        self.latest: dict | None = json.loads(tags.get(CHECKPOINT) or "null")
        self.previous: dict | None = json.loads(tags.get(CHECKPOINT_PREVIOUS) or "null")

    @classmethod
    def of_new_run(cls, client: MlflowClient, run_id: str) -> Checkpoints:
        """The checkpoints of a run just created (none yet), without reading it."""
        checkpoints = cls.__new__(cls)
        checkpoints.client, checkpoints.run_id, checkpoints.artifact_uri = client, run_id, None
        checkpoints.latest = checkpoints.previous = None
        return checkpoints

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` to the free slot, then move the ``checkpoint`` tag to it."""
        data = to_bytes(state)
        in_use = self.latest["path"] if self.latest else ""
        slot = "slot-1.pt" if in_use.endswith("slot-0.pt") else "slot-0.pt"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / slot
            path.write_bytes(data)
            self.client.log_artifact(self.run_id, str(path), DIR)
        failpoints.reached("checkpoint")  # written, not yet committed: a crash keeps the old one
        record = {
            "path": f"{DIR}/{slot}",
            "epoch": state["epoch"],
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        tags = [RunTag(CHECKPOINT, json.dumps(record))]
        if self.latest:
            tags.append(RunTag(CHECKPOINT_PREVIOUS, json.dumps(self.latest)))
        self.client.log_batch(self.run_id, tags=tags)
        self.latest, self.previous = record, self.latest

    def load(self) -> dict[str, Any] | None:
        """The newest intact checkpoint's state (None if there is none)."""
        for record in (self.latest, self.previous):
            if record is None:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    path = self.client.download_artifacts(self.run_id, record["path"], tmp)
                    data = Path(path).read_bytes()
                except (MlflowException, OSError):
                    data = b""
            if hashlib.sha256(data).hexdigest() == record["sha256"]:
                return from_bytes(data)
            log.warning(
                "Checkpoint %s of epoch %d is damaged or missing: not used",
                record["path"],
                record["epoch"],
            )
        return None

    def remove(self) -> None:
        """Delete the checkpoint files and the tags that name them."""
        if self.artifact_uri is None:
            self.artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
        get_artifact_repository(self.artifact_uri).delete_artifacts(DIR)
        for tag, record in ((CHECKPOINT, self.latest), (CHECKPOINT_PREVIOUS, self.previous)):
            if record:
                self.client.delete_tag(self.run_id, tag)
        self.latest = self.previous = None
