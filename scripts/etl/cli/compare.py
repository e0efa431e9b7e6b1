"""`etl compare A B`: two MongoDB databases side by side (etl.run.compare)."""

from __future__ import annotations

import json

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.core.errors import EXIT_CHANGES
from etl.run.compare import compare_databases, compare_lines


@click.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--sample", default=20, show_default=True, type=click.IntRange(0, 10_000),
              help="Documents per collection compared field by field (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--exit-code", is_flag=True, help="Exit 2 when the databases differ (like diff).")
@config_options
def compare_cmd(cfg: Config, a: str, b: str, sample: int, as_json: bool, exit_code: bool):
    """Compare two MongoDB databases side by side: counts, indexes, validators, documents.

    Example: etl compare bravo-1 bravo-1-20261126
    """
    result = compare_databases(cfg, a, b, sample)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        for line in compare_lines(result):
            click.echo(line)
    if exit_code and not result["identical"]:
        raise click.exceptions.Exit(EXIT_CHANGES)
