"""`etl list-versions` and `etl rollback`: put a backed-up version of a database back.

A backup version is `backups/<db>/<YYYY-MM-DD-NNN>/`: the mongodump layout (`<coll>.bson`,
`<coll>.metadata.json` with indexes and options, validators included) plus `manifest.json`.
A rollback

1. refuses anything that is not a well-formed version of an existing backup of that database,
2. checks every file against the manifest's sha256 before touching MongoDB,
3. backs up the current state (etl.backup.take_backup), so the rollback can itself be undone,
4. per collection, fills a staging collection (options, validator, documents, indexes) and
   renames it over the live one (`dropTarget`), so readers see the old or the new collection,
   never a half-restored one,
5. verifies each restored collection's count and content checksum against the backup.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pymongo.errors import PyMongoError

from etl.adapters.mongodb import connect, describe
from etl.adapters.mongodb.collections import keep_options
from etl.adapters.mongodb.dumps import take_backup
from etl.core import runs
from etl.core.config import Config
from etl.core.errors import BackupError, DatabaseError
from etl.core.fsutil import read_json
from etl.core.names import check_db_name
from etl.core.progress import Progress
from etl.formats.backups import _pin, version_dir
from etl.formats.dumpdir import (
    iter_batches,
    manifest_collections,
    read_metadata,
    verify,
)
from etl.model.bsoncodec import RAW_CODEC
from etl.model.checksums import combine, doc_digest

log = logging.getLogger("etl.rollback")

# etl.backup's take_backup skips "__staging_" collections, so an interrupted rollback's
# leftovers never end up in a backup.
STAGING_PREFIX = "__staging_rollback_"


# ---------------------------------------------------------------------------------------------
# Listing


# ---------------------------------------------------------------------------------------------
# Restoring


def _index_specs(metadata: dict) -> list[dict]:
    return [ix for ix in metadata.get("indexes") or [] if ix.get("name") != "_id_"]


def _create_staging(mdb, staging: str, options: dict, name: str) -> None:
    options = {k: v for k, v in options.items() if k not in ("uuid",)}
    if staging in mdb.list_collection_names():
        mdb.drop_collection(staging)  # left over by an interrupted rollback
    try:
        mdb.create_collection(staging, **options)
    except PyMongoError as exc:
        raise BackupError(f"{name}: creating it with the backup's options "
                          f"({', '.join(sorted(options)) or 'none'}) failed: {describe(exc)}") from None


def _swap(mdb, staging: str, name: str) -> None:
    """One `renameCollection … dropTarget`: atomic per collection. A refusal leaves the live
    collection as it was and drops the staging one; there is no two-step fallback, which
    would let readers see the collection missing."""
    try:
        mdb[staging].rename(name, dropTarget=True)
    except PyMongoError as exc:
        try:
            mdb.drop_collection(staging)
        except PyMongoError:
            pass
        raise BackupError(f"{name}: renameCollection {staging} -> {name} with dropTarget failed: "
                          f"{describe(exc)}; {name} was left as it was") from None


def restore_collection(mdb, name: str, folder: Path, batch_size: int) -> dict:
    """Restore one collection from `folder` into `mdb` through a staging collection; return
    the count and content checksum of the backup file."""
    metadata = read_metadata(folder / f"{name}.metadata.json")
    staging = f"{STAGING_PREFIX}{name}"
    _create_staging(mdb, staging, metadata.get("options") or {}, name)
    target = mdb[staging]
    digests: list[bytes] = []
    bson_path = folder / f"{name}.bson"
    with Progress(f"restore {name}", unit="docs") as bar:
        for batch in iter_batches(bson_path, batch_size) if bson_path.is_file() else ():
            digests.extend(doc_digest(doc) for doc in batch)
            # The documents coexisted with this validator when backed up; bypassing it
            # restores exactly what was there, including documents older than the validator.
            target.insert_many(batch, ordered=True, bypass_document_validation=True)
            bar.advance(len(batch))
    for spec in _index_specs(metadata):
        options = {k: v for k, v in spec.items() if k not in ("v", "key", "ns")}
        target.create_index(list(spec["key"].items()), **options)
    _swap(mdb, staging, name)
    keep_options(mdb, name, metadata.get("options") or {})
    return {"count": len(digests), "sha256": combine(digests),
            "indexes": sorted(ix["name"] for ix in _index_specs(metadata))}


def _verify_restored(mdb, name: str, expected: dict) -> None:
    coll = mdb[name]
    digests = [doc_digest(d) for d in coll.with_options(codec_options=RAW_CODEC).find()]
    if len(digests) != expected["count"] or combine(digests) != expected["sha256"]:
        raise BackupError(f"{name}: restored {len(digests)} documents that do not match the backup's "
                          f"{expected['count']} (checksum differs)")
    have = sorted(ix["name"] for ix in coll.list_indexes() if ix["name"] != "_id_")
    if have != expected["indexes"]:
        raise BackupError(f"{name}: restored indexes {have} differ from the backup's {expected['indexes']}")


def _backup_current(cfg: Config, db: str, names: list[str]) -> str | None:
    return take_backup(cfg, db, names, reason="before rollback") if names else None


@dataclass
class RollbackResult:
    database: str
    version: str
    pre_rollback_backup: str | None
    collections: dict[str, dict] = field(default_factory=dict)
    untouched: list[str] = field(default_factory=list)


def rollback(cfg: Config, db: str, version: str) -> RollbackResult:
    """Restore backup `version` of `db` (see the module docstring for the steps)."""
    db = check_db_name(db)
    folder = version_dir(db, version)
    entries = manifest_collections(read_json(folder / "manifest.json"))
    if not entries:
        raise BackupError(f"backup {version} of {db} lists no collections")
    verify(folder)

    with _exclusive():
        return _restore(cfg, db, version, folder, entries)


def _exclusive():
    """The run lock, unless this process is a stage of a run that already holds it (validate's
    rollback on invalid): a rollback must never interleave with a load."""
    from contextlib import nullcontext

    from etl.core import lock

    return nullcontext() if runs.current_run_id() else lock.acquire()


def _restore(cfg: Config, db: str, version: str, folder: Path, entries: dict) -> RollbackResult:
    pinned = _pin(folder)
    client = connect(cfg["MONGO_URI"])
    try:
        mdb = client[db]
        existing = set(mdb.list_collection_names())
        pre = _backup_current(cfg, db, sorted(existing & set(entries)))
        if pre:
            log.info("current state of %s backed up as %s", db, pre)
        result = RollbackResult(db, version, pre)
        result.untouched = sorted(n for n in existing - set(entries)
                                  if not n.startswith("system.") and "__staging_" not in n)
        for name in sorted(entries):
            expected = restore_collection(mdb, name, pinned, cfg["ETL_BATCH_SIZE"])
            _verify_restored(mdb, name, expected)
            result.collections[name] = expected
            log.info("%s: restored %d documents from %s", name, expected["count"], version)
    except PyMongoError as exc:  # the server went away or refused a write
        raise DatabaseError(f"rollback of {db} to {version} failed: {describe(exc)}", hint="collections already swapped stay restored; "
                            "rerun the rollback") from None
    finally:
        client.close()
        shutil.rmtree(pinned, ignore_errors=True)
    return result
