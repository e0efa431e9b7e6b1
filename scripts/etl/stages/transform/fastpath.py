"""The transform's fast path: binary COPY rows encoded as BSON in C (`etl._pgbson`).

A collection whose fields all have plain conversions (no cast, default, rounding, calculated
field or embedding; types the C encoder reads, listed in `_scalar`) is read with
`COPY (SELECT …) TO STDOUT (FORMAT binary)`: PostgreSQL sends its binary wire format, which
is cheaper to produce than text, and `_pgbson.encode` turns whole blocks of rows into BSON
without creating a Python object per value. The documents are byte-for-byte those of the
general path (`transform.run_plan`, tests/test_fastpath.py compares them).

A row with a value that needs a policy (an infinite or out-of-range timestamp, a numeric wider
than Decimal128, a JSON key with `.` or a leading `$`, a JSON integer wider than 64 bits…) is
left out by the encoder and identified by its `(tableoid, ctid)`; those rows are transformed
again, afterwards, by the general path, which applies and counts every policy. Their documents
come last in the file. When many rows of a part need it (more than FLAGGED_LIMIT), the whole
part goes through the general path instead.
"""

from __future__ import annotations

import fcntl
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.core.errors import DatabaseError, TransformError
from etl.formats.dumpdir import BsonWriter
from etl.model.mapping import type_name
from etl.stages.transform.copy import CopyStream, PartResult, run_general
from etl.stages.transform.sql import (
    Plan,
    modifiers,
    qident,
    qtable,
    read_expr,
    round_sql,
)

if TYPE_CHECKING:
    from etl.core.progress import Progress

try:
    from etl.stages.transform import _pgbson
except ImportError as exc:  # the extension was not built: every collection takes the general path
    _pgbson = None
    IMPORT_ERROR: str | None = str(exc)
else:
    IMPORT_ERROR = None

log = logging.getLogger("etl.transform")

BLOCK_BYTES = 1 << 20
FLAGGED_LIMIT = 2000
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COUNTER_NAMES = ("numeric_nan_kept", "numeric_infinity_kept", "double_nan_kept", "double_infinity_kept")

_TEXT_ELEMENTS = {"text", "character varying", "varchar", "name", "citext"}
_INT_ELEMENTS = {"smallint", "integer"}


@dataclass
class FastPlan:
    sql: str  # SELECT <one column per field>, t.tableoid, t.ctid FROM … t{where}
    ops: tuple[tuple[int, int, bytes], ...]
    columns: int


def available() -> bool:
    return _pgbson is not None


def _leaf(items: dict[str, Any] | None) -> dict[str, Any]:
    items = items or {}
    while items.get("bson") == "array":
        items = items.get("items") or {}
    return items


def _scalar(f: dict[str, Any], v: str) -> tuple[str, str] | None:
    """(kind name, SQL expression with a binary format the encoder reads) for field `f` read
    as `v`, or None when only the general path can produce its value."""
    bson_t, ser = f["bson"], f.get("serialize")
    if f.get("cast") or f.get("default") is not None or (f.get("round") and bson_t != "decimal"):
        return None
    name = type_name(f.get("pg_type") or "")
    if bson_t == "int":
        return ("INT", f"{v}::int8") if name in _INT_ELEMENTS and not f.get("read_as") else None
    if bson_t == "long":
        return ("LONG", f"{v}::int8") if name == "bigint" and not f.get("read_as") else None
    if bson_t == "decimal":
        if ser not in (None, "decimal128"):
            return None
        # As the general path: without a precision of at most 34, a value whose text is longer
        # than 34 characters goes through Python (which rounds it to 34 digits, counted).
        mods = modifiers(f.get("pg_type", ""))
        r = f.get("round")
        if r:
            if not mods or mods[0] > 34:
                return None  # the general path checks the length before rounding: keep its choice
            # PostgreSQL rounds, as in the general path's SELECT (all seven modes).
            return "DECIMAL", f"({round_sql(f'{v}::numeric', int(r['places']), r.get('mode', 'half_even'))})::numeric"
        return ("DECIMAL" if mods and mods[0] <= 34 else "DECIMAL_34"), f"{v}::numeric"
    if bson_t == "double":
        return ("DOUBLE", f"{v}::float8") if name in ("real", "double precision") else None
    if bson_t == "string":
        return "STRING", f"{v}::text"
    if bson_t == "bool":
        return "BOOL", f"{v}::bool"
    if bson_t == "date":
        if ser not in (None, "datetime"):
            return None
        if name == "date":
            return "DATE_DAYS", f"{v}::date"
        if name.startswith("timestamp"):
            return "DATE_TS", v
        return None
    if bson_t == "uuid":
        return ("UUID_BINARY" if ser == "binary" else "UUID_STRING"), f"{v}::uuid"
    if bson_t == "binData":
        return ("BYTES", f"{v}::bytea") if name == "bytea" else None
    if bson_t == "object":
        return ("JSONB", v) if name == "jsonb" and not f.get("read_as") else None
    if bson_t == "array":
        leaf = _leaf(f.get("items"))
        element = re.sub(r"(\[\])+$", "", name)
        if leaf.get("bson") == "string" and (leaf.get("enum") or element in _TEXT_ELEMENTS):
            return "ARRAY_STRING", f"{v}::text[]"
        if leaf.get("bson") == "int" and element in _INT_ELEMENTS:
            return "ARRAY_INT", f"{v}::int8[]"
        if leaf.get("bson") == "bool" and element == "boolean":
            return "ARRAY_BOOL", f"{v}::bool[]"
    return None


def plan(spec: dict[str, Any]) -> tuple[FastPlan | None, str | None]:
    """The fast plan of one collection, or (None, why the general path is needed)."""
    if _pgbson is None:
        return None, f"the C encoder is not built ({IMPORT_ERROR})"
    if spec.get("kind", "table") not in ("table", "partitioned", "materialized_view"):
        return None, f"a {spec.get('kind')} has no row identity for policy fallbacks"
    if spec.get("embed"):
        return None, "embedded children"
    if spec.get("calculated"):
        return None, "calculated fields"
    fields = spec["fields"]
    by_col = {f["column"]: f for f in fields}
    columns: list[str] = []
    index: dict[str, int] = {}
    ops: list[tuple[int, int, bytes]] = []

    def op(f: dict[str, Any], key: str) -> str | None:
        if key.startswith("$") or "." in key or "\x00" in key:
            return f"field name {key!r}"
        found = _scalar(f, read_expr(f, "t"))
        if found is None:
            return f"{f['column']} ({f.get('pg_type')} as {f['bson']}" + (
                ", with a rule)" if f.get("cast") or f.get("default") is not None or f.get("round") else ")")
        kind, expr = found
        if f["column"] not in index:
            index[f["column"]] = len(columns)
            columns.append(f"{expr} AS {qident('c' + str(len(columns)))}")
        ops.append((getattr(_pgbson, kind), index[f["column"]], key.encode("utf-8")))
        return None

    if spec["id"]["kind"] == "composite":
        ops.append((_pgbson.DOC_BEGIN, 0, b"_id"))
        for col in spec["id"]["columns"]:
            why = op(by_col[col], by_col[col]["name"])
            if why:
                return None, why
        ops.append((_pgbson.DOC_END, 0, b""))
    for f in sorted(fields, key=lambda f: f["name"] != "_id"):
        why = op(f, f["name"])
        if why:
            return None, why
    if not columns:
        return None, "no fields"
    sql = (f"SELECT {', '.join(columns)}, t.tableoid, t.ctid FROM {qtable(spec['table'])} t{{where}}")
    return FastPlan(sql, tuple(ops), len(columns) + 2), None


def _tid_condition(flagged: list[tuple[bytes, bytes]]) -> str:
    """SQL selecting the flagged rows by (tableoid, ctid)."""
    by_rel: dict[int, list[str]] = {}
    for rel, tid in flagged:
        block, offset = int.from_bytes(tid[:4], "big"), int.from_bytes(tid[4:6], "big")
        by_rel.setdefault(int.from_bytes(rel, "big"), []).append(f'"({block},{offset})"')
    return " OR ".join(f"(t.tableoid = {oid} AND t.ctid = ANY('{{{','.join(tids)}}}'::tid[]))"
                       for oid, tids in sorted(by_rel.items()))


def run(conninfo: str, plan_: Plan, out: Path, where: str | None = None,
        progress: "Progress | None" = None) -> PartResult:
    """Stream the fast plan of `plan_` (optionally restricted by `where`) into `out`; rows the
    encoder leaves out go through the general path and are appended."""
    fast = plan_.fast
    assert fast is not None and _pgbson is not None
    start = time.perf_counter()
    sql = fast.sql.replace("{where}", f" WHERE {where}" if where else "")
    counters: Counter = Counter()
    flagged: list[tuple[bytes, bytes]] = []
    encode, ops, ncols = _pgbson.encode, fast.ops, fast.columns
    writer = BsonWriter(out)
    try:
        with CopyStream(conninfo, sql, plan_.table, binary=True) as stream:
            _widen_pipe(stream.stdout)
            buf = b""
            header = False
            finished = False
            while len(flagged) <= FLAGGED_LIMIT:
                block = stream.stdout.read(BLOCK_BYTES)
                if block:
                    buf = buf + block if buf else block
                if not header:
                    if len(buf) < 19 and block:
                        continue
                    buf = _skip_header(buf, plan_.table)
                    header = True
                if buf and not finished:
                    try:
                        data, used, docs, rows_out, counts, finished = encode(buf, ops, ncols, 2)
                    except ValueError as exc:
                        raise TransformError(f"reading {plan_.table}: {exc}") from None
                    writer.write_raw(data, docs)
                    buf = buf[used:]
                    flagged.extend(rows_out)
                    for name, n in zip(COUNTER_NAMES, counts):
                        if n:
                            counters[name] += n
                    if progress is not None:
                        progress.advance(docs + len(rows_out))
                if not block:
                    break
            too_many = len(flagged) > FLAGGED_LIMIT
            if not too_many:
                stream.finish(finished and not buf)
        if too_many:
            # Cheaper to redo the part than to look up this many rows one by one.
            writer.abort()
            log.info("%s: more than %d rows need the general path; transforming the part through it",
                     plan_.collection, FLAGGED_LIMIT)
            result = run_general(conninfo, plan_, out, where, None)
            result.via_general = result.count
            return result
        cast_failures: dict[str, int] = {}
        if flagged:
            extra = out.with_name(out.name + ".flagged")
            try:
                part = run_general(conninfo, plan_, extra, _tid_condition(flagged), None)
                if part.count != len(flagged):
                    raise DatabaseError(f"reading {plan_.table} failed: {len(flagged)} rows needed the general "
                                        f"path but {part.count} were found again (was the table written to?)")
                writer.write_raw(extra.read_bytes(), part.count)
            finally:
                extra.unlink(missing_ok=True)
            counters.update(part.counters)
            cast_failures = part.cast_failures
        count, _, _ = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return PartResult(count, dict(counters), dict(cast_failures), time.perf_counter() - start,
                      "binary-copy", len(flagged))


def _skip_header(buf: bytes, table: str) -> bytes:
    if len(buf) < 19 or buf[:11] != SIGNATURE:
        raise DatabaseError(f"reading {table} failed: not a binary COPY stream")
    ext = int.from_bytes(buf[15:19], "big")
    if len(buf) < 19 + ext:
        raise DatabaseError(f"reading {table} failed: truncated binary COPY header")
    return buf[19 + ext:]


def _widen_pipe(pipe) -> None:
    """A pipe of BLOCK_BYTES instead of 64 KiB, so psql and the server keep producing while a
    block is encoded (Linux; elsewhere, or above the system's limit, the default stays)."""

    try:
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), BLOCK_BYTES)
    except OSError:
        pass
