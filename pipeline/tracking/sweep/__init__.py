"""Sweeps, one job per module: the Hydra callbacks around a multirun, in the process that
launches it (``callbacks``); the sweep's parent run, opened first and given the summary last
(``parent``); every job's outcome and the best one (``results``); the summary table
(``table``); and the plot of every job's cost (``curves``). The ``sweep.json`` the jobs share
is written and read by ``pipeline.runtime.job``."""
