"""`etl sample`: the synthetic media_tool sample dump, uploaded to S3 on request (etl.stages.sample)."""

from __future__ import annotations

from pathlib import Path

import click

from etl.cli import config_options
from etl.core.config import Config, pg_conninfo
from etl.stages.sample import (
    DEFAULT_METRICS_ROWS,
    DEFAULT_SEED,
    VARIANTS,
    build_sample,
    seed_s3,
)


@click.command("sample")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Dump file to write [default: data/sample/media_tool.dump, or media_tool-<variant>.dump].")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=DEFAULT_SEED, show_default=True,
              help="Same seed, same data.")
@click.option("--metrics-rows", type=click.IntRange(min=0), default=DEFAULT_METRICS_ROWS, show_default=True,
              help="Rows in daily_metrics, the big table.")
@click.option("--variant", type=click.Choice(VARIANTS), default="base", show_default=True,
              help="`changed`: the same data after a schema release (docs/sample-data.md).")
@click.option("--force", is_flag=True, help="Rebuild even when the dump is up to date.")
@click.option("--upload", is_flag=True, help="Also upload the dump to s3://$S3_BUCKET/$S3_PREFIX.")
@click.option("--key", default=None, help="S3 key for --upload [default: $S3_PREFIX + a name from the parameters].")
@config_options
def sample_cmd(cfg: Config, out: Path | None, seed: int, metrics_rows: int, variant: str, force: bool,
               upload: bool, key: str | None) -> None:
    """Build the synthetic media_tool sample dump (pg_dump custom format).

    Generates the database in a scratch database on the local PostgreSQL (LOCAL_PG_*),
    dumps it and drops the scratch database. An up-to-date dump is kept as it is.

    Example: etl sample --metrics-rows 100000 --upload
    """
    result = build_sample(pg_conninfo(cfg, "postgres"), out, seed, metrics_rows, variant, force=force)
    click.echo(result.summary())
    if upload:
        click.echo(seed_s3(cfg, result.path, key).summary())
