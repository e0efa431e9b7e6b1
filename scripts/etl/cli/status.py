"""`etl status`: where the configured database stands (etl.run.status)."""

from __future__ import annotations

import json

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.core.errors import DatabaseError
from etl.run.status import gather_status, status_lines


@click.command("status")
@click.option("--db", help="Database to show (default MONGO_DB_NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@config_options
def status_cmd(cfg: Config, db: str | None, as_json: bool):
    """Show the configured database: counts, accepted schema, last run, latest backup.

    Exits 1 (after printing everything else) when MongoDB cannot be read.

    Example: etl status --db bravo-1 --json | jq .last_run.status
    """
    status = gather_status(cfg.with_overrides({"MONGO_DB_NAME": db}))
    if as_json:
        click.echo(json.dumps(status, indent=2, default=str))
    else:
        for line in status_lines(status):
            click.echo(line)
    if status["mongo_error"]:
        raise DatabaseError(status["mongo_error"])
