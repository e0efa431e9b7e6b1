"""Migration scripts (etl.formats.migration) applied to a MongoDB database, each once.

Each application is recorded in the target database (`_etl_migrations`, one document per
script: file name, sha256, the backup version it ran against, the statements' results), so a
script runs once per database and a script edited after it ran is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError

from etl.adapters.mongodb import describe
from etl.core.errors import MigrationError
from etl.core.fsutil import sha256_file
from etl.formats.migration import migrations_dir, parse_script
from etl.model.migration import Step

log = logging.getLogger("etl.migrate")

RECORDS = "_etl_migrations"


def applied_record(db, path: Path) -> dict[str, Any] | None:
    return db[RECORDS].find_one({"_id": path.name})


def apply_migration(db, path: Path, backup_version: str | None) -> dict[str, Any]:
    """Run the script at `path` against `db` (a pymongo Database) once.

    The whole script is parsed before anything runs. Returns {"script", "sha256",
    "backup_version", "status": "applied" | "already-applied", "steps": [{line, op,
    collection, matched, modified | count}]}. A statement the server refuses (an operator it
    lacks, a failed cast under on_failure=fail) stops the script: MigrationError names the
    line; the steps before it have run, which is why the load backs up first.
    """
    if not path.is_file():
        raise MigrationError(f"migration script {path} does not exist")
    script = parse_script(path.read_text(encoding="utf-8"), path.name)
    digest = sha256_file(path)
    previous = applied_record(db, path)
    if previous is not None:
        if previous.get("sha256") != digest:
            raise MigrationError(f"{path.name} was applied to {db.name} before and has changed since",
                                 hint="migration scripts are never edited after they ran; write a new one")
        return {"script": path.name, "sha256": digest, "backup_version": previous.get("backup_version"),
                "status": "already-applied", "steps": previous.get("steps", [])}

    results: list[dict[str, Any]] = []
    for step in script.steps:
        coll = db[step.collection]
        try:
            result = _run(db, coll, step)
        except MigrationError:
            raise
        except PyMongoError as exc:
            raise MigrationError(f"{path.name}:{step.line}: {step.op} on "
                                 f"{step.collection}: {describe(exc)}") from None
        result = {"line": step.line, "op": step.op, "collection": step.collection, **result}
        if step.comment:
            result["comment"] = step.comment
        log.info("%s:%s %s %s %s", path.name, step.line, step.op, step.collection,
                 {k: v for k, v in result.items() if k in ("matched", "modified", "count")})
        results.append(result)

    record = {"_id": path.name, "sha256": digest, "backup_version": backup_version,
              "applied_at": dt.datetime.now(dt.timezone.utc), "steps": results}
    db[RECORDS].replace_one({"_id": path.name}, record, upsert=True)
    return {"script": path.name, "sha256": digest, "backup_version": backup_version,
            "status": "applied", "steps": results}


def _run(db, coll, step: Step) -> dict[str, Any]:
    if step.op == "updateMany":
        res = coll.update_many(step.filter or {}, step.update)
        return {"matched": res.matched_count, "modified": res.modified_count}
    if step.op == "count":
        return {"count": coll.count_documents(step.filter or {}), "label": step.message}
    if step.op == "assert_none":
        found = coll.count_documents(step.filter or {})
        if found:
            raise MigrationError(f"line {step.line}: {step.message} ({found} documents)")
        return {"count": 0}
    if step.op == "rename":
        if step.collection not in db.list_collection_names():
            return {"renamed": False}
        coll.rename(step.target)
        return {"renamed": True}
    if step.op == "drop":
        existed = step.collection in db.list_collection_names()
        coll.drop()
        return {"dropped": existed}
    raise MigrationError(f"line {step.line}: unknown op {step.op}")


def pending_scripts(db, folder: Path | None = None) -> list[Path]:
    """Scripts in `folder` not yet applied to `db`, oldest first (names sort by time)."""
    folder = folder or migrations_dir()
    if not folder.is_dir():
        return []
    done = {doc["_id"] for doc in db[RECORDS].find({}, {"_id": 1})}
    return [p for p in sorted(folder.glob("*.js")) if p.name not in done]


def apply_pending(db, backup_version: str | None, folder: Path | None = None) -> list[dict[str, Any]]:
    """Apply every pending script in order; what the incremental load calls after its backup."""
    return [apply_migration(db, path, backup_version) for path in pending_scripts(db, folder)]
