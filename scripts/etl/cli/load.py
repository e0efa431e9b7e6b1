"""`etl load`: the export into MongoDB, after a backup (etl.stages.load)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.core.errors import LoadError
from etl.core.names import check_db_name
from etl.run.runlog import current_stage
from etl.stages.load import MODES, load


@click.command("load")
@click.option("--db", "db", help="Target database (default MONGO_DB_NAME); another name loads a parallel database.")
@click.option("--from", "source", help="Folder data/transformed/<name>/ to load (default: the target's own).")
@click.option("--mode", type=click.Choice(MODES), default="full", show_default=True,
              help="full: staging + atomic swap; incremental: upsert by _id, local-only documents kept.")
@click.option("--prune", is_flag=True, help="incremental: remove documents whose rows are gone.")
@click.option("--drop-database", is_flag=True, help="Full refresh: drop every other collection of the database.")
@click.option("--collection", "collections", multiple=True, help="Only this collection (repeatable).")
@click.option("--no-backup", is_flag=True, help="Skip the backup even when MONGO_BACKUP_BEFORE_LOAD is true.")
@click.option("--yes", is_flag=True, help="Confirm a destructive option (--drop-database, --prune).")
@config_options
def load_cmd(cfg: Config, db: str | None, source: str | None, mode: str, prune: bool, drop_database: bool,
             collections: tuple[str, ...], no_backup: bool, yes: bool):
    """Load data/transformed/<db>/ into MongoDB, after a backup (MONGO_BACKUP_BEFORE_LOAD).

    Example: etl load --db bravo-1-20250628 --from bravo-1
    """
    target = check_db_name(db or cfg["MONGO_DB_NAME"])
    if prune and mode != "incremental":
        raise LoadError("--prune applies to --mode incremental (a full load replaces every collection)")
    if (drop_database or prune) and not yes:
        what = (f"drop every collection of {target} that the load does not bring"
                if drop_database else f"delete the documents of {target} whose rows are gone, local-only ones included")
        raise LoadError(f"this would {what}", hint="add --yes to go ahead")
    result = load(cfg, target, source=source, mode=mode, prune=prune, drop_database=drop_database,
                  collections=list(collections) or None, backup=False if no_backup else None,
                  echo=lambda m: click.echo(m, err=True))
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.revalidated:
        click.echo(f"note: the server dropped the validator of {len(result.revalidated)} collection(s) in "
                   "renameCollection (MongoDB keeps it); each was set again with collMod", err=True)
    total = sum(result.counts.values())

    if (stage := current_stage()) is not None:  # the run's summary table and audit record
        stage.counts["documents"] = total
        if result.backup_version:
            stage.info["backup_version"] = result.backup_version
    phases = ", ".join(f"{name} {secs:.1f}s" for name, secs in result.phases.items())
    click.echo(f"loaded {total} documents into {len(result.counts)} collections of {target} ({mode}) in "
               f"{result.seconds:.1f}s" + (f" ({phases})" if phases else "") + (f"; backup {result.backup_version}" if result.backup_version else "")
               + (f"; dropped {', '.join(result.dropped)}" if result.dropped else ""))
