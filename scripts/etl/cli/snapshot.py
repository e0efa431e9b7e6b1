"""`etl snapshot`: the restored database's schema (etl.stages.snapshot)."""

from __future__ import annotations

from pathlib import Path

import click

from etl.cli import config_options
from etl.formats.snapshot import save_snapshot
from etl.stages.snapshot import take_snapshot


@click.command("snapshot")
@click.option("--db", "dbname", help="Database to introspect (default: LOCAL_PG_DB).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for current.json and history/ (default: schemas/snapshots).")
@config_options
def snapshot_cmd(cfg, dbname: str | None, out_dir: Path | None):
    """Snapshot the restored database's schema into schemas/snapshots/.

    current.json is rewritten only when the schema's hash changes, with a copy kept in
    history/<timestamp>-<hash12>.json, so an unchanged schema does not make later stages stale.

    Example: etl snapshot --db media_tool
    """
    if dbname:
        cfg = cfg.with_overrides({"LOCAL_PG_DB": dbname})
    snap = take_snapshot(cfg.pg_conninfo, load_views=cfg["ETL_LOAD_VIEWS"])
    path, written = save_snapshot(snap, out_dir)
    counts = (f"{len(snap['tables'])} tables, {len(snap['enums'])} enums, {len(snap['domains'])} domains, "
              f"{len(snap['views'])} views")
    state = "written" if written else "unchanged"
    click.echo(f"Snapshot of {snap['database']}: {counts}; hash {snap['hash'][:12]} ({state}: {path})")
