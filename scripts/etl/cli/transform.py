"""`etl transform`: PostgreSQL rows into BSON documents (etl.stages.transform)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.run.runlog import current_stage
from etl.stages.transform import transform


@click.command("transform")
@click.option("--db", "db", help="Target database whose folder data/transformed/<db>/ is written "
                                 "(default MONGO_DB_NAME).")
@click.option("--collection", "collections", multiple=True, help="Only this collection (repeatable).")
@click.option("--force", is_flag=True, help="Transform even the collections whose fingerprint is unchanged.")
@click.option("--workers", type=click.IntRange(1, 64), help="Parallel processes (default ETL_TRANSFORM_WORKERS).")
@config_options
def transform_cmd(cfg: Config, db: str | None, collections: tuple[str, ...], force: bool, workers: int | None):
    """Turn the local PostgreSQL rows into BSON documents (mongodump layout) per the mapping.

    Only collections whose table or mapping changed since the last run are transformed again.

    Example: etl transform --db bravo-1
    """
    result = transform(cfg, db, collections=list(collections) or None, force=force, workers=workers,
                       echo=lambda m: click.echo(m, err=True))
    done = result.transformed

    if (stage := current_stage()) is not None:  # the run's summary table and audit record
        stage.counts["rows"] = sum(result.collections[n].count for n in done)
        stage.counts["collections"] = len(done)
    click.echo(f"transformed {len(done)} of {len(result.collections)} collections into {result.folder} "
               f"in {result.seconds:.1f}s" + ("" if result.manifest_written else " (manifest unchanged)"))
