"""Composing a sweep's jobs once per set of config-group choices.

Hydra composes every job of a sweep from scratch (77-102 ms each here), and its basic sweeper
composes the whole batch once more to check it. Jobs that differ only in values
(``optim.lr=0.1 seed=2``) share one composition: it is copied and the job's values applied as
Hydra applies command-line values (to the struct config, so a wrong key or type fails the same
way). A job that chooses other group files (``optim=adam``, ``experiment=iris_mlp``) is
composed for that set of choices, once.

A composition is kept pickled, with and without its hydra node (``pipeline.config.copies``:
unpickling is ~4x faster than ``copy.deepcopy``), and the task's part alone (a fifth of it) is
what checking a job's values and training it need.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf._utils import get_omega_conf_dumper

from pipeline.config.copies import Kept, copy_of, keep, task_part
from pipeline.tracking.run.yaml_text import Path, YamlTemplate, values_at

# The values of a job's hydra node that are its own (``__call__``, ``vectorized.job_config``).
JOB_VALUES = (("job", "id"), ("job", "num"), ("job", "override_dirname"), ("overrides", "task"),
              ("runtime", "output_dir"))  # fmt: skip


def to_yaml(structure: Any) -> str:
    """``OmegaConf.to_yaml`` of the config that ``structure`` is the container of."""
    return yaml.dump(structure, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     Dumper=get_omega_conf_dumper())  # fmt: skip


@dataclass(frozen=True)
class Composition:
    """One set of group choices composed: the whole config and its task part (no hydra node),
    pickled; and the templates of its jobs' ``.hydra`` files, made on first use."""

    whole: Kept
    task: Kept
    templates: Dict[Tuple[str, Tuple[Path, ...]], YamlTemplate] = field(default_factory=dict)

    @classmethod
    def of(cls, config: DictConfig) -> "Composition":
        return cls(keep(config), keep(task_part(config)))

    def template(self, part: str, paths: Tuple[Path, ...]) -> YamlTemplate:
        """The ``to_yaml`` of the ``hydra`` node or the ``task`` part, the values at ``paths``
        given by each job."""
        if (part, paths) not in self.templates:
            config = copy_of(self.whole if part == "hydra" else self.task)
            node = config.hydra if part == "hydra" else config
            structure = OmegaConf.to_container(node, enum_to_str=True)
            self.templates[part, paths] = YamlTemplate(structure, paths, to_yaml)
        return self.templates[part, paths]


class Composer:
    """``config_loader.load_sweep_config(master, overrides)``, composing once per set of group
    choices."""

    def __init__(self, config_loader, master: DictConfig) -> None:
        self.config_loader, self.master = config_loader, master
        self.parser = OverridesParser.create()
        self.composed: Dict[Tuple[str, ...], Composition] = {}
        self.parsed: Dict[str, Override] = {}
        self.groups = set(master.hydra.runtime.choices)

    def is_group(self, override: Override) -> bool:
        key = override.key_or_group
        return (
            override.package is not None or key in self.groups or key.split("@")[0] in self.groups
        )

    def parse(self, overrides: List[str]) -> List[Override]:
        """Hydra's parse of ``overrides``, each distinct one parsed once (0.3 ms each)."""
        for line in overrides:
            if line not in self.parsed:
                self.parsed[line] = self.parser.parse_overrides([line])[0]
        return [self.parsed[line] for line in overrides]

    def composition(self, parsed: List[Override]) -> Tuple[Composition, List[Override]]:
        """The composition of the job's group choices, and its values to apply."""
        choices = tuple(o.input_line for o in parsed if self.is_group(o))
        if choices not in self.composed:
            config = self.config_loader.load_sweep_config(self.master, list(choices))
            self.composed[choices] = Composition.of(config)
        return self.composed[choices], [o for o in parsed if not self.is_group(o)]

    def task(self, overrides: List[str]) -> DictConfig:
        """The job's config less its hydra node (what ``run_job`` gives the task): a wrong key
        or value fails here as it fails in ``__call__``."""
        composition, values = self.composition(self.parse(overrides))
        if any(o.is_hydra_override() for o in values):
            return task_part(self(overrides))
        config = copy_of(composition.task)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        return config

    def __call__(self, overrides: List[str]) -> DictConfig:
        parsed = self.parse(overrides)
        composition, values = self.composition(parsed)
        config = copy_of(composition.whole)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        job = config.hydra.job
        with open_dict(config.hydra):
            config.hydra.overrides.task = list(overrides)
            job.override_dirname = get_overrides_dirname(
                overrides=[o for o in parsed if not o.is_hydra_override()],
                kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys,
            )
        return config

    def texts(self, config: DictConfig, task: DictConfig) -> Tuple[str, str]:
        """The job's ``.hydra/config.yaml`` and ``hydra.yaml`` texts (``OmegaConf.to_yaml`` of
        ``task`` and of ``config.hydra``), from its composition's templates: 6 ms of PyYAML a
        job otherwise. Where a template cannot tell (a new key, a list value), the whole dump."""
        parsed = self.parse(list(config.hydra.overrides.task))
        composition, values = self.composition(parsed)
        hydra_text = task_text = None
        if not any(o.is_hydra_override() for o in values):
            hydra, job = config.hydra, config.hydra.job
            own = [job.id, job.num, job.override_dirname, list(hydra.overrides.task),
                   hydra.runtime.output_dir]  # fmt: skip
            template = composition.template("hydra", JOB_VALUES)
            hydra_text = template.render_checked(own, lambda: OmegaConf.to_yaml(hydra))
            if all(o.type == OverrideType.CHANGE for o in values):
                paths = tuple(tuple(o.key_or_group.split(".")) for o in values)
                found = values_at(OmegaConf.to_container(task, enum_to_str=True), paths)
                if found is not None:
                    template = composition.template("task", paths)
                    task_text = template.render_checked(found, lambda: OmegaConf.to_yaml(task))
        return (
            task_text if task_text is not None else OmegaConf.to_yaml(task),
            hydra_text if hydra_text is not None else OmegaConf.to_yaml(config.hydra),
        )
