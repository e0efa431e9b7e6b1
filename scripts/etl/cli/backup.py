"""`etl backup`: a versioned backup of MongoDB collections now (etl.adapters.mongodb.dumps)."""

from __future__ import annotations

import click

from etl.adapters.mongodb.dumps import take_backup
from etl.cli import config_options
from etl.core.config import Config
from etl.core.names import check_db_name
from etl.core.paths import paths


@click.command("backup")
@click.option("--db", "db", help="Database to back up (default MONGO_DB_NAME).")
@click.option("--collection", "collections", multiple=True, help="Only this collection (repeatable).")
@config_options
def backup_cmd(cfg: Config, db: str | None, collections: tuple[str, ...]):
    """Back up MongoDB collections to backups/<db>/<YYYY-MM-DD-NNN>/ (mongodump layout).

    Keeps the newest MONGO_BACKUP_RETENTION versions.

    Example: etl backup --db bravo-1
    """
    db = check_db_name(db or cfg["MONGO_DB_NAME"])
    version = take_backup(cfg, db, list(collections) or None)
    if version is None:
        click.echo(f"{db}: nothing to back up")
    else:
        click.echo(f"backup {version} of {db} in {paths.backups / db / version}")
