"""Register a run's model under a name and alias: ``python -m pipeline.register TARGET``.

TARGET is a run id, or a sweep's parent run id (then the sweep's best run by its objective).
The run's ``classifier`` model becomes a new version of ``--name`` (default
``softmax-regression``) in the MLflow Model Registry, tagged with the run and its objective,
and ``--alias`` (default ``champion``) moves to it. Prints the version and the model URI, which
``python -m pipeline.predict`` and ``mlflow models serve -m`` take.
"""

from __future__ import annotations

from pipeline import cli

EXAMPLE = "python -m pipeline.register 2fba20b9b0664e --alias champion"
DEFAULT_NAME = "softmax-regression"
DEFAULT_ALIAS = "champion"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("register", __doc__, EXAMPLE)
    parser.add_argument("target", metavar="TARGET", help="a run id, or a sweep's parent run id")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"default: {DEFAULT_NAME}")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help=f"default: {DEFAULT_ALIAS}")
    args = parser.parse_args(argv)

    from pipeline.tags import (
        OBJECTIVE,
        RUN_ID,
        RUN_NAME,
        SWEEP_DIRECTION,
        SWEEP_METRIC,
        SWEEP_RUN_ID,
    )
    from pipeline.tracking.query import lookup, registry
    from pipeline.tracking.store.access import fetch_run, open_store, resolve_tracking_uri

    registry.check_names(args.name, args.alias)
    client = open_store(resolve_tracking_uri(args.tracking_uri))
    target = fetch_run(client, args.target)
    lookup.refuse_fold(target, "register")
    sweep = target if lookup.is_sweep(target) else None
    run = lookup.best_run(client, sweep) if sweep else target
    model = registry.classifier_of(client, run)
    objective = lookup.objective(client, sweep, run)
    tags = {
        RUN_ID: run.info.run_id,
        RUN_NAME: run.info.run_name,
        SWEEP_METRIC: objective.metric,
        SWEEP_DIRECTION: objective.direction,
    }
    value = run.data.metrics.get(objective.metric)
    if value is not None:
        tags[OBJECTIVE] = repr(value)
    if sweep is not None:
        tags[SWEEP_RUN_ID] = sweep.info.run_id
    done = registry.register(client, model, args.name, args.alias, tags)

    chosen = f", the best of sweep {sweep.info.run_id}" if sweep else ""
    score = f"{objective.metric} {value:.6g}" if value is not None else "no objective"
    moved = f"moved from version {done.previous}" if done.previous else "new"
    print(f"Registered run {run.info.run_id} {run.info.run_name!r} ({score}{chosen})")
    print(f"as {done.name} version {done.version}, alias {done.alias!r} ({moved})")
    print(done.uri)
    return 0


if __name__ == "__main__":
    cli.run(main)
