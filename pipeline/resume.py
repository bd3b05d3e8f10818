"""Continue an interrupted run in place: ``python -m pipeline.resume RUN_ID``.

The run goes on from its last checkpoint (from epoch 0 if it has none), as the same run id, with
its recorded config, and ends with one value per epoch in every history, as if it had never
stopped. It may have been left KILLED (Ctrl-C, SIGTERM), FAILED by an error that need not
repeat, or RUNNING by a process that is gone (kill -9, power loss). A FINISHED run is left as it
is. ``--list`` shows the experiment's interrupted runs, newest first, and how to resume each.
"""

from __future__ import annotations

from pipeline import cli

EXAMPLE = "python -m pipeline.resume 2b18c0ffee8156    (or: python -m pipeline.resume --list)"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("resume", __doc__, EXAMPLE)
    parser.add_argument("run_id", metavar="RUN_ID", nargs="?", help="the run to continue")
    parser.add_argument("--list", action="store_true", help="list the interrupted runs")
    parser.add_argument("--experiment", default=None, help="whose runs --list shows")
    args = parser.parse_args(argv)
    if args.list == bool(args.run_id):
        parser.error("give a RUN_ID, or --list")

    from pipeline.tracking.store.access import open_store, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    client = open_store(uri)
    if args.list:
        return list_interrupted(client, args.experiment)
    return resume(client, uri, args.run_id)


def resume(client, uri: str, run_id: str) -> int:
    """Train the run's recorded config again, continuing the run (``tracking.resume``)."""
    from pipeline.config import compose_config, validate
    from pipeline.errors import PipelineError, first_line
    from pipeline.tracking.query import lookup
    from pipeline.tracking.resume.relaunch import hydra_value, recorded_overrides, train_again
    from pipeline.tracking.resume.state import State, state, why_not
    from pipeline.tracking.run.files import recorded_config
    from pipeline.tracking.store.access import fetch_run
    from pipeline.tracking.store.redact import redact

    run = fetch_run(client, run_id)
    lookup.refuse_fold(run, "resume")
    if state(run) == State.finished:
        print(f"Run {run_id} ({redact(run.info.run_name)}) is FINISHED: nothing to resume.")
        return 0
    if reason := why_not(run):
        raise PipelineError(redact(reason))
    overrides = recorded_overrides(run, recorded_config(client, run_id))
    try:
        validate(compose_config(overrides))
    except Exception as err:  # a Hydra or OmegaConf error, or a ConfigError
        raise PipelineError(
            f"The recorded config of run {run_id} no longer composes: {first_line(err)}. "
            "Fix: check out the code the run was made with (its code.commit tag) and resume "
            "from there"
        ) from None
    experiment = client.get_experiment(run.info.experiment_id).name
    run_settings = [f"tracking.resume={run_id}", f"tracking.experiment={hydra_value(experiment)}"]
    return train_again([*overrides, *run_settings], uri)


def list_interrupted(client, experiment: str | None) -> int:
    """Print the experiment's interrupted runs, newest first, with how far each got."""
    import json

    from pipeline.config import compose_config
    from pipeline.errors import PipelineError
    from pipeline.tags import CHECKPOINT, PROGRESS_EPOCH
    from pipeline.tracking.resume.state import interrupted_runs
    from pipeline.tracking.store.access import find_experiment
    from pipeline.tracking.store.redact import redact

    name = experiment or compose_config().tracking.experiment
    found = find_experiment(client, name)
    if found is None:
        raise PipelineError(f"No experiment {name!r} in this store. Fix: pass --experiment NAME")
    runs = interrupted_runs(client, found.experiment_id)
    if not runs:
        print(f"No interrupted runs in experiment {name!r}.")
        return 0
    print(f"Interrupted runs of experiment {name!r}, newest first:")
    for run in runs:
        tags, epochs = run.data.tags, run.data.params.get("epochs", "?")
        saved = json.loads(tags.get(CHECKPOINT) or "null")
        where = f"checkpoint at epoch {saved['epoch']}" if saved else "no checkpoint"
        status = "RUNNING, process gone" if run.info.status == "RUNNING" else run.info.status
        print(
            f"  {run.info.run_id}  {redact(run.info.run_name)}  {status}  "
            f"epoch {tags.get(PROGRESS_EPOCH, '?')}/{epochs} recorded, {where}\n"
            f"    python -m pipeline.resume {run.info.run_id}"
        )
    return 0


if __name__ == "__main__":
    cli.run(main)
