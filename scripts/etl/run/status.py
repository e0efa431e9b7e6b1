"""`etl status` (make status): where the configured database stands.

Each collection's document count, the accepted schema hash, the last run and its result
(from the audit collection, else the run's local copy), and the latest backup version.
"""

from __future__ import annotations

from typing import Any

from etl.adapters.mongodb import connect
from etl.core.config import Config, mask_uri
from etl.core.errors import DatabaseError
from etl.core.fsutil import read_json
from etl.core.paths import paths
from etl.run.runlog import AUDIT_COLLECTION, backup_versions, last_audit


def collection_counts(cfg: Config, db: str) -> dict[str, int]:
    """Documents per collection (the audit collection included: it is part of the database)."""

    client = connect(cfg["MONGO_URI"])
    try:
        database = client[db]
        names = sorted(n for n in database.list_collection_names() if not n.startswith("system."))
        return {name: database[name].count_documents({}) for name in names}
    except Exception as exc:  # noqa: BLE001 - a server error becomes one line
        raise DatabaseError(f"cannot read {db} at {mask_uri(cfg['MONGO_URI'])}: "
                            f"{type(exc).__name__}") from None
    finally:
        client.close()


def accepted_schema() -> dict[str, Any] | None:
    path = paths.schemas / "accepted.json"
    try:
        data = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"hash": None, "error": f"{path.name} is not readable JSON"}
    return {"hash": data.get("hash"), "taken_at": data.get("taken_at"),
            "tables": len(data.get("tables") or {})}


def latest_backup(db: str) -> dict[str, Any] | None:
    versions = backup_versions(db)
    if not versions:
        return None
    latest = versions[-1]
    found: dict[str, Any] = {"version": latest.name, "count": len(versions),
                             "path": str(latest.relative_to(paths.root))}
    try:
        manifest = read_json(latest / "manifest.json")
        for key in ("created_at", "schema_hash", "source_dump"):
            if isinstance(manifest.get(key), (str, int, float)):
                found[key] = manifest[key]
    except (OSError, ValueError):
        pass
    return found


def gather_status(cfg: Config) -> dict[str, Any]:
    db = cfg["MONGO_DB_NAME"]
    status: dict[str, Any] = {"database": db, "mongo_uri": mask_uri(cfg["MONGO_URI"])}
    try:
        status["collections"] = collection_counts(cfg, db)
        status["mongo_error"] = None
    except DatabaseError as exc:
        status["collections"] = None
        status["mongo_error"] = exc.line()
    status["accepted_schema"] = accepted_schema()
    audit, where = last_audit(cfg, db)
    status["last_run"] = None if audit is None else {
        "run_id": audit.get("run_id"), "status": audit.get("status"),
        "exit_code": audit.get("exit_code"), "started_at": audit.get("started_at"),
        "ended_at": audit.get("ended_at"), "duration_s": audit.get("duration_s"),
        "error": audit.get("error"), "report_file": audit.get("report_file"),
        "log_file": audit.get("log_file"), "from": where,
    }
    status["latest_backup"] = latest_backup(db)
    return status


def status_lines(status: dict[str, Any]) -> list[str]:
    lines = [f"database  {status['database']}  ({status['mongo_uri']})"]
    if status["collections"] is None:
        lines.append(f"  collections: unknown ({status['mongo_error']})")
    elif not status["collections"]:
        lines.append("  collections: none")
    else:
        width = max(len(n) for n in status["collections"])
        lines.append("  collections:")
        for name, count in status["collections"].items():
            tag = "  (run records)" if name == AUDIT_COLLECTION else ""
            lines.append(f"    {name:<{width}}  {count:>12,}{tag}")
    schema = status["accepted_schema"]
    lines.append("accepted schema  " + ("none yet (no run has accepted a snapshot)" if not schema
                                        else schema.get("error") or
                                        f"{schema['hash']}  ({schema['tables']} tables, taken {schema['taken_at']})"))
    run = status["last_run"]
    if run is None:
        lines.append("last run  none recorded")
    else:
        lines.append(f"last run  {run['run_id']}  {run['status']} (exit {run['exit_code']})  "
                     f"started {run['started_at']}, ended {run['ended_at'] or '—'}")
        if run.get("error"):
            lines.append(f"  error: {run['error']}")
        lines.append(f"  log {run['log_file']}   report {run['report_file']}")
    backup = status["latest_backup"]
    lines.append("latest backup  " + ("none" if backup is None else
                                      f"{backup['version']}  ({backup['count']} kept, {backup['path']})"))
    return lines
