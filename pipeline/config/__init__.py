"""Configuration: typed schemas for ``conf/`` (``schema``) and the value rules (``rules``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.config.rules import validate
from pipeline.config.schema import RUN_SETTINGS, register_configs

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

__all__ = ["CONF_DIR", "RUN_SETTINGS", "compose_config", "register_configs", "validate"]


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config ``python -m pipeline.train overrides`` runs with (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=list(overrides or []))
