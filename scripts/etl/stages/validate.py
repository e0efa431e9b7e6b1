"""`etl validate`: does what MongoDB holds match what the transform produced?

Per collection of `data/transformed/<db>/`:

- count: MongoDB holds as many documents as the manifest says were written;
- content: an order-independent checksum of the documents in MongoDB equals that of the
  `.bson` file (and each missing, extra or modified `_id` is counted);
- schema: every document (or ETL_VALIDATE_SAMPLE of them) matches its canonical JSON Schema;
- validator: no document fails the collection's `$jsonSchema` validator (a `$nor` query
  with the validator the server holds);

and across collections, every reference (a foreign key of the accepted snapshot, as mapped
to fields) points at an existing `_id`. The report goes to `reports/validation-<db>-<ts>.json`
and `.md`; a failure raises ValidationFailed (exit 4) and, with ETL_ROLLBACK_ON_INVALID,
restores the backup taken before the load.

The content checksum (etl.checksums) is computed from the raw BSON of every document, in
the file and as the server returns it, without decoding either; only the documents the
schema and reference checks need are decoded.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import bson
import psycopg
from bson.decimal128 import Decimal128
from jsonschema import validators
from jsonschema.exceptions import SchemaError
from psycopg import sql
from pymongo.errors import PyMongoError

from etl.adapters.mongodb import connect
from etl.core.config import Config, pg_conninfo
from etl.core.errors import (
    BackupError,
    DatabaseError,
    ValidationError,
    ValidationFailed,
)
from etl.core.fsutil import read_json, write_atomic
from etl.core.names import check_db_name
from etl.core.paths import paths
from etl.core.progress import Progress
from etl.formats import dumpdir as bsondump
from etl.formats.backups import list_versions
from etl.formats.dumpdir import ManifestEntry, manifest_collections, read_manifest
from etl.model.checksums import (
    Digest,
    combine,
    content_digest,
    doc_digest,
    id_key,
    raw_id_key,
    show_id,
)
from etl.model.jsonview import SchemaCheck
from etl.model.references import Reference

log = logging.getLogger("etl.validate")

# The codec of etl.bsondump (tz-aware UTC datetimes, standard UUIDs, out-of-range dates as
# DatetimeMS), so a document decoded from a file or a server encodes back to the same BSON.
CODEC = bsondump.CODEC
EXAMPLES = 5  # offending _ids shown per check; the counts are always complete


# ---------------------------------------------------------------------------------------------
# Reading the mongodump layout shared by the transform output and the backups


def iter_bson(path: Path) -> Iterator[dict]:
    """The documents of a mongodump `.bson` file, in file order."""
    return bsondump.iter_docs(path)


def read_metadata(path: Path) -> dict:
    """A `<collection>.metadata.json` (extended JSON, as mongodump writes it)."""
    return bsondump.read_metadata(path)


def read_docs(coll, query: dict | None = None, projection: dict | None = None):
    """Documents from a server with the same codec as the files: dates outside Python's range
    come back as DatetimeMS instead of failing the read."""
    return coll.with_options(codec_options=CODEC).find(query or {}, projection)


def read_export(folder: Path) -> dict:
    """The export's manifest; one that is missing or damaged is a ValidationError."""
    try:
        return read_manifest(folder)
    except BackupError as exc:
        raise ValidationError(str(exc), hint="run `make transform` first") from None


# ---------------------------------------------------------------------------------------------
# Content checksums (etl.checksums)


def collection_digest(coll) -> Digest:
    return content_digest(coll.with_options(codec_options=bsondump.RAW_CODEC).find())


# ---------------------------------------------------------------------------------------------
# Canonical JSON Schema checks


def schema_validator(name: str, schema: dict | None) -> SchemaCheck | None:
    """The check of a collection's canonical schema (the export carries it), or None."""
    if schema is None:
        return None
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ValidationError(f"the canonical schema of {name} in the export is not a valid JSON Schema: "
                              f"{exc.message}") from None
    return SchemaCheck(schema)


# ---------------------------------------------------------------------------------------------
# References (foreign keys as fields)


def _ref_key(value: Any) -> Any:
    # A reference stored as int32 must match an int64 _id, as it does in a MongoDB query.

    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, (Mapping, list)):
        return id_key(value)
    return value


@dataclass
class Seen:
    """What one pass over a collection keeps for the reference checks: every `_id` (as a
    reference key) and the non-null values of the fields that reference other collections."""

    ids: set = field(default_factory=set)
    values: dict[str, list[tuple[bytes, Any]]] = field(default_factory=dict)


def _field_value(doc: Mapping, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def check_reference(ref: Reference, source: Seen, target: Seen) -> dict:
    """References of `ref.collection`.`ref.field` that point at no `_id` of `ref.target`,
    from what the collections' own validation pass kept (no second read of either)."""
    checked = orphans = 0
    examples: list[str] = []
    for key, value in source.values.get(ref.field, ()):
        checked += 1
        if _ref_key(value) not in target.ids:
            orphans += 1
            if len(examples) < EXAMPLES:
                examples.append(f"_id {show_id(key)}: {ref.field}={value!r}")
    return {"collection": ref.collection, "field": ref.field, "references": ref.target,
            "constraint": ref.constraint, "checked": checked, "orphans": orphans,
            "examples": examples, "ok": orphans == 0}


# ---------------------------------------------------------------------------------------------
# Validator compliance


def server_validator(db, name: str) -> dict | None:
    """The validator the server holds for `name` (None: it has none)."""
    for info in db.list_collections(filter={"name": name}):
        return (info.get("options") or {}).get("validator")
    return None


def check_validator(db, name: str, expected: dict | None) -> dict:
    """Every document passes the validator the server holds. `expected` (the transformed
    metadata's) must be the one the server holds: a validator lost or replaced is a failure."""
    validator = server_validator(db, name)
    if not validator:
        if expected:
            return {"status": "missing", "ok": False,
                    "note": "the collection has no validator, its transformed metadata has one"}
        return {"status": "no validator", "ok": True}
    bad = db[name].count_documents({"$nor": [validator]})
    return {"status": "ok" if bad == 0 else "failed", "ok": bad == 0, "non_compliant": bad}


# ---------------------------------------------------------------------------------------------
# Source row counts


def source_counts(cfg: Config, manifest: Mapping, entries: dict[str, ManifestEntry]) -> tuple[dict[str, int], str | None]:
    """Rows per collection's source table in the restored PostgreSQL database, when it still
    holds the dump the export was made from; else ({}, why not)."""
    try:
        restored = read_json(paths.restored)
    except (OSError, ValueError):
        return {}, "source counts not checked: no restored database recorded (data/restored.json)"
    transformed_from = (manifest.get("source_dump") or {}).get("sha256")
    if restored.get("sha256") and transformed_from and restored["sha256"] != transformed_from:
        return {}, "source counts not checked: the restored dump is not the one the export was made from"
    tables = {name: e.table for name, e in entries.items() if e.table}
    counts: dict[str, int] = {}
    try:
        with psycopg.connect(pg_conninfo(cfg, restored.get("database") or cfg["LOCAL_PG_DB"])) as conn:
            for name, table in sorted(tables.items()):
                schema, _, relname = table.rpartition(".")
                ident = sql.Identifier(schema or "public", relname)
                counts[name] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {}, f"source counts not checked: PostgreSQL: {first[:160]}"
    return counts, None


# ---------------------------------------------------------------------------------------------
# One collection


def _without_id(doc: Mapping) -> dict:
    return {k: v for k, v in doc.items() if k != "_id"}


@dataclass
class _Sample:
    """The `size` documents with the smallest digests: a deterministic, content-spread sample."""

    size: int
    heap: list = field(default_factory=list)
    seq: int = 0

    def offer(self, digest: bytes, doc: dict) -> None:
        self.seq += 1
        item = (tuple(-b for b in digest[:8]), self.seq, doc)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif item[0] > self.heap[0][0]:
            heapq.heapreplace(self.heap, item)

    def docs(self) -> list[dict]:
        return [doc for _, _, doc in self.heap]


def check_collection(db, name: str, folder: Path, entry: ManifestEntry, sample: int,
                     source_rows: int | None = None,
                     seen: Seen | None = None, ref_fields: Sequence[str] = (),
                     archived: Sequence[str] = (), keep_ids: bool = True,
                     validator_check: Future | None = None) -> dict:
    """Count, content, schema and validator checks of one collection against its files.
    With `seen`, the same pass keeps the `ref_fields` values and, with `keep_ids` (other
    collections reference this one), the `_id`s for check_reference.
    `archived` fields exist only in MongoDB (the export lists them): the content check
    leaves them out, the schema check sees them."""
    bson_path = folder / f"{name}.bson"
    expected: dict[bytes, bytes] = {}
    # Documents of a table without a primary key carry no _id in the file; the server gives
    # them one on insert, so they are matched by their content without the _id.
    keyless: Counter[bytes] = Counter()
    in_file = 0
    for raw in bsondump.iter_raw(bson_path) if bson_path.is_file() else ():
        in_file += 1
        key = raw_id_key(raw)
        if key is not None:
            expected[key] = doc_digest(raw)
        else:
            keyless[doc_digest(raw)] += 1
    expected_sha = combine([*expected.values(), *keyless.elements()])
    expected_count = entry.count if entry.count is not None else in_file

    validator = schema_validator(name, entry.schema)
    picker = _Sample(sample) if sample else None
    schema_checked = schema_invalid = 0
    schema_examples: list[str] = []

    def schema_check(raw) -> None:
        nonlocal schema_checked, schema_invalid
        doc = bson.decode(raw.raw, codec_options=CODEC)
        schema_checked += 1
        problem = validator.problem(doc)
        if problem:
            schema_invalid += 1
            if len(schema_examples) < EXAMPLES:
                schema_examples.append(f"_id {show_id(id_key(doc.get('_id')))}: {problem}")

    actual: list[bytes] = []
    pending = dict(expected)
    extra: list[bytes] = []
    modified: list[bytes] = []
    without_id = ("_id", *archived)
    with Progress(f"validate {name}", total=expected_count or None, unit="docs") as bar:
        # Raw documents: the checksum reads their bytes; a value is decoded only when a
        # reference check asks for it, a document only when the schema sample takes it.
        for doc in db[name].with_options(codec_options=bsondump.RAW_CODEC).find():
            digest = doc_digest(doc, archived)
            key = raw_id_key(doc)
            want = pending.pop(key, None)
            if want is not None:
                if want != digest:
                    modified.append(key)
            elif keyless and keyless[anonymous := doc_digest(doc, without_id)] > 0:
                keyless[anonymous] -= 1
                digest = anonymous
            else:
                extra.append(key)
            actual.append(digest)
            if seen is not None:
                if keep_ids:
                    seen.ids.add(_ref_key(doc.get("_id")))
                for ref_field in ref_fields:
                    value = _field_value(doc, ref_field)
                    if value is not None:
                        seen.values.setdefault(ref_field, []).append((key, value))
            if validator is not None:
                if picker is None:
                    schema_check(doc)
                else:
                    picker.offer(digest, doc)
            bar.advance()
    if validator is not None and picker is not None:
        for doc in picker.docs():
            schema_check(doc)
    missing = list(pending)
    missing_keyless = sum(keyless.values())

    actual_sha = combine(actual)
    content_ok = actual_sha == expected_sha
    examples = ([f"missing _id {show_id(k)}" for k in missing[:EXAMPLES]]
                + ([f"{missing_keyless} documents without _id missing"] if missing_keyless else [])
                + [f"extra _id {show_id(k)}" for k in extra[:EXAMPLES]]
                + [f"modified _id {show_id(k)}" for k in modified[:EXAMPLES]])
    count_ok = len(actual) == expected_count
    file_count_ok = in_file == expected_count
    metadata = read_metadata(folder / f"{name}.metadata.json")
    result = {
        "count": {"expected": expected_count, "actual": len(actual), "in_file": in_file,
                  "skipped_at_transform": entry.skipped, "ok": count_ok and file_count_ok},
        "content": {"expected_sha256": expected_sha, "actual_sha256": actual_sha, "ok": content_ok,
                    "missing": len(missing) + missing_keyless, "extra": len(extra),
                    "modified": len(modified), "examples": examples,
                    **({"note": f"{in_file - len(expected)} documents without _id in the file, "
                                "matched by content"} if keyless or in_file > len(expected) else {})},
        "schema": ({"status": "not checked", "ok": True, "note": "no canonical schema"}
                   if validator is None else
                   {"status": "ok" if schema_invalid == 0 else "failed", "ok": schema_invalid == 0,
                    "checked": schema_checked, "invalid": schema_invalid,
                    "sampled": bool(picker), "examples": schema_examples}),
        "validator": (validator_check.result() if validator_check is not None else
                      check_validator(db, name, (metadata.get("options") or {}).get("validator"))),
    }
    if entry.rows is not None and entry.rows - entry.skipped != expected_count:
        result["count"]["ok"] = False
        result["count"]["note"] = (f"manifest: {entry.rows} rows - {entry.skipped} skipped "
                                   f"!= {expected_count} documents")
    if source_rows is not None:
        result["count"]["source_rows"] = source_rows
        if source_rows - entry.skipped != len(actual):
            result["count"]["ok"] = False
            result["count"]["note"] = (f"{name}: {len(actual)} documents in MongoDB, {source_rows} rows in "
                                       f"{entry.table}" + (f" - {entry.skipped} skipped" if entry.skipped else ""))
    result["ok"] = all(result[k]["ok"] for k in ("count", "content", "schema", "validator"))
    return result


# ---------------------------------------------------------------------------------------------
# The whole database


def _failures(report: dict) -> list[str]:
    out: list[str] = []
    for name, res in report["collections"].items():
        c = res["count"]
        if not c["ok"]:
            out.append(c.get("note") or f"{name}: {c['actual']} documents in MongoDB, expected {c['expected']}"
                       + (f" ({c['in_file']} in the file)" if c["in_file"] != c["expected"] else ""))
        if not res["content"]["ok"]:
            k = res["content"]
            out.append(f"{name}: content differs ({k['missing']} missing, {k['extra']} extra, "
                       f"{k['modified']} modified)")
        if not res["schema"]["ok"]:
            out.append(f"{name}: {res['schema']['invalid']} of {res['schema']['checked']} documents "
                       "violate the canonical schema")
        v = res["validator"]
        if not v["ok"]:
            out.append(f"{name}: {v['non_compliant']} documents fail the validator" if "non_compliant" in v
                       else f"{name}: {v['note']}")
    for ref in report["references"]:
        if not ref["ok"]:
            out.append(f"{ref['collection']}.{ref['field']}: {ref['orphans']} orphan references "
                       f"to {ref['references']}")
    return out


def validate(cfg: Config, db: str | None = None, *, sample: int | None = None,
             folder: Path | None = None, references: list[Reference] | None = None) -> dict:
    """Check database `db` against its transformed files; return the report (not written).

    Everything it checks against comes from the export (data/transformed/<db>/): the
    documents, their metadata, and in its manifest each collection's canonical schema, archived
    fields and the references to check (`references` overrides those).
    """
    db = check_db_name(db or cfg["MONGO_DB_NAME"])
    folder = folder or paths.transformed / db
    sample = cfg["ETL_VALIDATE_SAMPLE"] if sample is None else sample
    manifest = read_export(folder)
    try:
        entries = manifest_collections(manifest)
    except BackupError as exc:
        raise ValidationError(str(exc), hint="run `make transform` again") from None
    if not entries:
        raise ValidationError(f"{folder / 'manifest.json'} lists no collections")
    notes: list[str] = list(manifest.get("references_not_checked") or [])
    if references is None:
        references = [Reference(name, r["field"], r["target"], r.get("constraint") or "")
                      for name, entry in entries.items() for r in entry.references]
    sources, why_not = source_counts(cfg, manifest, entries)
    if why_not:
        notes.append(why_not)

    started = datetime.now(timezone.utc)
    client = connect(cfg["MONGO_URI"])
    try:
        mdb = client[db]
        references = [ref for ref in references if ref.collection in entries and ref.target in entries]
        # One read of each collection serves every check, references included.
        seen = {name: Seen() for name in entries}
        targets = {r.target for r in references}
        # The validator check is a query the server answers on its own ($nor over every
        # document): it runs beside the pass that reads the documents, not after it.
        with ThreadPoolExecutor(max_workers=1) as pool:
            validator_checks = {
                name: pool.submit(check_validator, mdb, name,
                                  (read_metadata(folder / f"{name}.metadata.json").get("options") or {}).get("validator"))
                for name in sorted(entries)}
            collections = {name: check_collection(mdb, name, folder, entry, sample,
                                                  sources.get(name), seen[name],
                                                  sorted({r.field for r in references if r.collection == name}),
                                                  [a for _, a in entry.archived], keep_ids=name in targets,
                                                  validator_check=validator_checks[name])
                           for name, entry in sorted(entries.items())}
        refs = [check_reference(ref, seen[ref.collection], seen[ref.target]) for ref in references]
    except PyMongoError as exc:  # the server went away or refused a read
        raise DatabaseError(f"reading {db} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        client.close()
    report = {
        "format_version": 1,
        "database": db,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "transformed": str(folder),
        "manifest_version": manifest.get("version"),
        "sample": sample,
        "collections": collections,
        "references": refs,
        "notes": notes,
        "rolled_back_to": None,
    }
    report["failures"] = _failures(report)
    report["ok"] = not report["failures"]
    return report


def render_markdown(report: dict) -> str:
    sample_text = f"{report['sample']} documents per collection" if report["sample"] else "all documents"
    lines = [f"# Validation of {report['database']}: {'passed' if report['ok'] else 'FAILED'}", "",
             f"Started {report['started_at']}, finished {report['finished_at']}; "
             f"schema check on {sample_text}.",
             "", "| collection | count | content | schema | validator |", "|---|---|---|---|---|"]
    for name, res in report["collections"].items():
        c, k, s, v = res["count"], res["content"], res["schema"], res["validator"]
        count = f"{c['actual']}/{c['expected']}" + ("" if c["ok"] else " ✗")
        content = "ok" if k["ok"] else f"✗ {k['missing']} missing, {k['extra']} extra, {k['modified']} modified"
        schema = (s.get("note") or s["status"]) if "checked" not in s else (
            f"ok ({s['checked']})" if s["ok"] else f"✗ {s['invalid']}/{s['checked']}")
        validator = v["status"] if v["ok"] else f"✗ {v.get('non_compliant', v['status'])}"
        lines.append(f"| {name} | {count} | {content} | {schema} | {validator} |")
    if report["references"]:
        lines += ["", "| reference | checked | orphans |", "|---|---|---|"]
        for ref in report["references"]:
            lines.append(f"| {ref['collection']}.{ref['field']} → {ref['references']} | "
                         f"{ref['checked']} | {ref['orphans']}{'' if ref['ok'] else ' ✗'} |")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
        examples = [(n, e) for n, r in report["collections"].items()
                    for e in r["content"]["examples"] + r["schema"].get("examples", [])]
        examples += [(f"{r['collection']}.{r['field']}", e) for r in report["references"] for e in r["examples"]]
        if examples:
            lines += ["", "## Examples", ""] + [f"- {n}: {e}" for n, e in examples]
    if report["notes"]:
        lines += ["", "## Not checked", ""] + [f"- {n}" for n in report["notes"]]
    if report.get("rolled_back_to"):
        lines += ["", f"Rolled back to backup {report['rolled_back_to']}."]
    return "\n".join(lines) + "\n"


def write_report(report: dict) -> Path:
    """Write reports/validation-<db>-<ts>.json and .md; return the .json path."""
    # Milliseconds, so reports sort by name in the order they were written.
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
    name = f"validation-{report['database']}-{stamp}"
    n = 1
    while (paths.reports / f"{name}.json").exists():
        n += 1
        name = f"validation-{report['database']}-{stamp}{n}"
    write_atomic(paths.reports / f"{name}.md", render_markdown(report))
    write_atomic(paths.reports / f"{name}.json", json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return paths.reports / f"{name}.json"


def pre_load_backup(db: str) -> tuple[str | None, str]:
    """(version, where from): the backup taken before the last load, as the load recorded it
    in `.make/<db>/load.stamp` (JSON, `backup_version`; null when there was nothing to back up);
    without such a record, the newest backup of `db`."""
    stamp = paths.make_stamps / db / "load.stamp"
    try:
        record = read_json(stamp)
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and "backup_version" in record:
        return record["backup_version"], "the load stamp"
    versions = list_versions(db)
    return (versions[-1]["version"] if versions else None), "the newest backup"


def validate_and_report(cfg: Config, db: str | None = None, *, rollback_on_invalid: bool | None = None,
                        restore: Callable[[str], Any] | None = None, **kwargs) -> tuple[dict, Path]:
    """validate(), write the report, and when configured restore the pre-load backup through
    `restore(version)` (the rollback); ValidationFailed on failure."""
    db = check_db_name(db or cfg["MONGO_DB_NAME"])
    report = validate(cfg, db, **kwargs)
    rollback_on_invalid = cfg["ETL_ROLLBACK_ON_INVALID"] if rollback_on_invalid is None else rollback_on_invalid
    restored = None
    if not report["ok"] and rollback_on_invalid:
        version, source = pre_load_backup(db)
        if version is None:
            report["notes"].append(f"rollback on invalid: no backup to restore ({source} names none)")
        elif restore is None:
            report["notes"].append("rollback on invalid: nothing to restore with")
        else:
            log.warning("validation failed; restoring backup %s of %s", version, db)
            restore(version)
            restored = report["rolled_back_to"] = version
    path = write_report(report)
    for line in report["failures"]:
        log.error("%s", line)
    if not report["ok"]:
        first = report["failures"][0]
        more = f" and {len(report['failures']) - 1} more" if len(report["failures"]) > 1 else ""
        after = f"; restored backup {restored}" if restored else ""
        raise ValidationFailed(f"validation of {db} failed: {first}{more}{after} (report: {path.parent / (path.stem + '.md')})")
    return report, path
