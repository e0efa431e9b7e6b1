"""`etl migrate`: apply the migration scripts `etl decide` wrote, each once per database."""

from __future__ import annotations

from pathlib import Path

import click

from etl.adapters.mongodb import connect
from etl.adapters.mongodb.migrations import apply_migration, apply_pending
from etl.cli import config_options
from etl.core.errors import MigrationError
from etl.core.names import check_db_name
from etl.formats.migration import migrations_dir, parse_script


@click.command("migrate")
@click.argument("script", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--db", "db_name", help="Target database (default MONGO_DB_NAME).")
@click.option("--backup-version", help="The backup version taken before this migration.")
@click.option("--check", is_flag=True, help="Only parse the script(s); touch nothing.")
@config_options
def migrate_cmd(cfg, script: Path | None, db_name: str | None, backup_version: str | None,
                check: bool):
    """Apply migration scripts written by `etl decide` (each runs once per database).

    Without SCRIPT, applies every script in data/migrations/ not yet applied to the database.
    The incremental load does this itself after its backup; this command is for running one
    by hand. Record the backup taken before with --backup-version.

    Example: etl migrate --db bravo-1 --backup-version 2026-11-26-001
    """
    if check:
        targets = [script] if script else sorted(migrations_dir().glob("*.js"))
        for path in targets:
            if not path.is_file():
                raise MigrationError(f"migration script {path} does not exist")
            parsed = parse_script(path.read_text(encoding="utf-8"), path.name)
            click.echo(f"{path.name}: {len(parsed.steps)} statements, format ok")
        return
    name = check_db_name(db_name or cfg["MONGO_DB_NAME"])
    db = connect(cfg["MONGO_URI"])[name]
    results = [apply_migration(db, script, backup_version)] if script else apply_pending(db, backup_version)
    if not results:
        click.echo(f"{name}: no pending migrations")
    for res in results:
        touched = sum(s.get("modified", 0) for s in res["steps"])
        click.echo(f"{res['script']}: {res['status']} on {name} ({len(res['steps'])} statements, "
                   f"{touched} documents modified; backup {res['backup_version'] or 'not recorded'})")
