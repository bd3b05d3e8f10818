"""The vectorized launcher: a sweep's jobs trained in batched groups (``pipeline.group``).

Hydra finds launchers in the ``hydra_plugins`` package; this one composes every job, writes its
job dir as ``run_job`` does, and hands them all to ``pipeline.group.launch``.
``conf/hydra/launcher/vectorized.yaml`` selects it; it is the default for ``-m``. (No
``from __future__ import annotations``: Hydra loads plugin modules outside ``sys.modules``,
where a dataclass cannot resolve string annotations.)
"""

import logging
import logging.config
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, _save_config, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.pipeline_launcher.compose import Composer

log = logging.getLogger(__name__)


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.pipeline_launcher.vectorized.VectorizedLauncher"
    group_size: int = 1000  # at most this many jobs train as one computation


ConfigStore.instance().store(
    group="hydra/launcher", name="vectorized_schema", node=VectorizedLauncherConf,
    provider="pipeline",
)  # fmt: skip


class VectorizedLauncher(Launcher):
    def __init__(self, group_size: int = 1000) -> None:
        self.group_size = group_size
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:  # fmt: skip
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:  # fmt: skip
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs, batched where they can train together", len(job_overrides))
        from pipeline.group import keep, launch, long_lived_heap, run_alone  # torch, MLflow

        compose = Composer(self.hydra_context.config_loader, self.config)
        configs, tasks = [], []
        with long_lived_heap():  # the jobs' configs live until the sweep's end
            for num, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
                tasks.append(compose.task(list(overrides)))
                config = compose(list(overrides))
                configs.append(job_config(config, num, task=tasks[-1], composer=compose))
                if len(configs) % 100 == 0:
                    keep()
            console_logging(configs[0])
            alone = run_alone(self.hydra_context, self.task_function)
            try:
                return launch(configs, alone, self.group_size, tasks)
            finally:
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)


def job_config(
    config: DictConfig,
    num: int,
    job_id: str | None = None,
    overrides_only: bool = False,
    task: DictConfig | None = None,
    composer: Composer | None = None,
) -> DictConfig:
    """The job's composed ``config`` numbered (its id: ``job_id``, else ``num``), its dir made
    and its ``.hydra`` files written, as ``run_job`` does before it calls the task (with
    ``overrides_only``, only ``overrides.yaml``, by which the sweep's summary finds the job).
    ``task``: the config's task part (``Composer.task``), and the ``composer`` that made both,
    where the caller has them (its templates write the files)."""
    with open_dict(config):
        config.hydra.job.id = num if job_id is None else job_id
        config.hydra.job.num = num
    if "${hydra:" in str(OmegaConf.to_container(config.hydra.sweep)):
        HydraConfig.instance().set_config(config)  # the dir's name asks Hydra's resolver
    output_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        hydra_dir = output_dir / str(config.hydra.output_subdir)
        _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_dir)
        if not overrides_only:
            if task is None:
                task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
            if composer is None:
                texts = OmegaConf.to_yaml(task), OmegaConf.to_yaml(config.hydra)
            else:
                texts = composer.texts(config, task)
            (hydra_dir / "config.yaml").write_text(texts[0], encoding="utf-8")  # as _save_config
            hydra_yaml = "hydra:\n" + textwrap.indent(texts[1], "  ")
            (hydra_dir / "hydra.yaml").write_text(hydra_yaml)  # what _save_config writes
    return config


def console_logging(config: DictConfig) -> None:
    """The jobs' console logging (``hydra/job_logging``) without a job's log file: each job's
    file is written by ``pipeline.group``."""
    settings = OmegaConf.to_container(config.hydra.job_logging, resolve=False)
    handlers = settings.get("handlers", {})
    for name in [n for n, h in handlers.items() if "filename" in h]:
        del handlers[name]
    root = settings.get("root", {})
    root["handlers"] = [h for h in root.get("handlers", []) if h in handlers]
    logging.config.dictConfig(settings)
