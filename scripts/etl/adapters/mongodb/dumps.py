"""MongoDB collections to and from the mongodump layout on disk: backups.

A version is `backups/<db>/<YYYY-MM-DD-NNN>/` (UTC date, NNN counting up within the day) in
the mongodump layout: `<coll>.bson`, `<coll>.metadata.json` (options as the server reports
them, validator included, and every index), plus `manifest.json` (version, database, time,
collections with counts and sha256 of every file, source dump, schema hash, size). A version
is built in a hidden folder and renamed into place when complete, so a listed version is
always whole. After each backup only the newest MONGO_BACKUP_RETENTION versions are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from typing import Any, Iterator

from pymongo.errors import PyMongoError

from etl.adapters.mongodb import connect, describe
from etl.core.config import Config
from etl.core.errors import DatabaseError
from etl.core.names import check_db_name
from etl.core.progress import Progress
from etl.formats.backups import _reserve, prune
from etl.formats.dumpdir import BsonWriter, metadata, write_manifest, write_metadata
from etl.formats.provenance import accepted_schema_hash, source_dump
from etl.model.bsoncodec import RAW_CODEC

log = logging.getLogger("etl.backup")


def _options(db, name: str) -> dict[str, Any]:
    """The collection's options as the server reports them (validator, validationLevel/Action,
    capped, collation…)."""
    for info in db.list_collections(filter={"name": name}):
        return dict(info.get("options") or {})
    return {}


def _indexes(coll) -> list[dict[str, Any]]:
    out = []
    for info in coll.list_indexes():
        entry = {k: v for k, v in dict(info).items() if k != "ns"}
        entry["key"] = dict(entry["key"])
        out.append(entry)
    return out


def _documents(coll) -> Iterator[Any]:
    """The collection's documents as raw BSON, written to the file as the server sent them."""
    return coll.with_options(codec_options=RAW_CODEC).find({}, batch_size=10_000)


def take_backup(cfg: Config, db: str, collections: list[str] | None = None, *, reason: str = "manual",
                client=None) -> str | None:
    """Back up `collections` of `db` (default: all of them) and return the version, or None when
    none of them exists (nothing to keep). Prunes to MONGO_BACKUP_RETENTION versions."""

    db = check_db_name(db)
    own = client is None
    client = client or connect(cfg["MONGO_URI"])
    try:
        mdb = client[db]
        try:
            existing = set(mdb.list_collection_names())
        except PyMongoError as exc:
            raise DatabaseError(f"cannot list the collections of {db}: {describe(exc)}") from None
        names = sorted(existing if collections is None else set(collections) & existing)
        names = [n for n in names if not n.startswith("system.") and "__staging_" not in n]
        if not names:
            log.info("backup of %s: none of %s exists, nothing to back up", db, collections)
            return None
        now = dt.datetime.now(dt.timezone.utc)
        version, work = _reserve(db, now)
        try:
            entries: dict[str, Any] = {}
            notes: list[str] = []
            for name in names:
                coll = mdb[name]
                options = _options(mdb, name)
                meta = metadata(name, _indexes(coll), options)
                meta_sha = write_metadata(work, name, meta)
                with BsonWriter(work / f"{name}.bson") as writer, \
                        Progress(f"backup {db}.{name}", unit="docs") as bar:
                    for doc in _documents(coll):
                        writer.write(doc)
                        bar.advance()
                    count, sha, size = writer.commit()
                entries[name] = {"name": name, "count": count, "sha256": sha, "metadata_sha256": meta_sha,
                                 "bytes": size, "indexes": sorted(ix["name"] for ix in meta["indexes"]),
                                 "has_validator": "validator" in options}
            manifest = {"format_version": 1, "kind": "backup", "version": version, "database": db,
                        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason": reason,
                        "collections": entries, "source_dump": source_dump(), "schema_hash": accepted_schema_hash(),
                        "size": sum(e["bytes"] for e in entries.values()), "notes": notes}
            write_manifest(work, manifest)
            os.rename(work, work.parent / version)
        except PyMongoError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise DatabaseError(f"backup of {db} failed while reading MongoDB: {describe(exc)}") from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    finally:
        if own:
            client.close()
    log.info("backup %s of %s: %s", version, db, ", ".join(f"{n} ({entries[n]['count']})" for n in names))
    prune(db, cfg["MONGO_BACKUP_RETENTION"])
    return version
