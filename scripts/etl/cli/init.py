"""`etl init` (`make init`): set the pipeline up for another database (etl.stages.init)."""

from __future__ import annotations

import sys

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.stages.init import InitRefused, apply, describe, plan_init


def _at_terminal() -> bool:
    return sys.stdin.isatty()


@click.command("init")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts): remove and reset right away.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed and reset.")
@config_options
def init_cmd(cfg: Config, yes: bool, dry_run: bool) -> None:
    """Set the pipeline up for the database LOCAL_PG_* and the source point at.

    Removes the accepted schema and everything derived from it (snapshots, canonical schemas,
    mapping, generated artifacts, data/, .make/) and writes empty rules and decisions, after
    saying so and asking; the next `make all` accepts the database's schema as the baseline
    and loads it. Backups, logs, reports and settings stay; MongoDB is not touched. Without a
    terminal it needs --yes (exit 1 otherwise, nothing changed).

    Example: LOCAL_PG_DB=crm etl init --yes && make all SOURCE=local
    """
    plan = plan_init()
    click.echo(describe(plan, cfg))
    if dry_run:
        click.echo("Dry run: nothing was changed.")
        return
    if not plan.changes_anything:
        click.echo("Already set up: nothing to change.")
        return
    if not yes:
        if not _at_terminal():
            raise InitRefused("etl init removes the accepted schema and the state derived from it; "
                              "nothing was changed", hint="confirm at a terminal, or pass --yes (make init YES=1)")
        if not click.confirm("Remove and reset these?", default=False):
            click.echo("Nothing was changed.")
            return
    apply(plan)
    click.echo(f"Done: {len(plan.remove)} removed, rules and decisions empty. Next: `make all`.")
