"""Objects from config: ``hydra.utils.instantiate`` with the errors a user can act on."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from pipeline.errors import ConfigError, PipelineError, first_line


def build(group: str, node: DictConfig, **given: Any) -> Any:
    """``instantiate(node, **given)``: the object the ``group`` node's ``_target_`` names.

    An error of ours raised while building (a bad CSV file, ...) is raised as it is; a
    ``_target_`` that cannot be imported or called with those keys is one Config error.
    """
    try:
        return instantiate(node, **given, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, PipelineError):
            raise err.__cause__ from None
        cause = first_line(err.__cause__ or err)
        raise ConfigError(
            f"Config error: {group} ({node.get('_target_')}) cannot be built: {cause}. "
            f"Fix: check {group}._target_ and its keys in `python -m pipeline.train --cfg job`"
        ) from None
