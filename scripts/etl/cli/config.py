"""`etl config`: the effective settings and where each came from, secrets masked."""

from __future__ import annotations

import json

import click

from etl.cli import config_options


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@config_options
def config_cmd(cfg, as_json: bool):
    """Show the effective configuration.

    Each value comes from, in rising precedence: pipeline.env, pipeline.local.env, the
    environment, a command-line flag. Passwords are shown as ***.

    Example: LOCAL_PG_PORT=6543 etl config
    """
    rows = cfg.describe()
    if as_json:
        click.echo(json.dumps({k: {"value": v, "from": o} for k, v, o in rows}, indent=2))
        return
    width = max(len(k) for k, _, _ in rows)
    for key, value, origin in rows:
        click.echo(f"{key:<{width}}  {value or '(empty)':<40}  {origin}")
