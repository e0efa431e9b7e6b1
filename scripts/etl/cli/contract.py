"""`etl test-data`: the generated contract tests against the target database (etl.stages.contract)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.stages.contract import run_contract_tests


@click.command("test-data")
@click.option("--db", "db", help="Target database (default: MONGO_DB_NAME).")
@click.option("-k", "select", help="Only tests matching this pytest -k expression.")
@config_options
def test_data_cmd(db: str | None, select: str | None, cfg: Config) -> None:
    """Run the generated contract tests against the target MongoDB database.

    Each collection's documents are sampled and checked against its canonical JSON Schema and
    Pydantic model; its validator and indexes against the plan. Exit 4 when a check fails.

    Example: etl test-data --db bravo-1-test -k campaigns
    """
    cfg = cfg.with_overrides({"MONGO_DB_NAME": db}, origin="--db")
    run = run_contract_tests(cfg, select=select)
    click.echo(run.output.rstrip())
    run.raise_for_status()
    click.echo(f"Contract tests passed for database {cfg['MONGO_DB_NAME']}.")
