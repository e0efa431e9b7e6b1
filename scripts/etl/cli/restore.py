"""`etl restore`: the current dump into LOCAL_PG_DB (etl.stages.restore)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.stages.restore import restore


@click.command("restore")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Parallel pg_restore jobs (default: cores).")
@click.option("--force", is_flag=True, help="Restore even when the database already holds this dump.")
@config_options
def restore_cmd(cfg: Config, jobs: int | None, force: bool):
    """Restore the current dump (data/dumps/current.json) into LOCAL_PG_DB.

    The dump goes into a scratch database first; LOCAL_PG_DB is replaced only when the
    restore succeeded. With --source local nothing is restored.

    Example: etl restore -j 4
    """
    record = restore(cfg, jobs=jobs, force=force)
    click.echo(f"restore: {record['database']} ready ({record['source']})")
