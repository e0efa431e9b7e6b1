"""`etl load`: the transformed documents into MongoDB, after a backup.

* full (default): every collection is loaded into a staging collection
  `<name>__staging_<runid>` (ETL_BATCH_SIZE documents per insert), its validator and indexes
  are built there and its acknowledged count checked; only when every staging collection is
  complete is each one renamed over the live one (`renameCollection … dropTarget`). Readers see the old
  or the new collection, never a partial one; a failure before the swaps drops the staging
  collections and leaves the old data untouched.
* incremental: upsert by `_id` (ReplaceOne, upsert), so documents that exist only in MongoDB
  (local test data) stay; `--prune` removes the documents whose rows are gone. Collections of
  tables without a primary key have no stable `_id` and are always loaded in full.
* `--drop-database` (the seed's "Full refresh"): after the staging collections are complete,
  every other collection of the database is dropped, then the swaps run. Needs `--yes`.
* `--db NAME` loads a parallel database (`bravo-1-20250628`); the main one is not touched.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.errors import PyMongoError

from etl.adapters.mongodb import connect, describe
from etl.adapters.mongodb.collections import Staging, create_indexes
from etl.adapters.mongodb.dumps import take_backup
from etl.adapters.mongodb.migrations import apply_pending
from etl.core.config import Config
from etl.core.errors import BackupError, DatabaseError, LoadError
from etl.core.fsutil import write_atomic
from etl.core.names import check_db_name
from etl.core.paths import paths
from etl.core.progress import Progress
from etl.formats.dumpdir import (
    iter_batches,
    manifest_collections,
    read_manifest,
    read_metadata,
    verify,
)
from etl.model.bsoncodec import CODEC, RAW_CODEC
from etl.model.checksums import id_key
from etl.model.indexes import entry_indexes
from etl.model.validators import validation_options

log = logging.getLogger("etl.load")

MODES = ("full", "incremental")


@dataclass
class LoadResult:
    database: str
    mode: str
    backup_version: str | None
    counts: dict[str, int] = field(default_factory=dict)
    pruned: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Collections whose validator the server dropped in renameCollection, set again by collMod.
    revalidated: list[str] = field(default_factory=list)
    migrations: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # Where a full load's time went: documents into staging, indexes and validators built
    # there, the swaps.
    phases: dict[str, float] = field(default_factory=dict)





















def load(cfg: Config, db: str | None = None, *, source: str | None = None, mode: str = "full",
         prune: bool = False, drop_database: bool = False, collections: list[str] | None = None,
         backup: bool | None = None, echo: Callable[[str], None] | None = None) -> LoadResult:
    """Load `data/transformed/<source>/` (default: the target's own folder) into database `db`."""
    echo = echo or (lambda _m: None)
    start = time.perf_counter()
    db = check_db_name(db or cfg["MONGO_DB_NAME"])
    source = check_db_name(source or db)
    if mode not in MODES:
        raise LoadError(f"unknown load mode {mode!r}: full or incremental")
    folder = paths.transformed / source
    try:
        manifest = read_manifest(folder)
        verify(folder, manifest)
    except BackupError as exc:
        raise LoadError(f"transformed data for {source}: {exc}", hint="run `make transform` first") from None
    entries: dict[str, Any] = manifest.get("collections") or {}
    names = sorted(collections or entries)
    missing = [n for n in names if n not in entries]
    if missing:
        raise LoadError(f"{missing[0]} is not in {folder / 'manifest.json'}")
    if db != cfg["MONGO_DB_NAME"] and db not in cfg["MONGO_PARALLEL_DBS"]:
        echo(f"note: {db} is neither MONGO_DB_NAME nor listed in MONGO_PARALLEL_DBS")
    batch_size = cfg["ETL_BATCH_SIZE"]
    backup = cfg["MONGO_BACKUP_BEFORE_LOAD"] if backup is None else backup
    result = LoadResult(db, mode, None)
    client = connect(cfg["MONGO_URI"])
    try:
        mdb = client[db]
        existing = set(mdb.list_collection_names())
        doomed = sorted(n for n in existing if drop_database and n not in names and not n.startswith("system."))
        if backup:
            result.backup_version = take_backup(cfg, db, sorted(set(names) | set(doomed)),
                                                reason=f"before {mode} load", client=client)
            if result.backup_version:
                echo(f"backup {result.backup_version} of {db} taken")
        if mode == "incremental":
            # Documents that exist only here are kept by an incremental load, so they must
            # follow the accepted schema too: decide's migration scripts (renames, defaults,
            # casts) run first, recorded with the backup they ran against.
            result.migrations = apply_pending(mdb, result.backup_version)
            for applied in result.migrations:
                if applied.get("status") == "applied":
                    echo(f"migration {Path(applied['script']).name} applied "
                         f"(backup {result.backup_version or 'none'})")
        full = [n for n in names if mode == "full" or entries[n].get("id") == "none"]
        incremental = [n for n in names if n not in full]
        for n in full:
            if mode == "incremental":
                result.notes.append(f"{n}: no primary key, loaded in full")
        archived = {n: list(manifest_collections(manifest)[n].archived) for n in names}
        if full:
            _load_full(cfg, mdb, folder, full, entries, batch_size, doomed, result, echo, archived)
        for n in incremental:
            _load_incremental(mdb, folder, n, entries[n], batch_size, prune, result, echo, archived[n])
    except PyMongoError as exc:
        raise LoadError(f"the load of {db} failed: {describe(exc)}") from None
    finally:
        client.close()
    result.seconds = time.perf_counter() - start
    _stamp(db, manifest, result)
    return result


def _carry_archived(live, batch: list, keep: list[tuple[str, str]]) -> tuple[list, int]:
    """`batch` (raw documents) with the archived fields of the same `_id`s in `live` added.
    `keep` holds (field, archived name) pairs: a removed column's values live only in MongoDB,
    under the archived name once the decision's migration ran, or still under the field's own
    name when it has not (a full load does not run migrations); either way they land under the
    archived name. Returns the batch and how many documents got some."""
    ids = [d["_id"] for d in batch if "_id" in d]
    if not ids or not keep:
        return batch, 0
    found = {}
    projection = {name: 1 for pair in keep for name in pair}
    for old in live.find({"_id": {"$in": ids}}, projection):
        fields = {}
        for source, archived in keep:
            if archived in old:
                fields[archived] = (old[archived], None)
            elif source in old:
                fields[archived] = (old[source], source)
        if fields:
            found[id_key(old["_id"])] = fields
    if not found:
        return batch, 0
    out, carried = [], 0
    for raw in batch:
        fields = found.get(id_key(raw["_id"])) if "_id" in raw else None
        if fields:
            doc = bson.decode(raw.raw, codec_options=CODEC)
            # A field the transform writes again (a new column of the same name) is not the
            # removed one: only its archived copy counts then.
            add = {f: v for f, (v, source) in fields.items() if f not in doc and (source is None or source not in doc)}
            if add:
                doc.update(add)
                raw = RawBSONDocument(bson.encode(doc, codec_options=CODEC), RAW_CODEC)
                carried += 1
        out.append(raw)
    return out, carried


def _staging_options(meta: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The options a staging collection gets: those the transform wrote into the metadata
    (the canonical schema's validator), with the validation level and action of the settings
    (strict/error under ETL_SCHEMA_STRICT_MODE, moderate/warn otherwise)."""
    options = dict(meta.get("options") or {})
    if "validator" in options:
        options.update(validation_options(cfg["ETL_SCHEMA_STRICT_MODE"]))
    return options


def _load_full(cfg: Config, mdb, folder: Path, names: list[str], entries: dict[str, Any], batch_size: int,
               doomed: list[str], result: LoadResult, echo: Callable[[str], None],
               archived: dict[str, list[tuple[str, str]]] | None = None) -> None:
    staging = Staging(mdb, uuid.uuid4().hex[:8])
    # A load killed outright (SIGKILL, power) cannot drop its staging collections; the next
    # full load of the same collections does.
    leftovers = staging.leftovers(names)
    if leftovers:
        result.notes.append(f"dropped staging collections of an interrupted load: {', '.join(leftovers)}")
        staging.drop_named(leftovers)
    current = ""
    try:
        for n in names:
            current = n
            meta = read_metadata(folder / f"{n}.metadata.json")
            staging.create(n, _staging_options(meta, cfg))
            want = int(entries[n]["count"])
            keep = (archived or {}).get(n) or []
            carried = have = 0
            started = time.perf_counter()
            with Progress(f"load {mdb.name}.{n}", total=want, unit="docs") as bar:
                for batch in iter_batches(folder / f"{n}.bson", batch_size):
                    if keep:
                        batch, k = _carry_archived(mdb[n], batch, keep)
                        carried += k
                    have += insert_batch(staging, n, batch)
                    bar.advance(len(batch))
            _phase(result, "insert", started)
            if keep:
                result.notes.append(f"{n}: archived fields ({', '.join(a for _, a in keep)}) carried over on "
                                    f"{carried} documents")
            # What the server acknowledged, summed over the batches.
            if have != want:
                raise LoadError(f"{n}: the server acknowledged {have} documents into staging, the manifest says {want}")
            started = time.perf_counter()
            staging.finish(n, entry_indexes(meta.get("indexes") or []))
            _phase(result, "indexes", started)
            result.counts[n] = have
    except BaseException as exc:
        staging.drop(names)
        if isinstance(exc, (LoadError, DatabaseError)):
            raise LoadError(f"{exc} (old collections untouched, staging dropped)") from None
        if isinstance(exc, PyMongoError):
            raise LoadError(f"loading {mdb.name}.{current} failed before any swap: {describe(exc)} "
                            "(old collections untouched, staging dropped)") from None
        raise
    for n in doomed:
        mdb.drop_collection(n)
        result.dropped.append(n)
    started = time.perf_counter()
    try:
        staging.swap(names, on_swapped=lambda n: echo(f"{n}: {result.counts[n]} documents swapped in"))
    except DatabaseError as exc:
        raise LoadError(str(exc)) from None
    finally:
        result.revalidated = list(staging.revalidated)
    _phase(result, "swap", started)


def insert_batch(staging: Staging, collection: str, batch: list) -> int:
    """One batch into a staging collection; what the server acknowledged (a seam the tests
    use to stand for a server that acknowledges less)."""
    return staging.insert(collection, batch)


def _phase(result: LoadResult, name: str, started: float) -> None:
    result.phases[name] = round(result.phases.get(name, 0.0) + time.perf_counter() - started, 3)





def _load_incremental(mdb, folder: Path, name: str, entry: dict[str, Any], batch_size: int, prune: bool,
                      result: LoadResult, echo: Callable[[str], None],
                      keep: list[tuple[str, str]] | None = None) -> None:
    meta = read_metadata(folder / f"{name}.metadata.json")
    coll = mdb[name]
    seen: set[bytes] = set()  # id_key of every _id the export holds
    upserted = 0
    with Progress(f"upsert {mdb.name}.{name}", total=int(entry["count"]), unit="docs") as bar:
        carried = 0
        for batch in iter_batches(folder / f"{name}.bson", batch_size):
            if keep:
                batch, k = _carry_archived(coll, batch, keep)
                carried += k
            docs = [bson.decode(d.raw, codec_options=CODEC) for d in batch]
            if prune:
                seen.update(id_key(d["_id"]) for d in docs)
            coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
            upserted += len(docs)
            bar.advance(len(docs))
    try:
        create_indexes(coll, entry_indexes(meta.get("indexes") or []))
    except PyMongoError as exc:
        raise LoadError(f"{name}: building its indexes failed: {describe(exc)}") from None
    if keep:
        result.notes.append(f"{name}: archived fields ({', '.join(a for _, a in keep)}) carried over on "
                            f"{carried} documents")
    result.counts[name] = upserted
    if prune:
        gone = [doc["_id"] for doc in coll.with_options(codec_options=CODEC).find({}, {"_id": 1})
                if id_key(doc["_id"]) not in seen]
        for i in range(0, len(gone), batch_size):
            coll.delete_many({"_id": {"$in": gone[i:i + batch_size]}})
        result.pruned[name] = len(gone)
    echo(f"{name}: {upserted} documents upserted" + (f", {result.pruned[name]} pruned" if prune else ""))


def _stamp(db: str, manifest: dict[str, Any], result: LoadResult) -> None:
    """`.make/<db>/load.stamp`: what was loaded, and the backup taken before (validate and
    rollback read `backup_version`)."""
    body = {"database": db, "mode": result.mode, "backup_version": result.backup_version,
            "transform_version": manifest.get("version"), "counts": result.counts, "pruned": result.pruned,
            "dropped": result.dropped, "notes": result.notes, "revalidated": result.revalidated,
            "migrations": [{k: m.get(k) for k in ("script", "status", "backup_version")} for m in result.migrations],
            "loaded_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_atomic(paths.make_stamps / db / "load.stamp", json.dumps(body, indent=2, sort_keys=True) + "\n")
