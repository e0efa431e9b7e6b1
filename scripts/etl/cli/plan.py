"""`etl plan` (= `make plan`): what `make all` would do now, without doing it (etl.run.plan)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.run.plan import Options, build_run_plan, render_text


@click.command("plan")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON for scripts.")
@click.option("--db", help="Target database (default MONGO_DB_NAME).")
@click.option("--source", type=click.Choice(("s3", "direct", "file", "local")), help="Where the dump comes from (ETL_SOURCE).")
@click.option("--key", help="S3: the object the run would take instead of the newest.")
@click.option("--decisions", "decisions_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A decisions file the run would apply (DECISIONS_FILE).")
@click.option("--accept-shrink", "accept", multiple=True, metavar="COLLECTION[,…]",
              help="Collections the anomaly guard would let through (ACCEPT_SHRINK).")
@click.option("--mode", type=click.Choice(("full", "incremental")), default="full", show_default=True,
              help="The load mode the run would use (LOAD_MODE).")
@click.option("--full-refresh", is_flag=True, help="The run drops the collections the load does not bring (FULL_REFRESH=yes).")
@config_options
def plan_cmd(cfg: Config, as_json: bool, db: str | None, source: str | None, key: str | None,
             decisions_file: Path | None, accept: tuple[str, ...], mode: str, full_refresh: bool):
    """Show what `make all` would do now, without doing it; exits 0 (1 if the plan cannot be made).

    Stale stages and why, the schema changes and missing decisions, per collection the
    documents in MongoDB now and in the new dump, what would be backed up, loaded, dropped
    and migrated, and the exit code the run would end with. Writes nothing: MongoDB and S3
    are only read, a new dump is read in a scratch database that is dropped afterwards.

    Example: make plan   (or: etl plan --json | jq .exit_code)
    """
    cfg = cfg.with_overrides({"MONGO_DB_NAME": db, "ETL_SOURCE": source})
    opts = Options(key=key, decisions=decisions_file.resolve() if decisions_file else None,
                   accept=tuple(accept), mode=mode, full_refresh=full_refresh)
    plan = build_run_plan(cfg, opts)
    if as_json:
        click.echo(json.dumps(plan, indent=2, default=str))
    else:
        for line in render_text(plan):
            click.echo(line)

