"""The lists on ``python -m pipeline.train --help`` (``conf/hydra/help/pipeline.yaml``), made
when the page is shown, so that they stay true: the config groups a user chooses from, and the
other commands with the first line of each one's docstring."""

from __future__ import annotations

import ast
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The groups a user picks from; not the schema/* groups that the files in conf/ extend.
USER_GROUPS = (
    "data",
    "model",
    "optim",
    "scheduler",
    "experiment",
    "debug",
    "hydra/launcher",
    "hydra/sweeper",
)
COMMANDS = ("predict", "rerun", "resume", "compare", "diff", "register", "ui", "server")


def group_choices() -> str:
    """One line a group: its options, the default in brackets."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    loader = GlobalHydra.instance().config_loader()
    chosen = HydraConfig.get().runtime.choices
    lines = []
    for group in USER_GROUPS:
        options = [o for o in loader.get_group_options(group) if not o.endswith("_schema")]
        marked = [f"[{o}]" if o == chosen.get(group) else o for o in options]
        lines.append(f"  {group}: {', '.join(marked)}")
    return "\n".join(lines)


def summary(command: str) -> str:
    """The first line of ``pipeline/<command>.py``'s docstring, less its usage (read, not
    imported: the commands import MLflow)."""
    source = (PACKAGE_DIR / f"{command}.py").read_text()
    doc = ast.get_docstring(ast.parse(source)) or ""
    return doc.splitlines()[0].split(": ``")[0].rstrip(".") if doc else ""


def commands() -> str:
    width = max(map(len, COMMANDS))
    return "\n".join(f"  {c.ljust(width)}  {summary(c)}" for c in COMMANDS)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("pipeline_groups", group_choices, replace=True)
    OmegaConf.register_new_resolver("pipeline_commands", commands, replace=True)
