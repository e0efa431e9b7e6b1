"""`etl backup`: versioned backups of MongoDB collections, taken before every load.

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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


from etl.formats.dumpdir import (RAW_CODEC, BsonWriter, iter_docs, metadata, read_manifest,
                          read_metadata, verify, write_manifest, write_metadata)
from etl.core.config import Config
from etl.core.errors import BackupError, DatabaseError
from etl.adapters.mongodb import check_db_name, connect, describe
from etl.core.paths import paths
from etl.formats.provenance import accepted_schema_hash, source_dump
from etl.core.progress import Progress

log = logging.getLogger("etl.backup")

VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{3}")


def versions(db: str) -> list[str]:
    """Complete versions of `db`, oldest first."""
    base = paths.backups / check_db_name(db)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and VERSION_RE.fullmatch(p.name) and (p / "manifest.json").is_file())


def _reserve(db: str, now: dt.datetime) -> tuple[str, Path]:
    """The next version number of the day and its (hidden) work folder, claimed atomically so
    two backups at once never share a number."""
    base = paths.backups / db
    base.mkdir(parents=True, exist_ok=True)
    day = now.strftime("%Y-%m-%d")
    taken = {p.name.lstrip(".").removeprefix("partial-") for p in base.iterdir()}
    n = max([int(v[-3:]) for v in taken if VERSION_RE.fullmatch(v) and v.startswith(day)] + [0])
    while True:
        n += 1
        if n > 999:
            raise BackupError(f"{db}: 999 backups today already", hint="prune backups/ by hand")
        version = f"{day}-{n:03d}"
        work = base / f".partial-{version}"
        try:
            work.mkdir()
        except FileExistsError:
            continue
        if (base / version).exists():
            work.rmdir()
            continue
        return version, work


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
    from pymongo.errors import PyMongoError

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


def prune(db: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions of `db`; returns the deleted ones."""
    found = versions(db)
    doomed = found[:-keep] if keep > 0 else []
    for version in doomed:
        shutil.rmtree(paths.backups / db / version, ignore_errors=True)
        log.info("retention (%d): removed backup %s of %s", keep, version, db)
    return doomed


@dataclass
class BackupVersion:
    database: str
    version: str
    folder: Path
    manifest: dict[str, Any]

    @property
    def collections(self) -> list[str]:
        return sorted(self.manifest.get("collections") or {})

    def metadata(self, name: str) -> dict[str, Any]:
        return read_metadata(self.folder / f"{name}.metadata.json")

    def documents(self, name: str) -> Iterator[dict[str, Any]]:
        path = self.folder / f"{name}.bson"
        return iter_docs(path) if path.is_file() else iter(())


def read_backup(db: str, version: str, *, check: bool = True) -> BackupVersion:
    """A backup version, with every file checked against its manifest's sha256 (`check`)."""
    db = check_db_name(db)
    if not VERSION_RE.fullmatch(version or ""):
        raise BackupError(f"malformed backup version {str(version)[:40]!r}: expected YYYY-MM-DD-NNN")
    folder = paths.backups / db / version
    if not (folder / "manifest.json").is_file():
        raise BackupError(f"no backup {version} of {db}", hint="`make list-versions` lists them")
    manifest = read_manifest(folder)
    if check:
        verify(folder, manifest)
    return BackupVersion(db, version, folder, manifest)
