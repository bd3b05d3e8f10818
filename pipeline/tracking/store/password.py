"""A password in ``tracking.uri`` moves to the environment before anything is written.

Hydra writes the overrides and the composed config into every job's ``.hydra/`` dir and the
sweep's ``multirun.yaml``, its launchers print the overrides, and submitit pickles the config
into the sweep dir for Slurm jobs to load. ``tracking.uri=postgresql://user:PASSWORD@host/db``
would leave its password in all of them. This callback, the first Hydra runs, takes the
password out of the URI (user, host and database stay) and puts it in ``PGPASSWORD``, which
PostgreSQL's client library reads; jobs inherit it (Slurm's ``sbatch`` exports the
environment), and ``redact`` masks it wherever text is printed or logged.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pipeline.tracking.store.postgres import is_postgres

PASSWORD_VARIABLE = "PGPASSWORD"


class PasswordToEnvironment(Callback):
    """Before a run or a sweep: ``tracking.uri``'s password into ``PGPASSWORD``."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        move_password(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        move_password(config)


def move_password(config: DictConfig) -> None:
    """Take a PostgreSQL password out of ``tracking.uri`` and everything Hydra derived from it
    (the overrides, the override dirname); put it in ``PGPASSWORD``."""
    node = config.tracking
    if OmegaConf.is_interpolation(node, "uri") or not is_postgres(str(node.uri)):
        return  # ${oc.env:...} keeps its secret in the environment already
    raw = url_password(node.uri)
    if raw is None:
        return
    os.environ[PASSWORD_VARIABLE] = urllib.parse.unquote(raw)
    with read_write(config), open_dict(config):
        node.uri = without_password(node.uri, raw)
        hydra = config.hydra
        hydra.overrides.task = [without_password(o, raw) for o in hydra.overrides.task]
        if OmegaConf.select(hydra, "job.override_dirname"):
            hydra.job.override_dirname = without_password(hydra.job.override_dirname, raw)
    if HydraConfig.initialized():
        HydraConfig.instance().set_config(config)  # what launchers hand to their jobs


def url_password(uri: str) -> str | None:
    """The password of ``scheme://user:password@host/...`` as written (percent-encoded)."""
    netloc = urllib.parse.urlsplit(uri).netloc
    user_info = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    return user_info.split(":", 1)[1] if ":" in user_info else None


def without_password(text: str, raw_password: str) -> str:
    """``text`` with ``:<password>@`` (also Hydra-escaped, ``\\:<password>@``) made ``@``."""
    return re.sub(r"\\?:" + re.escape(raw_password) + "@", "@", text)
