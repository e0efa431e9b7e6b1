"""`etl transform`: PostgreSQL rows -> BSON documents in `data/transformed/<db>/` (mongodump layout).

How a row becomes a document (docs/transform-and-load.md has the whole story and the numbers):

* The fast path (etl.fastpath): a collection whose fields all have plain conversions is read
  with a binary COPY whose rows a C extension (etl._pgbson) encodes as BSON; rows that need a
  policy are left out there and come back through the general path below, by row identity.
  Both paths give the same bytes for the same rows.
* The general path: PostgreSQL writes each document itself. The SELECT the transform
  generates from the mapping turns every row into MongoDB Extended JSON text
  (`{"$numberDecimal": …}`, `{"$date": {"$numberLong": …}}`, …) with plain string
  concatenation, which the server does in C; `COPY … TO STDOUT` streams it; `bsonjs` (libbson)
  turns each line into BSON in C. Python touches blocks of rows, not values, and its memory
  does not depend on the table's size.
* Values that need a policy or Python are moved out of that fast text by the same SELECT: a
  NaN/±Infinity numeric, a timestamp that is infinite or outside years 1-9999, a JSON key with
  `.` or a leading `$`, a cast with an on-failure rule, a default, a calculated field. They
  travel in a second column as text; Python converts them, counts what each policy did and
  splices the fields onto the document's BSON.
* Per-table skip: a collection is transformed again only when its fingerprint changes (see
  `fingerprints`).
* Tables run in parallel processes (ETL_TRANSFORM_WORKERS); a large table with an integer key
  is split into key ranges that run in parallel too."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from etl.core.config import Config, mask_uri, pg_conninfo
from etl.core.errors import DatabaseError, TransformError
from etl.core.fsutil import read_json
from etl.core.hashing import content_hash
from etl.core.names import check_db_name
from etl.core.paths import paths
from etl.core.progress import Progress
from etl.formats.canonical import collections_dir
from etl.formats.dumpdir import (
    MANIFEST_FORMAT,
    BsonWriter,
    metadata,
    write_manifest,
    write_metadata,
)
from etl.formats.mapping import load_mapping
from etl.formats.provenance import accepted_schema_hash, source_dump
from etl.model.indexes import planned_indexes
from etl.model.mapping import archived_fields, mapping_hash
from etl.model.references import references_from
from etl.model.validators import validator_for
from etl.stages.transform import fastpath
from etl.stages.transform.copy import PartResult, run_general
from etl.stages.transform.fingerprint import fingerprint, query_json, table_stats
from etl.stages.transform.sql import Plan, build_plan, qident, qtable

log = logging.getLogger("etl.transform")


# A table with at least this many (estimated) rows and a single integer key is cut into key
# ranges transformed in parallel.
SPLIT_ROWS = 200_000


# ---------------------------------------------------------------------------------------------
# Which path a collection takes


def plan_collection(name: str, spec: dict[str, Any], mapping: dict[str, Any], fast: bool = True) -> Plan:
    """The collection's plan, with the binary-COPY fast path when its fields allow one."""
    plan = build_plan(name, spec, mapping)
    if fast:
        plan.fast, plan.general_reason = fastpath.plan(spec)
    else:
        plan.general_reason = "the fast path is turned off (ETL_TRANSFORM_FASTPATH)"
    return plan


def run_plan(conninfo: str, plan: Plan, out: Path, where: str | None = None,
             progress: Progress | None = None, fast: bool = True) -> PartResult:
    """Stream `plan`'s rows (optionally restricted by `where`) into the .bson file `out`:
    through the fast path when the plan has one (and `fast`), else the general path."""
    if fast and plan.fast is not None:
        return fastpath.run(conninfo, plan, out, where, progress)
    return run_general(conninfo, plan, out, where, progress)


# ---------------------------------------------------------------------------------------------
# The stage


@dataclass
class CollectionResult:
    name: str
    count: int
    sha256: str
    metadata_sha256: str
    size: int
    fingerprint: str
    skipped: bool
    seconds: float
    counters: dict[str, int]
    cast_failures: dict[str, int]
    notes: list[str]
    reader: str = ""
    via_general: int = 0
    reader_note: str | None = None


@dataclass
class TransformResult:
    folder: Path
    collections: dict[str, CollectionResult]
    manifest_written: bool
    seconds: float

    @property
    def transformed(self) -> list[str]:
        return sorted(n for n, c in self.collections.items() if not c.skipped)


def _canonical_schema(name: str) -> dict[str, Any] | None:
    """The collection's canonical schema (schemas/collections/), when canonical wrote one."""
    path = collections_dir() / f"{name}.schema.json"
    return read_json(path) if path.is_file() else None


def _metadata_for(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    schema = _canonical_schema(name)
    options = {"validator": validator_for(schema)} if schema is not None else {}
    return metadata(name, planned_indexes(spec), options)


def package_facts(mapping: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """What the load and the validation need besides the documents, per collection, so the
    package in data/transformed/<db>/ is all they read: the canonical schema, the archived
    fields, the references to check (from the accepted snapshot's foreign keys). Returns the
    facts and the notes on references that cannot be checked."""
    snapshot_path = paths.schemas / "accepted.json"
    refs, notes = (references_from(mapping, read_json(snapshot_path)) if snapshot_path.is_file()
                   else ([], ["references not checked: schemas/accepted.json missing"]))
    facts = {}
    for name in mapping["collections"]:
        facts[name] = {"schema": _canonical_schema(name),
                       "archived": [list(pair) for pair in archived_fields(name, mapping)],
                       "references": [{"field": r.field, "target": r.target, "constraint": r.constraint}
                                      for r in refs if r.collection == name]}
    return facts, notes


def _work(args: tuple) -> tuple[str, int, PartResult]:
    conninfo, plan, out, where, index = args
    return plan.collection, index, run_plan(conninfo, plan, Path(out), where)


def _run_jobs(jobs: list[tuple], workers: int, parts: dict[str, dict[int, PartResult]], total: int | None,
              db: str) -> None:
    with Progress(f"transform {db}", total=total, unit="rows") as bar:
        if workers > 1 and len(jobs) > 1:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                for name, index, result in pool.map(_work, jobs):
                    parts[name][index] = result
                    bar.advance(result.count)
        else:
            for conninfo, plan, out, where, index in jobs:
                parts[plan.collection][index] = run_plan(conninfo, plan, Path(out), where, bar)


def _ranges(conninfo: str, plan: Plan, parts: int) -> list[str]:
    col = qident(plan.where_column)
    lo, hi = query_json(conninfo, f"SELECT json_build_array(min({col}), max({col})) FROM {qtable(plan.table)}")
    if lo is None:
        return []
    step = (hi - lo) // parts + 1
    bounds = [lo + i * step for i in range(parts)] + [hi + 1]
    return [f"t.{col} >= {bounds[i]} AND t.{col} < {bounds[i + 1]}" for i in range(parts)]


def transform(cfg: Config, db: str | None = None, *, collections: list[str] | None = None,
              force: bool = False, mapping: dict[str, Any] | None = None,
              workers: int | None = None, echo: Callable[[str], None] | None = None) -> TransformResult:
    """Transform every collection of the mapping whose fingerprint changed (all with `force`)
    into `data/transformed/<db>/`, and write its manifest."""

    echo = echo or (lambda _msg: None)
    start = time.perf_counter()
    db = check_db_name(db or cfg["MONGO_DB_NAME"])
    mapping = mapping or load_mapping()
    specs: dict[str, Any] = mapping["collections"]
    unknown = sorted(set(collections or []) - set(specs))
    if unknown:
        raise TransformError(f"no collection {unknown[0]!r} in the mapping")
    wanted = sorted(collections or specs)
    folder = paths.transformed / db
    folder.mkdir(parents=True, exist_ok=True)
    workers = workers or cfg["ETL_TRANSFORM_WORKERS"]
    conninfo = pg_conninfo(cfg, cfg["LOCAL_PG_DB"])

    old_manifest: dict[str, Any] = {}
    if (folder / "manifest.json").is_file():
        try:
            old_manifest = read_json(folder / "manifest.json")
        except (OSError, ValueError):
            old_manifest = {}
    old = old_manifest.get("collections") or {}

    try:
        prints, stats = fingerprints(conninfo, specs, wanted)
        plans = {n: plan_collection(n, specs[n], mapping, fast=cfg["ETL_TRANSFORM_FASTPATH"]) for n in wanted}
        stale = set(stale_collections(folder, old_manifest, prints))
        todo = [n for n in wanted if force or n in stale]
        jobs = []
        for n in sorted(todo, key=lambda n: -stats[specs[n]["table"]]["estimate"]):
            plan = plans[n]
            est = stats[plan.table]["estimate"]
            if workers > 1 and plan.where_column and est >= SPLIT_ROWS:
                wheres = _ranges(conninfo, plan, workers)
            else:
                wheres = []
            if len(wheres) > 1:
                for i, where in enumerate(wheres):
                    jobs.append((conninfo, plan, str(folder / f".{n}.part{i}.bson"), where, i))
            else:
                jobs.append((conninfo, plan, str(folder / f".{n}.part0.bson"), None, 0))
    except DatabaseError as exc:
        raise DatabaseError(f"PostgreSQL database {cfg['LOCAL_PG_DB']} is not reachable: {mask_uri(str(exc))}",
                            hint="run `make restore` first") from None

    if todo and cfg["ETL_TRANSFORM_FASTPATH"] and not fastpath.available():
        note = (f"the transform's C encoder is not built ({fastpath.IMPORT_ERROR}): every collection takes "
                f"the slower general path; reinstall with a C compiler (`make -B .venv/.installed`)")
        log.warning(note)
        echo(f"note: {note}")
    for n in wanted:
        for note in plans[n].notes:
            log.warning(note)
            echo(f"note: {note}")
    skipped = [n for n in wanted if n not in todo]
    if skipped:
        echo(f"unchanged, skipped: {', '.join(skipped)}")

    parts: dict[str, dict[int, PartResult]] = {n: {} for n in todo}
    results: dict[str, CollectionResult] = {}
    try:
        if jobs:
            _run_jobs(jobs, workers, parts, sum(stats[plans[n].table]["estimate"] for n in todo) or None, db)
        for n in todo:
            results[n] = _assemble(folder, n, specs[n], plans[n], parts[n], prints[n])
            for names, sql in plans[n].embed_counts:
                for counter, value in zip(names, query_json(conninfo, sql)):
                    if value:
                        results[n].counters[counter] = value
    finally:
        # A failed run leaves the previous .bson files, never half-made parts.
        for part in folder.glob(".*.part*.bson"):
            part.unlink(missing_ok=True)
    for n in wanted:
        if n in todo:
            c = results[n]
            echo(f"{n}: {c.count} documents in {c.seconds:.1f}s"
                 + (f"  policies: {dict(sorted(c.counters.items()))}" if c.counters else "")
                 + (f"  cast failures: {c.cast_failures}" if c.cast_failures else ""))
        else:
            prev = old[n]
            results[n] = CollectionResult(n, prev["count"], prev["sha256"], prev["metadata_sha256"],
                                          prev.get("bytes", 0), prints[n], True, 0.0,
                                          prev.get("policies", {}), prev.get("cast_failures", {}),
                                          prev.get("notes", []), prev.get("reader", ""),
                                          prev.get("rows_via_general_path", 0), prev.get("reader_note"))
    if collections:  # a partial run keeps the other collections' entries
        for n, prev in old.items():
            if n not in results and n in specs:
                results[n] = CollectionResult(n, prev["count"], prev["sha256"], prev["metadata_sha256"],
                                              prev.get("bytes", 0), prev.get("fingerprint", ""), True, 0.0,
                                              prev.get("policies", {}), prev.get("cast_failures", {}),
                                              prev.get("notes", []), prev.get("reader", ""),
                                              prev.get("rows_via_general_path", 0), prev.get("reader_note"))
    else:
        for stale in folder.glob("*.bson"):
            if stale.stem not in results:
                stale.unlink()
                (folder / f"{stale.stem}.metadata.json").unlink(missing_ok=True)

    written = _write_manifest(folder, db, mapping, results, old_manifest)
    return TransformResult(folder, results, written, time.perf_counter() - start)


def fingerprints(conninfo: str, specs: dict[str, Any], wanted: list[str]
                 ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The fingerprint of each collection in `wanted` against the database `conninfo` (see
    fingerprint.fingerprint), and the table statistics they were computed from."""
    embedded = {n: [specs[e["collection"]]["table"] for e in spec.get("embed") or [] if e["collection"] in specs]
                for n, spec in specs.items()}
    stats = table_stats(conninfo, [specs[n]["table"] for n in specs] + [t for n in wanted for t in embedded[n]])
    source = source_dump()
    return {n: fingerprint(n, specs[n], stats, source, embedded[n]) for n in wanted}, stats


def stale_collections(folder: Path, manifest: dict[str, Any] | None, prints: dict[str, str]) -> list[str]:
    """The collections whose transformed file in `folder` is not the one `prints` describe: the
    transform rewrites them, and `etl plan` says so."""
    old = (manifest or {}).get("collections") or {}
    return sorted(n for n, fp in prints.items() if not _current(folder, old.get(n), fp))


def _current(folder: Path, prev: dict[str, Any] | None, fp: str) -> bool:
    if not prev or prev.get("fingerprint") != fp:
        return False
    path = folder / f"{prev.get('name', '')}.bson"
    return path.is_file() and path.stat().st_size == prev.get("bytes", -1)


def _assemble(folder: Path, name: str, spec: dict[str, Any], plan: Plan, parts: dict[int, PartResult],
              fp: str) -> CollectionResult:
    """Concatenate the parts (key ranges, in order) into `<name>.bson` and write its metadata."""
    counters: Counter = Counter()
    cast: Counter = Counter()
    seconds = 0.0
    readers = {p.reader for p in parts.values()}
    reader = readers.pop() if len(readers) == 1 else "mixed"
    via_general = sum(p.via_general for p in parts.values())
    writer = BsonWriter(folder / f"{name}.bson")
    try:
        for index in sorted(parts):
            part = folder / f".{name}.part{index}.bson"
            with open(part, "rb") as fh:
                while block := fh.read(8 << 20):
                    writer.write_raw(block, 0)
            part.unlink()
            counters.update(parts[index].counters)
            cast.update(parts[index].cast_failures)
            seconds = max(seconds, parts[index].seconds)
        writer.count = sum(p.count for p in parts.values())
        count, sha, size = writer.commit()
    except BaseException:
        writer.abort()
        raise
    meta_sha = write_metadata(folder, name, _metadata_for(name, spec))
    return CollectionResult(name, count, sha, meta_sha, size, fp, False, seconds,
                            dict(counters), dict(cast), plan.notes, reader, via_general,
                            None if reader == "binary-copy" else plan.general_reason)


def _write_manifest(folder: Path, db: str, mapping: dict[str, Any], results: dict[str, CollectionResult],
                    old: dict[str, Any]) -> bool:
    facts, reference_notes = package_facts(mapping)
    collections = {}
    for n, c in sorted(results.items()):
        spec = mapping["collections"].get(n, {})
        collections[n] = {"name": n, "count": c.count, "rows": c.count, "skipped": 0, "sha256": c.sha256,
                          "metadata_sha256": c.metadata_sha256, "bytes": c.size, "fingerprint": c.fingerprint,
                          "table": spec.get("table"), "refresh": spec.get("refresh"),
                          "id": (spec.get("id") or {}).get("kind"), "policies": c.counters,
                          "cast_failures": c.cast_failures, "notes": c.notes, "reader": c.reader,
                          "rows_via_general_path": c.via_general, **facts.get(n, {})}
        if c.reader_note:
            collections[n]["reader_note"] = c.reader_note
    body = {
        "format_version": MANIFEST_FORMAT,
        "kind": "transform",
        "database": db,
        "mapping_hash": mapping_hash(mapping),
        "schema_hash": accepted_schema_hash(),
        "source_dump": source_dump(),
        "collections": collections,
        "policies": dict(sum((Counter(c.counters) for c in results.values()), Counter())),
        "cast_failures": {f"{n}.{k}": v for n, c in results.items() for k, v in c.cast_failures.items()},
        "references_not_checked": reference_notes,
    }
    body["version"] = content_hash(body)[:16]
    old_body = {k: v for k, v in old.items() if k not in ("created_at",)}
    if old_body == json.loads(json.dumps(body, default=str)):
        return False
    body["created_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_manifest(folder, body)
    return True
