"""Objects from config: ``hydra.utils.instantiate`` with the errors a user can act on."""

from __future__ import annotations

import functools
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError, PipelineError, first_line

HYDRA_KEYS = ("_args_", "_partial_", "_recursive_", "_convert_")


def build(group: str, node: DictConfig, **given: Any) -> Any:
    """``instantiate(node, **given, _convert_="all")``: the object the ``group`` node's
    ``_target_`` names.

    A node of plain values (no nested ``_target_``, none of Hydra's other ``_keys_``) is built
    by calling its target with them, as ``instantiate`` would, in a tenth of its time (1.4 ms a
    call here; a sweep builds a model and an optimizer per job); any other node goes through
    ``instantiate``. An error of ours raised while building (a bad CSV file, ...) is raised as
    it is; a ``_target_`` that cannot be imported or called with those keys is one Config error.
    """
    values = OmegaConf.to_container(node, resolve=True)
    target = _callable(values.get("_target_")) if _plain(values) else None
    if target is None:
        return _instantiate(group, node, **given)
    del values["_target_"]
    try:
        return target(**values, **given)
    except PipelineError:
        raise
    except Exception as err:
        raise built_wrong(group, node, err) from None


def _plain(values: dict) -> bool:
    return not any(key in values for key in HYDRA_KEYS) and not any(
        isinstance(v, dict) or (isinstance(v, list) and any(isinstance(i, dict) for i in v))
        for v in values.values()
    )


@functools.cache
def _callable(target: Any) -> Any:
    """The object a ``_target_`` names, or None where ``instantiate`` should say what is wrong."""
    if not isinstance(target, str):
        return None
    try:
        found = get_object(target)
    except Exception:
        return None
    return found if callable(found) else None


def _instantiate(group: str, node: DictConfig, **given: Any) -> Any:
    try:
        return instantiate(node, **given, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, PipelineError):
            raise err.__cause__ from None
        raise built_wrong(group, node, err.__cause__ or err) from None


def built_wrong(group: str, node: DictConfig, error: BaseException) -> ConfigError:
    """What to say when ``node``'s target cannot be imported or called (``error``)."""
    cause = first_line(error)
    return ConfigError(
        f"Config error: {group} ({node.get('_target_')}) cannot be built: {cause}. "
        f"Fix: check {group}._target_ and its keys in `python -m pipeline.train --cfg job`"
    )
