"""`etl list-versions` and `etl rollback`: put a backed-up version of a database back.

A backup version is `backups/<db>/<YYYY-MM-DD-NNN>/`: the mongodump layout (`<coll>.bson`,
`<coll>.metadata.json` with indexes and options, validators included) plus `manifest.json`.
A rollback

1. refuses anything that is not a well-formed version of an existing backup of that database,
2. checks every file against the manifest's sha256 before touching MongoDB,
3. backs up the current state (etl.backup.take_backup), so the rollback can itself be undone,
4. fills a staging collection per collection (options, validator, documents, indexes), then
   renames each over the live one (`dropTarget`), so readers see the old or the new collection,
   never a half-restored one,
5. verifies each restored collection's count and content checksum against the backup.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from pymongo.errors import PyMongoError

from etl.adapters.mongodb import connect, describe
from etl.adapters.mongodb.collections import Staging, is_staging
from etl.adapters.mongodb.dumps import take_backup
from etl.core import lock, runs
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
from etl.model.indexes import entry_indexes

log = logging.getLogger("etl.rollback")

STAGING_TAG = "rollback"  # staging collections are `<name>__staging_rollback`


def stage_collection(staging: Staging, name: str, folder: Path, batch_size: int) -> dict:
    """Fill the staging collection of `name` from the backup `folder` (its options, validator
    included, then its documents, then its indexes); return the count, content checksum and
    index names of the backup, to verify the restored collection against."""
    metadata = read_metadata(folder / f"{name}.metadata.json")
    staging.create(name, metadata.get("options") or {})
    digests: list[bytes] = []
    bson_path = folder / f"{name}.bson"
    with Progress(f"restore {name}", unit="docs") as bar:
        for batch in iter_batches(bson_path, batch_size) if bson_path.is_file() else ():
            digests.extend(doc_digest(doc) for doc in batch)
            # The documents coexisted with this validator when backed up; bypassing it
            # restores exactly what was there, including documents older than the validator.
            staging.insert(name, batch, bypass_validation=True)
            bar.advance(len(batch))
    indexes = entry_indexes(metadata.get("indexes") or [])
    staging.finish(name, indexes)
    return {"count": len(digests), "sha256": combine(digests), "indexes": sorted(ix.name for ix in indexes)}


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
        result.untouched = sorted(n for n in existing - set(entries) if not n.startswith("system.") and not is_staging(n))
        # Every collection is staged before the first swap: readers see the old version of
        # all of them, then the new one of each.
        staging = Staging(mdb, STAGING_TAG)
        try:
            expected = {name: stage_collection(staging, name, pinned, cfg["ETL_BATCH_SIZE"])
                        for name in sorted(entries)}
        except BaseException:
            staging.drop(sorted(entries))
            raise
        staging.swap(sorted(entries))
        for name, want in expected.items():
            _verify_restored(mdb, name, want)
            result.collections[name] = want
            log.info("%s: restored %d documents from %s", name, want["count"], version)
    except PyMongoError as exc:  # the server went away or refused a write
        raise DatabaseError(f"rollback of {db} to {version} failed: {describe(exc)}",
                            hint="collections already swapped stay restored; rerun the rollback") from None
    finally:
        client.close()
        shutil.rmtree(pinned, ignore_errors=True)
    return result
