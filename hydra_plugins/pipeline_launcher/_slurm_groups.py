"""Slurm tasks that each train a chunk of a batched group: ``hydra/launcher=slurm_groups``.

Hydra's submitit launcher (``hydra/launcher=slurm``) submits one Slurm task per job. This one
composes the sweep's jobs here (``compose.Composer``), writes their job dirs, groups the ones
that train together (``pipeline.group.group_key``) and submits one Slurm job array whose tasks
each get at most ``jobs_per_task`` jobs of one group. A task composes its jobs again and hands
them to ``pipeline.group.launch``, as the vectorized launcher does in one process: the same
grouping, runs, checkpoints and resume. Stopped by Slurm (``scontrol requeue``) or warned by
submitit (USR2, before the time limit or a preemption), a task checkpoints every job of its
group, closes their runs KILLED and is requeued; its next attempt skips the FINISHED jobs and
resumes the others from their checkpoints.
"""

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import IntegerNode, OmegaConf

from hydra_plugins.pipeline_launcher.compose import Composer
from hydra_plugins.pipeline_launcher.vectorized import console_logging, job_config

log = logging.getLogger(__name__)
Task = list[tuple[int, list[str]]]  # a Slurm task's jobs: (job number, overrides)


# The setting this launcher adds to hydra/launcher=slurm's (SlurmQueueConf, which a subclass
# could not extend: Hydra merges the slurm preset's SlurmQueueConf over it). Typed: a value that
# is not a whole number fails when the config composes.
ConfigStore.instance().store(
    group="hydra/launcher", name="slurm_groups_schema", provider="pipeline",
    node=OmegaConf.create({"jobs_per_task": IntegerNode(1000)}),
)  # fmt: skip


class GroupedSlurmLauncher(SlurmLauncher):
    """Hydra's Slurm launcher, with a task per chunk of a group instead of per job. (Its class
    name ends in ``SlurmLauncher``: the sweep's cluster and store checks apply to it.)"""

    def __init__(self, jobs_per_task: int = 1000, **params: Any) -> None:
        super().__init__(**params)
        self.jobs_per_task = jobs_per_task

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:  # fmt: skip
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        tasks, output_dirs = self.tasks(job_overrides, initial_job_idx)
        log.info(
            "Submitting %d jobs as %d Slurm tasks (at most %d jobs of one group each); sweep "
            "dir %s", len(job_overrides), len(tasks), self.jobs_per_task,
            self.config.hydra.sweep.dir,
        )  # fmt: skip
        state = Singleton.get_state()
        submitted = self.executor().map_array(self, tasks, [state] * len(tasks))
        returns: dict[int, JobReturn] = {}
        for task, job in zip(tasks, submitted, strict=True):
            nums = [num for num, _ in task]
            returns.update(zip(nums, task_returns(job, task, output_dirs), strict=True))
        return [returns[num] for num in sorted(returns)]  # in the order of job_overrides

    def tasks(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
              ) -> tuple[list[Task], dict[int, Path]]:  # fmt: skip
        """The sweep's jobs in Slurm tasks: each group's jobs in order, ``jobs_per_task`` at a
        time; and each job's dir, made here with its overrides (so that the summary sees every
        job); its task writes the rest of its ``.hydra`` files."""
        from pipeline.group import group_key  # torch loads here

        compose = Composer(self.hydra_context.config_loader, self.config)
        groups: dict[str, Task] = {}
        output_dirs: dict[int, Path] = {}
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            config = job_config(compose(list(overrides)), num, overrides_only=True)
            output_dirs[num] = Path(config.hydra.runtime.output_dir)
            groups.setdefault(group_key(config), []).append((num, list(overrides)))
        size = self.jobs_per_task
        tasks = [jobs[i : i + size] for jobs in groups.values() for i in range(0, len(jobs), size)]
        return tasks, output_dirs

    def executor(self) -> Any:
        """submitit's Slurm executor with this launcher's settings, as the base class makes it."""
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        common = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{key if key in common else f"slurm_{key}": value for key, value in params.items()}
        )
        return executor

    def __call__(self, task: Task, singleton_state: dict) -> list[JobReturn]:  # type: ignore[override]
        """In the Slurm task: compose the task's jobs, write their dirs and train them."""
        import submitit

        Singleton.set_state(singleton_state)
        setup_globals()
        slurm_job = submitit.JobEnvironment().job_id
        compose = Composer(self.hydra_context.config_loader, self.config)
        configs = [job_config(compose(overrides), num, slurm_job) for num, overrides in task]
        console_logging(configs[0])
        from pipeline.group import launch, run_alone  # torch and MLflow load here
        from pipeline.runtime import interrupts, slurm

        interrupts.install()  # after submitit's handlers, which it hands USR2 on to
        try:
            alone = run_alone(self.hydra_context, self.task_function)
            return launch(configs, alone, self.jobs_per_task)
        except interrupts.Stop as stop:
            runs = "this run" if len(configs) == 1 else f"these {len(configs)} runs"
            slurm.stopped(stop, runs)


def task_returns(job: Any, task: Task, output_dirs: dict[int, Path]) -> list[JobReturn]:
    """The Slurm task's ``JobReturn``s, once it ends. A task that ended without them (killed,
    out of memory, out of requeues, its code raised) is one line; each of its jobs returns NaN,
    and the dir of each that did not finish gets the reason (the summary counts it failed)."""
    from pipeline.runtime.job import JobContext, read_job, record_job

    error = job.exception()  # None: the task returned its results
    if error is None:
        return job.results()[0]
    reason = f"Slurm task {job.job_id} ended without its results: {cause(job, error)}"
    log.error("%s (its log: %s)", reason, job.paths.stdout)
    returns = []
    for num, overrides in task:
        output_dir = output_dirs[num]
        if read_job(output_dir).get("status") != "FINISHED":
            record_job(JobContext(job_num=num, output_dir=output_dir), reason=reason)
        ret = JobReturn(overrides=overrides, working_dir=str(output_dir))
        ret.status, ret.return_value = JobStatus.COMPLETED, math.nan  # as a failed job's
        returns.append(ret)
    return returns


def cause(job: Any, error: Exception) -> str:
    """Why a task has no results: the exception's line where its code raised (submitit's
    FailedJobError holds the trace between two dashed lines); else Slurm's state for it
    (OUT_OF_MEMORY, TIMEOUT, CANCELLED, NODE_FAIL, ...)."""
    parts = str(error).split("-" * 22)
    if type(error).__name__ == "FailedJobError" and len(parts) >= 3:
        return parts[1].strip().splitlines()[-1]
    return f"state {job.state}"
