"""The names of the MLflow tags the pipeline writes and reads, in one place, so that the code
that writes a tag and the code that reads it cannot disagree.

Each constant is its tag's name in capitals, with ``_`` for ``.``. (Tests spell the names out:
they check what a store holds.)
"""

# A training run: what it is. Rerun and diff compare the provenance facts: every tag whose name
# starts with CODE or ENV (``code.version``, ``env.torch``, ...), and DATA_DIGEST.
RUN_KEY = "run.key"  # digest of the resolved config, code and data: the same experiment
DATA_DIGEST = "data.digest"  # SHA-256 of the data's splits
CODE = "code."
ENV = "env."
HYDRA_OVERRIDES = "hydra.overrides"  # a sweep's parent run has it too
HYDRA_JOB_NUM = "hydra.job_num"
BATCH_JOBS = "batch.jobs"  # trained in a batched group of this many jobs
RERUN_OF = "rerun_of"  # the run that `python -m pipeline.rerun` trained again

# A cross-validation fold's run (nested under its configuration's run)
CV_FOLD = "cv.fold"  # 1 .. cv.folds
CV_FOLDS = "cv.folds"
CV_SEED = "cv.seed"  # the seed of the fold assignment (data.split_seed)
CV_ASSIGNMENT = "cv.assignment"  # SHA-256 of every training row's fold: the same folds

# Where it runs, and how far it got
PROCESS_HOST = "process.host"
PROCESS_PID = "process.pid"
PROCESS_STARTED = "process.started"  # boot id and start time: tells a reused pid apart
PROCESS_SLURM_JOB = "process.slurm_job"
PROCESS_HEARTBEAT = "process.heartbeat"  # time in ms, written again while the run trains
JOB_OUTPUT_DIR = "job.output_dir"
PROGRESS_EPOCH = "progress.epoch"  # the last epoch whose metrics are all written
CHECKPOINT = "checkpoint"  # JSON: the newest checkpoint's path, epoch and SHA-256
CHECKPOINT_PREVIOUS = "checkpoint.previous"  # the one before it

# How it ended, and its resumptions
FAILURE_REASON = "failure_reason"
FAILURE_RESUMABLE = "failure.resumable"  # "false" on a run whose failure would happen again
RESUME_COUNT = "resume.count"
RESUME_EPOCHS = "resume.epochs"  # the epoch each attempt started from, comma-separated

# A sweep's parent run
SWEEP_DIR = "sweep.dir"  # marks a run as a sweep's parent
SWEEP_KEY = "sweep.key"  # overrides, sweeper and code: the same sweep launched again
SWEEP_LAUNCHER = "sweep.launcher"
SWEEP_SWEEPER = "sweep.sweeper"
SWEEP_METRIC = "sweep.metric"  # what ranks the sweep's runs
SWEEP_DIRECTION = "sweep.direction"  # minimize or maximize
BEST_RUN_ID = "best_run_id"
BEST_RUN_NAME = "best_run_name"
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own, on each job's run: its sweep's parent

# A registered model version (`python -m pipeline.register`; SWEEP_METRIC and SWEEP_DIRECTION too)
RUN_ID = "run_id"
RUN_NAME = "run_name"
OBJECTIVE = "objective"  # the run's value of SWEEP_METRIC
SWEEP_RUN_ID = "sweep_run_id"
