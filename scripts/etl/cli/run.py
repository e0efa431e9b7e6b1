"""`etl run` (= `make all`): the master run (etl.run.master)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from etl.cli import config_options
from etl.core.config import SOURCES, Config
from etl.core.errors import RunError
from etl.model.guard import parse_accept
from etl.run.master import RunOptions, run_pipeline


def _accept_list(values) -> list[str]:
    names = parse_accept(values)
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", name):
            raise RunError(f"--accept-shrink: {name[:60]!r} is not a collection name")
    return names


@click.command("run")
@click.option("--source", type=click.Choice(SOURCES), help="Where the dump comes from (ETL_SOURCE).")
@click.option("--auto-latest", is_flag=True, help="Take the newest dump in S3 without asking.")
@click.option("--key", help="A specific S3 object key to acquire.")
@click.option("--db", help="Target MongoDB database (MONGO_DB_NAME), e.g. a parallel bravo-1-20261126.")
@click.option("--interactive", is_flag=True, help="Ask at the terminal about breaking changes.")
@click.option("--yes-safe", is_flag=True,
              help="Apply safe changes without asking; review changes need recorded decisions.")
@click.option("--decisions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A decisions file (YAML/JSON) to apply for this run.")
@click.option("--accept-shrink", "accept_shrink", multiple=True, metavar="COLLECTION[,…]",
              help="Let the anomaly guard load these collections although they shrank (recorded in the audit).")
@config_options
def run_cmd(cfg: Config, source, auto_latest, key, db, interactive, yes_safe, decisions, accept_shrink):
    """Run the whole pipeline: acquire → … → push; only stale stages do work.

    One run at a time (.run/etl.lock). Writes logs/etl/<run id>.log, an audit record in
    the etl_audit collection, reports/run-<run id>.html and, when CLOUDWATCH_LOG_GROUP is set,
    CloudWatch Logs, and alerts (ALERT_ON, ALERT_WEBHOOK_URL, ALERT_SMTP_*). Without
    --interactive nothing prompts (safe for cron). Exits with the pipeline's code: 0 ok,
    1 error, 3 decisions pending, 4 validation failed, 5 the anomaly guard stopped the load.

    Example: etl run --source s3 --auto-latest --db bravo-1-20261126
    """
    opts = RunOptions(source=source, auto_latest=auto_latest, key=key, db=db,
                      interactive=interactive, yes_safe=yes_safe,
                      decisions=decisions.resolve() if decisions else None,
                      accept_shrink=",".join(_accept_list(accept_shrink)) or None)
    code, _ = run_pipeline(cfg, opts, opts.argv())
    if code:
        raise click.exceptions.Exit(code)
