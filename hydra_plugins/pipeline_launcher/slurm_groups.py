"""``hydra/launcher=slurm_groups``, where hydra-submitit-launcher is installed (the ``submitit``
extra): the launcher is in ``_slurm_groups``, which Hydra's plugin scan skips, so a plain
install (no submitit) does not warn on every command that it cannot import it."""

import importlib.util

if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from hydra_plugins.pipeline_launcher._slurm_groups import (  # noqa: F401
        GroupedSlurmLauncher,
        task_returns,
    )
