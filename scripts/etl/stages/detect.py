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
from etl.core.errors import DatabaseError
from etl.core.fsutil import write_atomic, write_json_if_changed
from etl.core.paths import paths
from etl.model.diff import (
    IMPACT_ROWS,
    IMPACT_WORDS,
    Snapshot,
    detect_changes,
    unknown_types,
)

log = logging.getLogger("etl.detect")

FORMAT_VERSION = 1
EVIDENCE_SAMPLE = 200


def build_report(current: Snapshot, accepted: Snapshot | None, *, strict: bool = False) -> dict[str, Any]:
    """The changes document (pure). With no accepted snapshot the whole schema is the initial
    state: described once, not listed as hundreds of additions."""
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
        report["changes"] = detect_changes(accepted, current, strict=strict)
    report["counts"] = {"safe": sum(c["classification"] == "safe" for c in report["changes"]),
                        "review": sum(c["classification"] == "review" for c in report["changes"])}
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


def _comparable(value: Any) -> Any:
    """One spelling for a value read from PostgreSQL or from MongoDB, so equal data compares
    equal whichever side it came from (Decimal128 vs Decimal, dates, UUIDs, naive times)."""
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
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    return value


def _id_key(doc_id: Any, pk: list[str]) -> tuple[str, ...] | None:
    """The text form of a document's _id in primary-key order (composite keys are sub-documents)."""
    if len(pk) == 1:
        return (str(_comparable(doc_id)) if not isinstance(doc_id, dict) else None,)
    if not isinstance(doc_id, dict) or not all(k in doc_id for k in pk):
        return None
    return tuple(str(_comparable(doc_id[k])) for k in pk)


def _norm_key(values: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(_comparable(v)) for v in values)


def _fetch_rows(conn, table: dict[str, Any], pk: list[str], columns: list[str],
                keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Rows of `table` whose primary key (compared as text) is one of `keys`."""

    ident = sql.Identifier(table["schema"], table["name"])
    key_cols = [sql.Identifier(c) for c in pk]
    wanted = sql.SQL(", ").join(key_cols + [sql.Identifier(c) for c in columns])
    arrays = [[k[i] for k in keys] for i in range(len(pk))]
    query = sql.SQL("SELECT {cols} FROM {table} WHERE ({keys}) IN (SELECT * FROM unnest({params}))").format(
        cols=wanted, table=ident,
        keys=sql.SQL(", ").join(sql.SQL("{}::text").format(k) for k in key_cols),
        params=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in pk))
    rows = conn.execute(query, arrays).fetchall()
    return {_norm_key(row[:len(pk)]): dict(zip(columns, row[len(pk):])) for row in rows}


def _column_evidence(db, conn, change: dict, snap: Snapshot, old_table: str) -> dict[str, Any]:
    table = snap["tables"][change["table"]]
    pk = (table.get("primary_key") or {}).get("columns")
    coll = collection_name(old_table)
    if not pk:
        return {"available": False, "reason": f"{change['table']} has no primary key to match _id against"}
    old_field, new_column = change["column"], change["to"]["name"]
    docs = list(db[coll].find({old_field: {"$exists": True}}, {"_id": 1, old_field: 1}).limit(EVIDENCE_SAMPLE))
    if not docs:
        return {"available": False, "reason": f"no documents with field {old_field!r} in collection {coll!r}"}
    keyed = {k: d for d in docs if (k := _id_key(d["_id"], pk)) is not None and None not in k}
    rows = _fetch_rows(conn, table, pk, [new_column], list(keyed))
    equal = sum(1 for k, d in keyed.items() if k in rows
                and _comparable(rows[k][new_column]) == _comparable(d[old_field]))
    return {"available": True, "source": "mongodb", "collection": coll, "sampled": len(docs),
            "found_in_postgres": len(rows), "equal": equal}


def _table_evidence(db, conn, change: dict, snap: Snapshot) -> dict[str, Any]:
    new_name = change["to"]["table"]
    table = snap["tables"][new_name]
    pk = (table.get("primary_key") or {}).get("columns")
    coll = collection_name(change["table"])
    if not pk:
        return {"available": False, "reason": f"{new_name} has no primary key to match _id against"}
    shared = [c for c in change["details"]["evidence"]["shared_columns"] if c not in pk]
    docs = list(db[coll].find({}, {"_id": 1, **{c: 1 for c in shared}}).limit(EVIDENCE_SAMPLE))
    if not docs:
        return {"available": False, "reason": f"collection {coll!r} is empty or missing"}
    keyed = {k: d for d in docs if (k := _id_key(d["_id"], pk)) is not None and None not in k}
    rows = _fetch_rows(conn, table, pk, shared, list(keyed))
    equal = sum(1 for k, d in keyed.items() if k in rows
                and all(_comparable(rows[k][c]) == _comparable(d.get(c)) for c in shared))
    return {"available": True, "source": "mongodb", "collection": coll, "sampled": len(docs),
            "found_in_postgres": len(rows), "equal": equal}


def add_rename_evidence(report: dict[str, Any], current: Snapshot, cfg: Config) -> None:
    """Fill `details.evidence.data` of every rename candidate: of EVIDENCE_SAMPLE documents that
    hold the old field, how many have the same value in the new column for the same _id.
    When MongoDB or PostgreSQL cannot be asked, say why instead; detection goes on."""
    candidates = [c for c in report["changes"] if c["kind"] in ("column_renamed", "table_renamed")]
    if not candidates:
        return

    old_names = {c["to"]["table"]: c["table"] for c in report["changes"] if c["kind"] == "table_renamed"}

    def unavailable(reason: str) -> None:
        for c in candidates:
            c["details"]["evidence"]["data"] = {"available": False, "reason": reason}

    try:
        client = connect(cfg["MONGO_URI"])
    except DatabaseError as exc:
        return unavailable(exc.line())
    try:
        conn = psycopg.connect(cfg.pg_conninfo, autocommit=True)
    except psycopg.Error:
        return unavailable(f"PostgreSQL database {cfg['LOCAL_PG_DB']} is not reachable")
    with conn:
        db = client[cfg["MONGO_DB_NAME"]]
        for c in candidates:
            try:
                if c["kind"] == "column_renamed":
                    data = _column_evidence(db, conn, c, current, old_names.get(c["table"], c["table"]))
                else:
                    data = _table_evidence(db, conn, c, current)
            except Exception as exc:  # noqa: BLE001 - evidence is advisory; its absence is reported
                log.warning("rename evidence for %s failed: %s", c["id"], exc)
                data = {"available": False, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            c["details"]["evidence"]["data"] = data


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
    out.append("| change | class | reason | id |")
    out.append("|---|---|---|---|")
    for c in report["changes"]:
        reason = c["reason"]
        evidence = evidence_line(c)
        if evidence:
            reason += f"; {evidence}"
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
