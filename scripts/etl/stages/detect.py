"""`etl detect`: what changed in the schema since the last accepted snapshot, and is it safe.

Compares `schemas/snapshots/current.json` with `schemas/accepted.json` (what `decide` last
accepted, not merely the previous run), classifies every change with `etl.diff`, looks for
data evidence behind rename candidates in MongoDB, and writes `data/changes/latest.json`
(no timestamps inside, so it changes only when the changes do) plus a timestamped JSON and
Markdown record. The format is documented in docs/detection.md.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg
from bson import Binary, Decimal128
from psycopg import sql

from etl.adapters.mongodb import connect
from etl.core.config import Config
from etl.core.errors import DatabaseError, EtlError
from etl.core.fsutil import write_atomic, write_json_if_changed
from etl.core.paths import paths
from etl.formats.decisions import decisions_data
from etl.formats.rules import load_rules
from etl.model.diff import (
    IMPACT_ROWS,
    IMPACT_WORDS,
    Snapshot,
    detect_changes,
    precision,
    unknown_types,
)
from etl.model.mapping import build_mapping
from etl.model.rounding import round_value

log = logging.getLogger("etl.detect")

FORMAT_VERSION = 1
EVIDENCE_SAMPLE = 200


def build_report(current: Snapshot, accepted: Snapshot | None, *, strict: bool = False,
                 evidence: Any = None) -> dict[str, Any]:
    """The changes document (pure unless `evidence`, a DataEvidence, is given to settle rename
    candidates). With no accepted snapshot the whole schema is the initial state: described
    once, not listed as hundreds of additions."""
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "from_hash": accepted["hash"] if accepted else None,
        "to_hash": current["hash"],
        "database": current.get("database"),
        "initial": accepted is None,
        "strict_mode": strict,
        "changes": [],
    }
    if accepted is None:
        tables = current["tables"]
        report["initial_state"] = {
            "tables": {name: {"kind": t["kind"], "columns": len(t["columns"])} for name, t in sorted(tables.items())},
            "table_count": len(tables),
            "column_count": sum(len(t["columns"]) for t in tables.values()),
            "enums": sorted(current.get("enums", {})),
            "domains": sorted(current.get("domains", {})),
            "views": sorted(current.get("views", {})),
        }
    elif accepted["hash"] != current["hash"]:
        report["changes"] = detect_changes(accepted, current, strict=strict, evidence=evidence)
    report["counts"] = {"safe": sum(c["classification"] == "safe" for c in report["changes"]),
                        "review": sum(c["classification"] == "review" for c in report["changes"])}
    report["precision"] = precision(report["changes"])
    report["warnings"] = [u["message"] for u in unknown_types(current)]
    report["unknown_types"] = [{k: u[k] for k in ("table", "column", "type")} for u in unknown_types(current)]
    return report


def has_changes(report: dict[str, Any]) -> bool:
    return bool(report["initial"] or report["changes"])


# --- rename evidence from the data already in MongoDB ------------------------------------
def collection_name(table: str) -> str:
    """The design's default: the table name for `public`, `schema.table` otherwise."""
    schema, _, name = table.partition(".")
    return name if schema == "public" else table


class NoEvidence(Exception):
    """Why there is no data evidence for a candidate (a one-line reason)."""


def _comparable(value: Any) -> Any:
    """One spelling for a value read from PostgreSQL or from MongoDB, so equal data compares
    equal whichever side it came from: decimals as Decimal (Decimal128, floats and integers
    alike), datetimes in UTC at MongoDB's precision (milliseconds: BSON dates have no
    microseconds, and the transform truncates), dates as midnight UTC, UUIDs as text; lists and
    documents element by element."""
    if isinstance(value, Decimal128):
        value = value.to_decimal()
    if isinstance(value, Binary) and value.subtype == 4:
        value = uuid.UUID(bytes=bytes(value))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    return value


def stored_form(value: Any, field: dict[str, Any]) -> Any:
    """A PostgreSQL value as the transform stores it under mapping field `field`: rounded as
    its rule says, a decimal serialized as a double or a string where the rule says so."""

    if value is None:
        return None
    if isinstance(value, (Decimal, float, int)) and not isinstance(value, bool) and field.get("round"):
        value = round_value(value if not isinstance(value, int) else Decimal(value),
                            field["round"]["places"], field["round"].get("mode", "half_even"))
    if field.get("bson") == "decimal" and isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        if field.get("serialize") == "double":
            return float(value)
        if field.get("serialize") == "string":
            return str(value)
    return value


def _key_text(value: Any) -> str:
    """A key value from a document, as text PostgreSQL reads back into the column's type."""
    value = _comparable(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evidence_mapping(accepted: Snapshot) -> dict[str, Any]:
    """The mapping the previous load wrote its documents with: the accepted snapshot under the
    rules and decisions (as `etl canonical` builds it); the default mapping when the rules no
    longer fit the accepted schema."""
    try:
        return build_mapping(accepted, load_rules(), decisions_data())
    except EtlError:
        return build_mapping(accepted)


class DataEvidence:
    """Data evidence for rename candidates (the `evidence` of etl.diff.diff_snapshots): up to
    EVIDENCE_SAMPLE documents the previous load left in MongoDB, looked up by their `_id` in the
    restored database and compared the way the transform stores values. The accepted schema's
    mapping says where to look: the collection, the old field's name (`_id` for a single-column
    key, a rule's or the naming convention's name otherwise), the columns a composite `_id` is
    made of, rounding and serialization. Connects on first use; each answer is kept."""

    def __init__(self, cfg: Config | None, accepted: Snapshot, current: Snapshot,
                 mapping: dict[str, Any] | None = None, *, db: Any = None, conn: Any = None):
        self.cfg, self.accepted, self.current = cfg, accepted, current
        self._mapping = mapping
        self.db, self.conn = db, conn
        self.unavailable: str | None = None
        self._answers: dict[tuple, dict[str, Any]] = {}
        self._owned: list[Any] = []

    @property
    def mapping(self) -> dict[str, Any]:
        if self._mapping is None:  # built on the first question: most nights have no candidate
            self._mapping = evidence_mapping(self.accepted)
        return self._mapping

    # connections ---------------------------------------------------------------------------
    def _open(self) -> None:
        if self.db is not None and self.conn is not None or self.unavailable:
            return

        try:
            client = connect(self.cfg["MONGO_URI"])
        except DatabaseError as exc:
            self.unavailable = exc.line()
            return
        self._owned.append(client)
        try:
            conn = psycopg.connect(self.cfg.pg_conninfo, autocommit=True)
        except psycopg.Error:
            self.unavailable = f"PostgreSQL database {self.cfg['LOCAL_PG_DB']} is not reachable"
            return
        self._owned.append(conn)
        self.db, self.conn = client[self.cfg["MONGO_DB_NAME"]], conn

    def close(self) -> None:
        for thing in self._owned:
            thing.close()
        self._owned.clear()

    def _answer(self, key: tuple, work) -> dict[str, Any]:
        if key not in self._answers:
            self._open()
            if self.unavailable:
                return {"available": False, "reason": self.unavailable}
            try:
                self._answers[key] = work()
            except NoEvidence as exc:
                self._answers[key] = {"available": False, "reason": str(exc)}
            except Exception as exc:  # noqa: BLE001 - evidence is advisory; its absence is reported
                log.warning("rename evidence for %s failed: %s", key, exc)
                self._answers[key] = {"available": False,
                                      "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        return self._answers[key]

    # what the diff asks --------------------------------------------------------------------
    def column(self, old_table: str, new_table: str, old_column: str, new_column: str) -> dict[str, Any]:
        return self._answer(("column", old_table, new_table, old_column, new_column),
                            lambda: self._compare(old_table, new_table, [(old_column, new_column)],
                                                  {old_column: new_column}, only_with_field=True))

    def table(self, old_table: str, new_table: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
        pairs = [tuple(p) for p in pairs]
        return self._answer(("table", old_table, new_table, tuple(pairs)),
                            lambda: self._compare(old_table, new_table, pairs, dict(pairs), only_with_field=False))

    # the work ------------------------------------------------------------------------------
    def _collection(self, old_table: str) -> tuple[str, dict[str, Any]]:
        for name, spec in sorted(self.mapping["collections"].items()):
            if spec["table"] == old_table:
                return name, spec
        raise NoEvidence(f"{old_table} has no collection in the accepted mapping")

    def _key_columns(self, old_table: str, new_table: str, spec: dict[str, Any],
                     renames: dict[str, str]) -> list[str]:
        """The columns of `new_table` holding what the documents' `_id` was made of."""
        if spec["id"]["kind"] == "none":
            raise NoEvidence(f"{old_table} had no primary key: its documents' _id cannot be looked up")
        new_cols = {c["name"] for c in self.current["tables"][new_table]["columns"]}
        wanted = [renames.get(c, c) for c in spec["id"]["columns"]]
        if all(c in new_cols for c in wanted):
            return wanted
        new_key = (self.current["tables"][new_table].get("primary_key") or {}).get("columns") or []
        if len(new_key) == len(wanted):  # the key columns were renamed themselves
            return list(new_key)
        gone = next(c for c in wanted if c not in new_cols)
        raise NoEvidence(f"the key column {gone!r} of {old_table} is not in {new_table}")

    def _compare(self, old_table: str, new_table: str, pairs: list[tuple[str, str]], renames: dict[str, str],
                 *, only_with_field: bool) -> dict[str, Any]:
        coll, spec = self._collection(old_table)
        fields = {f["column"]: f for f in spec["fields"]}
        key_columns = self._key_columns(old_table, new_table, spec, renames)
        id_fields = [fields[c]["name"] for c in spec["id"]["columns"]]
        compared = [(fields[o], n) for o, n in pairs
                    if o in fields and (only_with_field or o not in spec["id"]["columns"])]
        if only_with_field and not compared:
            raise NoEvidence(f"{old_table}.{pairs[0][0]} is not a field of collection {coll!r}")
        projection = {"_id": 1, **{f["name"]: 1 for f, _ in compared if f["name"] != "_id"}}
        query = {compared[0][0]["name"]: {"$exists": True}} if only_with_field else {}
        docs = list(self.db[coll].find(query, projection).limit(EVIDENCE_SAMPLE))
        if not docs:
            raise NoEvidence(f"no documents with field {compared[0][0]['name']!r} in collection {coll!r}"
                             if only_with_field else f"collection {coll!r} is empty or missing")

        def doc_key(doc: dict) -> tuple | None:
            if spec["id"]["kind"] == "single":
                return None if isinstance(doc["_id"], dict) else (_comparable(doc["_id"]),)
            if not isinstance(doc["_id"], dict) or not all(n in doc["_id"] for n in id_fields):
                return None
            return tuple(_comparable(doc["_id"][n]) for n in id_fields)

        keyed = {}
        for doc in docs:
            key = doc_key(doc)
            if key is not None and None not in key:
                keyed[key] = doc
        table = self.current["tables"][new_table]
        types = {c["name"]: c["type"] for c in table["columns"]}
        reads = [sql.Identifier(n) if not f.get("read_as") else
                 sql.SQL("{}::{}").format(sql.Identifier(n), sql.SQL(f["read_as"])) for f, n in compared]
        select = sql.SQL("SELECT {keys}{sep}{cols} FROM {table} "
                         "WHERE ({keys}) IN (SELECT * FROM unnest({params}))").format(
            keys=sql.SQL(", ").join(sql.Identifier(k) for k in key_columns),
            sep=sql.SQL(", " if reads else ""), cols=sql.SQL(", ").join(reads),
            table=sql.Identifier(table["schema"], table["name"]),
            params=sql.SQL(", ").join(sql.SQL("%s::text[]::{}[]").format(sql.SQL(types[k])) for k in key_columns))
        arrays = [[_key_text(k[i]) for k in keyed] for i in range(len(key_columns))]
        with self.conn.transaction():
            self.conn.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = iso_8601; "
                              "SET LOCAL DateStyle = ISO, YMD; SET LOCAL extra_float_digits = 1")
            rows = {tuple(_comparable(v) for v in row[:len(key_columns)]): row[len(key_columns):]
                    for row in self.conn.execute(select, arrays).fetchall()} if keyed else {}
        equal = 0
        for key, doc in keyed.items():
            if key not in rows:
                continue
            held = [doc["_id"] if f["name"] == "_id" else doc.get(f["name"]) for f, _ in compared]
            if all(_comparable(stored_form(v, f)) == _comparable(h)
                   for (f, _), v, h in zip(compared, rows[key], held)):
                equal += 1
        return {"available": True, "source": "mongodb", "collection": coll, "sampled": len(docs),
                "found_in_postgres": len(rows), "equal": equal}


def add_rename_evidence(report: dict[str, Any], current: Snapshot, cfg: Config,
                        accepted: Snapshot | None = None) -> None:
    """Fill `details.evidence.data` of every rename candidate that has none yet (a report built
    without evidence): of EVIDENCE_SAMPLE documents that hold the old field, how many have the
    same value in the new column for the same _id. When MongoDB or PostgreSQL cannot be asked,
    say why instead; detection goes on. `build_report(..., evidence=DataEvidence(...))` asks
    while pairing instead, so that refuted candidates are not proposed at all."""
    candidates = [c for c in report["changes"] if c["kind"] in ("column_renamed", "table_renamed")
                  and c["details"]["evidence"].get("data") is None]
    if not candidates:
        return
    if accepted is None:
        for c in candidates:
            c["details"]["evidence"]["data"] = {"available": False, "reason": "no accepted snapshot to map from"}
        return
    old_names = {c["to"]["table"]: c["table"] for c in report["changes"] if c["kind"] == "table_renamed"}
    source = DataEvidence(cfg, accepted, current)
    try:
        for c in candidates:
            if c["kind"] == "column_renamed":
                data = source.column(old_names.get(c["table"], c["table"]), c["table"], c["column"], c["to"]["name"])
            else:
                ev = c["details"]["evidence"]
                pairs = [(n, n) for n in ev["shared_columns"]] + [tuple(p) for p in ev.get("renamed_columns", [])]
                data = source.table(c["table"], c["to"]["table"], pairs)
            c["details"]["evidence"]["data"] = data
    finally:
        source.close()


# --- rendering ----------------------------------------------------------------------------
def evidence_line(change: dict) -> str | None:
    if change["kind"] not in ("column_renamed", "table_renamed"):
        return None
    ev = change["details"]["evidence"]
    parts = []
    if change["kind"] == "column_renamed":
        t = ev["type"]
        parts.append(f"same type {t['to']}" if t["match"] == "same" else f"type widens {t['from']} → {t['to']}")
        pos = ev["position"]
        parts.append(f"same position {pos['to']}" if pos["same"] else f"position {pos['from']} → {pos['to']}")
    else:
        parts.append(f"{ev['column_similarity']:.0%} of columns shared")
    data = ev.get("data")
    if data and data.get("available"):
        parts.append(f"{data['equal']}/{data['sampled']} sampled values equal in MongoDB {data['collection']}")
    elif data:
        parts.append(f"no data evidence: {data['reason']}")
    else:
        parts.append("no data evidence: not looked up")
    return "evidence: " + "; ".join(parts)


_ITEM_WORDS = {"foreign_key": "foreign key", "index": "index", "unique": "unique constraint",
               "check": "check", "primary_key": "primary key"}


def folded_line(change: dict) -> str | None:
    """What follows the change along instead of being reported on its own."""
    items = change["details"].get("folded") or []
    if not items:
        return None
    words = []
    for item in items:
        kind = item["instead_of"][0].rsplit("_", 1)[0]
        word = _ITEM_WORDS.get(kind, kind.replace("_", " "))
        if item.get("name"):
            word += f" {item['name']}"
        if item["table"] != change["table"] and item["table"] != (change.get("to") or {}).get("table"):
            word += f" of {item['table'].removeprefix('public.')}"
        words.append(word)
    return f"folded in ({len(items)}, not reported again): " + ", ".join(words)


def not_a_rename_line(change: dict) -> str | None:
    """The rename candidates considered for a removed column or table and why none was proposed."""
    items = change["details"].get("not_a_rename") or []
    if not items:
        return None
    return "not a rename: " + "; ".join(f"{item.get('column') or item['table'].removeprefix('public.')} "
                                        f"({item['reason']})" for item in items)


def precision_line(report: dict[str, Any]) -> str:
    """How many changes were folded or suppressed, and why: nothing left out goes unsaid."""
    p = report.get("precision") or precision(report["changes"])

    def reasons(by: dict[str, int]) -> str:
        return "; ".join(f"{reason}: {n}" for reason, n in by.items())

    def many(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    text = f"Precision: {many(p['reported'], 'change')} reported"
    if not p["folded"] and not p["suppressed"]:
        return text + "; nothing folded or suppressed."
    if p["folded"]:
        text += f"; {many(p['folded'], 'change')} folded into the change they follow ({reasons(p['folded_by_reason'])})"
    if p["suppressed"]:
        text += (f"; {many(p['suppressed'], 'rename candidate')} not proposed "
                 f"({reasons(p['suppressed_by_reason'])})")
    return text + ". Each is listed under its change in data/changes/latest.json."


def rows_in_use(report: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    seen = []
    for c in report["changes"]:
        if c["matrix_row"] not in [label for label, _ in seen]:
            row = next(r for r in IMPACT_ROWS.values() if r[0] == c["matrix_row"])
            seen.append(row)
    return seen




def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], detected_at: str) -> str:
    """The Markdown record written beside the timestamped JSON."""
    out = [f"# Schema changes — {report['database']} — {detected_at}", ""]
    out.append(f"- accepted snapshot: `{report['from_hash'] or 'none'}`")
    out.append(f"- current snapshot: `{report['to_hash']}`")
    out.append(f"- strict mode: {'on' if report['strict_mode'] else 'off'}")
    out.append("")
    for warning in report["warnings"]:
        out.append(f"> **Warning:** {warning}")
    if report["warnings"]:
        out.append("")
    if report["initial"]:
        st = report["initial_state"]
        out.append(f"Initial schema (no accepted snapshot yet): {st['table_count']} tables, "
                   f"{st['column_count']} fields.")
        out.append("")
        out.append("| table | kind | fields |")
        out.append("|---|---|---|")
        for name, t in st["tables"].items():
            out.append(f"| `{_md_cell(name)}` | {t['kind']} | {t['columns']} |")
        return "\n".join(out) + "\n"
    if not report["changes"] and report["from_hash"] != report["to_hash"]:
        out.append("No schema changes that documents depend on; the snapshot differs from the accepted one only "
                   "in index or constraint names, column order or similar details.")
        return "\n".join(out) + "\n"
    if not report["changes"]:
        out.append("No schema changes since the accepted snapshot.")
        return "\n".join(out) + "\n"
    counts = report["counts"]
    out.append(f"**{len(report['changes'])} changes**: {counts['safe']} safe, {counts['review']} need review.")
    out.append("")
    out.append(precision_line(report))
    out.append("")
    out.append("| change | class | reason | id |")
    out.append("|---|---|---|---|")
    for c in report["changes"]:
        reason = c["reason"]
        for extra in (evidence_line(c), folded_line(c), not_a_rename_line(c)):
            if extra:
                reason += f"; {extra}"
        out.append(f"| {_md_cell(c['summary'])} | {c['classification']} | {_md_cell(reason)} | `{c['id']}` |")
    out.append("")
    out.append("## Change impact")
    out.append("")
    out.append("| Change Type | Zod | MongoDB | API | UI | Tests |")
    out.append("|---|---|---|---|---|---|")
    for label, impact in rows_in_use(report):
        cells = " | ".join(IMPACT_WORDS[impact[k]] for k in ("zod", "mongodb", "api", "ui", "tests"))
        out.append(f"| {label} | {cells} |")
    return "\n".join(out) + "\n"


def write_outputs(report: dict[str, Any], directory: Path | None = None,
                  now: datetime | None = None) -> dict[str, Path]:
    """latest.json (rewritten only when its content changes) and <ts>.json + <ts>.md."""
    directory = directory or paths.changes
    now = now or datetime.now(timezone.utc)
    # Milliseconds keep the names unique and in run order when runs follow each other quickly.
    stamp = f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"
    detected_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    latest = directory / "latest.json"
    write_json_if_changed(latest, report)
    record = directory / f"{stamp}.json"
    serial = 1
    while record.exists():  # two runs within one second keep both records
        record = directory / f"{stamp}-{serial}.json"
        serial += 1
    write_atomic(record, json.dumps({**report, "detected_at": detected_at}, indent=2, sort_keys=True,
                                    ensure_ascii=False) + "\n")
    markdown = record.with_suffix(".md")
    write_atomic(markdown, render_markdown(report, detected_at))
    return {"latest": latest, "json": record, "markdown": markdown}
