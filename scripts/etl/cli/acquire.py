"""`etl acquire`: fetch and verify a dump (etl.stages.acquire)."""

from __future__ import annotations

from pathlib import Path

import click

from etl.cli import config_options
from etl.core.config import SOURCES, Config
from etl.stages.acquire import acquire


@click.command("acquire")
@click.option("--source", type=click.Choice(SOURCES), help="Where the dump comes from (ETL_SOURCE).")
@click.option("--auto-latest", is_flag=True, help="S3: take the newest dump under S3_PREFIX (the default).")
@click.option("--key", help="S3: take this object key instead of the newest.")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@config_options
def acquire_cmd(cfg: Config, source: str | None, auto_latest: bool, key: str | None, path: Path | None):
    """Fetch and verify a production dump; point data/dumps/current.json at it.

    \b
    Examples:
      etl acquire --source s3 --auto-latest
      etl acquire --source s3 --key postgres-exports/media_tool-2026-11-25.dump
      etl acquire --source direct            # pg_dump over VPN, PROD_PG_DSN
      etl acquire --source file ./media_tool.dump
    """
    if path is not None and source is None:
        source = "file"
    cfg = cfg.with_overrides({"ETL_SOURCE": source})
    if key and auto_latest:
        raise click.UsageError("--key and --auto-latest exclude each other")
    pointer = acquire(cfg, key=key, file=path)
    if pointer["source"] == "local":
        click.echo(f"acquire: source local, using database {pointer['database']} as it is")
    else:
        click.echo(f"acquire: {pointer['file']} ({pointer['size']:,} bytes, sha256 {pointer['sha256'][:12]})")
