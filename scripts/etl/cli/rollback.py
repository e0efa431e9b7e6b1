"""`etl list-versions` and `etl rollback`: backup versions, and putting one back (etl.stages.rollback)."""

from __future__ import annotations

import json
import sys

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.core.errors import BackupError
from etl.core.paths import paths
from etl.formats.backups import describe_version, list_versions, version_dir
from etl.run import runlog
from etl.stages.rollback import rollback


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@click.command("list-versions")
@click.option("--db", help="Only this database (default: every database with backups).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@config_options
def list_versions_cmd(cfg: Config, db: str | None, as_json: bool):
    """List backup versions: database, time, collections, counts, source dump, schema, size.

    Example: etl list-versions --db bravo-1
    """
    versions = list_versions(db)
    if as_json:
        click.echo(json.dumps(versions, indent=2, default=str))
        return
    if not versions:
        click.echo(f"No backups{f' of {db}' if db else ''} in {paths.backups}.")
        return
    header = ("version", "database", "created", "colls", "documents", "source dump", "schema", "size")
    rows = [(v["version"], v["database"], str(v["created_at"] or "")[:19], str(len(v["collections"])),
             str(v["documents"]), str(v["source_dump"] or "-"), (v["schema_hash"] or "-")[:12],
             _human(v["size"])) for v in versions]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@click.command("rollback")
@click.option("--version", "version", required=True, help="Backup version, YYYY-MM-DD-NNN.")
@click.option("--db", help="Database to restore (default: MONGO_DB_NAME).")
@click.option("--yes", is_flag=True, help="Do not ask; required when not at a terminal.")
@config_options
def rollback_cmd(cfg: Config, version: str, db: str | None, yes: bool):
    """Restore a backup version; the current state is backed up first so it can be undone.

    Replaces every collection in the backup (documents, indexes, validator) and verifies
    counts and checksums. `make rollback VERSION=…` passes --yes.

    Example: etl rollback --version 2025-06-28-001 --db bravo-1 --yes
    """
    cfg = cfg.with_overrides({"MONGO_DB_NAME": db})
    db = cfg["MONGO_DB_NAME"]
    info = describe_version(version_dir(db, version))
    what = (f"Roll {db} back to {version} ({info['created_at'] or 'time unknown'}): replaces "
            f"{len(info['collections'])} collections ({', '.join(info['collections'])}), "
            f"{info['documents']} documents.")
    if not yes:
        if not sys.stdin.isatty():
            raise BackupError(f"rollback of {db} to {version} needs --yes when not run at a terminal")
        click.echo(what)
        if not click.confirm("Proceed?", default=False):
            raise BackupError("rollback cancelled; nothing changed")

    with runlog.stage("rollback", cfg) as st:
        result = rollback(cfg, db, version)
        st.counts["documents"] = sum(res["count"] for res in result.collections.values())
        st.info["rollback"] = {"version": version, "pre_rollback_backup": result.pre_rollback_backup}
    if result.pre_rollback_backup:
        click.echo(f"Backed up the current state as {result.pre_rollback_backup} "
                   f"(undo: etl rollback --version {result.pre_rollback_backup} --db {db})")
    for name, res in result.collections.items():
        click.echo(f"  {name}: {res['count']} documents, {len(res['indexes'])} indexes, checksum verified")
    if result.untouched:
        click.echo(f"  not in the backup, left as they are: {', '.join(result.untouched)}")
    click.echo(f"Restored {db} to {version}.")
