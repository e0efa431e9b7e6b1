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
  is split into key ranges that run in parallel too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import struct
import subprocess
import time
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable

import bson
import bsonjs
from bson import json_util
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128, create_decimal128_context
from bson.int64 import Int64

from etl.formats.dumpdir import CODEC, BsonWriter, metadata, write_manifest, write_metadata
from etl.core.config import Config, mask_uri, pg_conninfo
from etl.core.errors import DatabaseError, TransformError
from etl.core.fsutil import content_hash, read_json
from etl.core.paths import paths
from etl.formats.provenance import accepted_schema_hash, source_dump
from etl.core.progress import Progress

log = logging.getLogger("etl.transform")

# Part of every fingerprint: bump it when the same rows and mapping give different documents.
TRANSFORM_VERSION = 1
FORMAT_VERSION = 1

# A table with at least this many (estimated) rows and a single integer key is cut into key
# ranges transformed in parallel.
SPLIT_ROWS = 200_000

_DEC_CTX = create_decimal128_context()

# A jsonb text key that starts with `$` or holds a `.` (or a backslash escape, checked in Python).
# A superset: rows it flags are checked exactly in Python.
_JSON_BAD_KEY_SQL = r'"(\$|[^"]*[.\\])[^"]*": '


def _jsonb_plain(txt: str) -> str:
    """SQL: the jsonb text has no key that a policy renames (a leading `$`, a `.`), so it can be
    used as it is. Any backslash sends the value to Python: an escaped quote inside a key would
    hide the key's end from the pattern, and a wrong "plain" would keep a bad key."""
    return (f"(strpos({txt}, '\\') = 0 AND (strpos({txt}, '$') = 0 AND strpos({txt}, '.') = 0 "
            f"OR {txt} !~ {qlit(_JSON_BAD_KEY_SQL)}))")


# ---------------------------------------------------------------------------------------------
# SQL helpers


def qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qtable(table: str) -> str:
    schema, _, name = table.partition(".")
    return f"{qident(schema)}.{qident(name)}" if name else qident(schema)


def qlit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _key(name: str) -> str:
    """`"name":` as a SQL literal (JSON-escaped, then SQL-quoted)."""
    return qlit(json.dumps(name, ensure_ascii=False) + ":")


def _round_sql(v: str, places: int, mode: str) -> str:
    """`v` (numeric) rounded like etl.rules.round_value, computed by PostgreSQL."""
    scale = f"1e{places}::numeric"
    y = f"({v} * {scale})"
    if mode == "half_up":  # PostgreSQL's round(): half away from zero
        return f"round({v}, {places})"
    if mode == "down":
        return f"trunc({v}, {places})"
    if mode == "up":
        return f"round(sign({v}) * ceil(abs({y})) / {scale}, {places})"
    if mode == "ceiling":
        return f"round(ceil({y}) / {scale}, {places})"
    if mode == "floor":
        return f"round(floor({y}) / {scale}, {places})"
    tie = f"(abs({y} - trunc({y})) = 0.5)"
    if mode == "half_down":
        return f"(CASE WHEN {tie} THEN trunc({v}, {places}) ELSE round({v}, {places}) END)"
    # half_even: a tie goes to the even neighbour
    even = f"round((trunc({y}) + CASE WHEN mod(trunc({y}), 2) = 0 THEN 0 ELSE sign({v}) END) / {scale}, {places})"
    return f"(CASE WHEN {tie} THEN {even} ELSE round({v}, {places}) END)"


# ---------------------------------------------------------------------------------------------
# The plan: SQL for the fast text, and the fields Python finishes


SIMPLE_ITEMS = {"string", "bool", "int"}


@dataclass
class PyItem:
    """One value carried as text in the second column."""

    kind: str  # "special" (only when the fast text could not hold it), "value", "input"
    field: dict[str, Any]
    sql: str


@dataclass
class Plan:
    collection: str
    table: str
    sql: str  # SELECT fast_text, py_json FROM …  (py_json NULL when nothing is needed)
    items: list[PyItem]
    calculated: list[dict[str, Any]]
    id_kind: str
    where_column: str | None = None  # integer key for range splits
    notes: list[str] = field(default_factory=list)
    embed_counts: list[tuple[list[str], str]] = field(default_factory=list)  # see _embed_count
    fast: Any = None  # fastpath.FastPlan when the C encoder can read every field
    general_reason: str | None = None  # why it cannot


def _fast_value(f: dict[str, Any], v: str) -> tuple[str | None, str | None]:
    """(extended-JSON SQL expression of non-null `v`, SQL condition under which that expression
    is exact) for field `f`; (None, None) when only Python can produce the value."""
    bson_t, ser = f["bson"], f.get("serialize")
    if f.get("cast") or f.get("default") is not None:
        return None, None
    if bson_t == "int":
        return f"{v}::text", None
    if bson_t == "long":
        return f"""'{{"$numberLong":"' || {v}::text || '"}}'""", None
    if bson_t == "decimal":
        # NaN and ±Infinity read as Decimal128 NaN/Infinity (the policy: kept); Python counts
        # them in the text (see _count_nonfinite), so there is no per-row check here.
        num = f"{v}::numeric"
        r = f.get("round")
        if r:
            num = _round_sql(num, int(r["places"]), r.get("mode", "half_even"))
        if ser == "double":
            return f"""'{{"$numberDouble":"' || ({num})::float8::text || '"}}'""", None
        if ser == "string":
            return f"to_json(({num})::text)::text", None
        ok = None
        mods = _modifiers(f.get("pg_type", ""))
        if not mods or mods[0] > 34:
            # Decimal128 holds 34 digits: longer values are rounded in Python (and counted).
            ok = f"length({v}::text) <= 34"
        return f"""'{{"$numberDecimal":"' || ({num})::text || '"}}'""", ok
    if bson_t == "double":
        if f.get("round"):
            return None, None
        return f"""'{{"$numberDouble":"' || {v}::float8::text || '"}}'""", None
    if bson_t == "string":
        return f"to_json({v}::text)::text", None
    if bson_t == "bool":
        return f"CASE {v} WHEN true THEN 'true' WHEN false THEN 'false' END", None
    if bson_t == "date":
        pg = f.get("pg_type", "")
        if pg == "date":
            ok = f"({v} BETWEEN DATE '0001-01-01' AND DATE '9999-12-31')"
            ms = f"(({v} - DATE '1970-01-01')::bigint * 86400000)"
        else:
            tz = "+00" if "with time zone" in pg or pg == "timestamptz" else ""
            ok = f"({v} >= '0001-01-01 00:00:00{tz}' AND {v} < '10000-01-01 00:00:00{tz}')"
            ms = f"floor(extract(epoch FROM {v}) * 1000)::bigint"
        if ser == "string":
            return f"to_json({v})::text", ok
        return f"""'{{"$date":{{"$numberLong":"' || {ms}::text || '"}}}}'""", ok
    if bson_t == "uuid":
        if ser == "binary":
            return (f"""'{{"$binary":{{"base64":"' || encode(uuid_send({v}), 'base64') """
                    f"""|| '","subType":"04"}}}}'"""), None
        return f"""'"' || {v}::text || '"'""", None
    if bson_t == "binData":
        return (f"""'{{"$binary":{{"base64":"' || translate(encode({v}, 'base64'), E'\\n', '') """
                f"""|| '","subType":"00"}}}}'"""), None
    if bson_t == "object":
        if f.get("pg_type") != "jsonb":
            return None, None  # json keeps its text as written (any key, \\u0000): Python reads it
        txt = f"{v}::text"
        ok = _jsonb_plain(txt)
        return txt, ok
    if bson_t == "array":
        items = f.get("items") or {}
        if _simple_items(items):
            return f"to_json({v})::text", None
        return None, None
    return None, None


def _simple_items(items: dict[str, Any]) -> bool:
    while items and items.get("bson") == "array":
        items = items.get("items") or {}
    return bool(items) and items.get("bson") in SIMPLE_ITEMS


def _modifiers(pg_type: str) -> list[int]:
    m = re.search(r"\(([^)]*)\)", pg_type)
    if not m:
        return []
    try:
        return [int(x) for x in m.group(1).split(",") if x.strip()]
    except ValueError:
        return []


def _read_expr(f: dict[str, Any], alias: str) -> str:
    v = f"{alias}.{qident(f['column'])}"
    read_as = f.get("read_as")
    if read_as:
        v = f"{v}::{read_as}"
    return v


def _text_expr(f: dict[str, Any], v: str) -> str:
    """How a value travels to Python: text, or JSON for arrays."""
    if f["bson"] == "array":
        return f"to_json({v})::text"
    if f["bson"] == "binData":
        return f"encode({v}, 'hex')"
    return f"{v}::text"


@dataclass
class _Builder:
    """Collects the pieces of one document's SELECT. `checks` and `texts` become columns of
    inner subqueries (OFFSET 0 keeps PostgreSQL from inlining them), so every check and every
    jsonb-to-text conversion runs once per row even though two outer columns use it."""

    alias: str
    embedded: bool
    items: list[PyItem] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # L1: expensive texts (jsonb::text)
    checks: list[str] = field(default_factory=list)  # L2: booleans, true = fast text is exact
    nulled: list[tuple[str, str]] = field(default_factory=list)  # embedded: (field, check) written null when false
    embed_counts: list[tuple[list[str], str]] = field(default_factory=list)  # (counter names, SQL)

    def text(self, expr: str) -> str:
        self.texts.append(expr)
        return f"{self.alias}.__x{len(self.texts) - 1}"

    def check(self, expr: str) -> str:
        self.checks.append(expr)
        return f"{self.alias}.__ok{len(self.checks) - 1}"


def _doc_pieces(spec: dict[str, Any], b: _Builder, mapping: dict[str, Any]) -> list[str]:
    """SQL pieces `,"name":value` ('' = the field travels to Python) of one collection's document."""
    pieces: list[str] = []
    alias = b.alias
    fields = spec["fields"]
    by_col = {f["column"]: f for f in fields}
    if spec["id"]["kind"] == "composite":
        subs = []
        for col in spec["id"]["columns"]:
            f = by_col[col]
            j, _ = _fast_value(f, _read_expr(f, alias))
            if j is None:
                j = f"to_json({_read_expr(f, alias)}::text)::text"
            subs.append(f"{_key(f['name'])} || {j}")
        pieces.append(f"',' || {_key('_id')} || '{{' || " + " || ',' || ".join(subs) + " || '}'")
    for f in sorted(fields, key=lambda f: f["name"] != "_id"):
        v = _read_expr(f, alias)
        key = _key(f["name"])
        if f["bson"] == "object" and f.get("pg_type") == "jsonb" and not f.get("cast") and f.get("default") is None:
            txt = f"{v}::text" if b.embedded else b.text(f"{v}::text")
            ok = f"({v} IS NULL OR {_jsonb_plain(txt)})"
            j = txt
            text_for_py = txt
        else:
            j, ok = _fast_value(f, v)
            text_for_py = _text_expr(f, v)
            if ok is not None:
                ok = f"({v} IS NULL OR {ok})"
        if j is None:
            if b.embedded:
                j, ok = f"to_json({v})::text", None
            else:
                b.items.append(PyItem("value", f, text_for_py))
                continue
        if ok is None:
            pieces.append(f"',' || {key} || coalesce({j}, 'null')")
        elif b.embedded:
            # Embedded children have no second column: a value the fast text cannot hold
            # exactly is null there (docs/transform-and-load.md, "Embedding").
            pieces.append(f"',' || {key} || CASE WHEN {ok} THEN coalesce({j}, 'null') ELSE 'null' END")
            b.nulled.append((f["name"], ok))
        else:
            flag = b.check(ok)
            pieces.append(f"CASE WHEN {flag} THEN ',' || {key} || coalesce({j}, 'null') ELSE '' END")
            b.items.append(PyItem("special", f, f"CASE WHEN NOT {flag} THEN {text_for_py} END"))
    for i, emb in enumerate(spec.get("embed") or []):
        pieces.append(_embed_piece(spec, emb, alias, f"{alias}_e{i}", mapping, b))
    return pieces


def _doc_text(pieces: list[str]) -> str:
    if not pieces:
        return "'{}'"
    # Every piece starts with a comma (or is empty); substr drops the first one.
    return "'{' || substr(" + " || ".join(pieces) + ", 2) || '}'"


def _embed_piece(parent: dict[str, Any], emb: dict[str, Any], alias: str, calias: str,
                 mapping: dict[str, Any], b: _Builder) -> str:
    child = mapping["collections"][emb["collection"]]
    cb = _Builder(calias, embedded=True)
    doc = _doc_text(_doc_pieces(child, cb, mapping))
    conds = [f"{calias}.{qident(fk)} = {alias}.{qident(pk)}"
             for fk, pk in zip(emb["foreign_key"], parent["id"]["columns"])]
    by_name = {f["name"]: f["column"] for f in child["fields"]}
    order = ", ".join(f"{calias}.{qident(by_name.get(k, k))} {'DESC' if int(d) < 0 else 'ASC'}"
                      for k, d in emb.get("sort") or [])
    inner = f"SELECT {doc} AS d FROM {qtable(child['table'])} {calias} WHERE {' AND '.join(conds)}"
    if order:
        inner += f" ORDER BY {order}"
    if emb.get("limit"):
        inner += f" LIMIT {int(emb['limit'])}"
    agg = f"(SELECT '[' || string_agg(s.d, ',') || ']' FROM ({inner}) s)"
    if cb.nulled and not b.embedded:
        b.embed_counts.append(_embed_count(parent, emb, child, alias, calias, conds, order, cb.nulled))
    return f"',' || {_key(emb['as'])} || coalesce({agg}, '[]')"


def _embed_count(parent: dict[str, Any], emb: dict[str, Any], child: dict[str, Any], alias: str, calias: str,
                 conds: list[str], order: str, nulled: list[tuple[str, str]]) -> tuple[list[str], str]:
    """Counter names and one SQL query counting, over the children a parent embeds (its sort
    and limit applied), the values written null because only Python could state them."""
    fk = ", ".join(f"{calias}.{qident(c)}" for c in emb["foreign_key"])
    limit = emb.get("limit")
    rn = f", row_number() OVER (PARTITION BY {fk} ORDER BY {order or fk}) AS __rn" if limit else ""
    source = (f"SELECT {calias}.*{rn} FROM {qtable(child['table'])} {calias} "
              f"WHERE EXISTS (SELECT 1 FROM {qtable(parent['table'])} {alias} WHERE {' AND '.join(conds)})")
    counts = ", ".join(f"count(*) FILTER (WHERE NOT {ok})" for _, ok in nulled)
    sql = f"SELECT json_build_array({counts}) FROM ({source}) {calias}"
    if limit:
        sql += f" WHERE {calias}.__rn <= {int(limit)}"
    return [f"embedded_{emb['as']}_{name}_nulled" for name, _ in nulled], sql


def plan_collection(name: str, spec: dict[str, Any], mapping: dict[str, Any], fast: bool = True) -> Plan:
    """The SELECT (with a `{where}` slot for key ranges) and the Python work for one collection;
    with `fast`, also the binary-COPY plan when the collection qualifies (etl.fastpath)."""
    alias = "t"
    b = _Builder(alias, embedded=False)
    pieces = _doc_pieces(spec, b, mapping)
    calculated = list(spec.get("calculated") or [])
    by_col = {f["column"]: f for f in spec["fields"]}
    needed: set[str] = set()
    for calc in calculated:
        needed.update(calc.get("columns") or [])
    for f in spec["fields"]:
        d = f.get("default")
        if isinstance(d, dict) and "expression" in d:
            from etl.model.expr import names_in

            needed.update(names_in(d["expression"]))
    for col in sorted(needed):
        f = by_col[col]
        b.items.append(PyItem("input", f, _text_expr(f, _read_expr(f, alias))))
    if b.items:
        arr = "json_build_array(" + ", ".join(i.sql for i in b.items) + ")::text"
        if all(i.kind == "special" for i in b.items) and not calculated:
            every_ok = " AND ".join(f"{alias}.__ok{i}" for i in range(len(b.checks)))
            arr = f"CASE WHEN {every_ok} THEN NULL ELSE {arr} END"
        py = arr
    elif calculated:
        py = "'[]'"
    else:
        py = "NULL::text"
    source = f"SELECT * FROM {qtable(spec['table'])} {alias}{{where}}"
    if b.texts:
        cols = ", ".join(f"{e} AS __x{i}" for i, e in enumerate(b.texts))
        source = f"SELECT {alias}.*, {cols} FROM {qtable(spec['table'])} {alias}{{where}} OFFSET 0"
    if b.checks:
        cols = ", ".join(f"{e} AS __ok{i}" for i, e in enumerate(b.checks))
        source = f"SELECT {alias}.*, {cols} FROM ({source}) {alias} OFFSET 0"
    sql = f"SELECT {_doc_text(pieces)}, {py} FROM ({source}) {alias}"
    where_column = None
    if spec["id"]["kind"] == "single":
        f = by_col[spec["id"]["columns"][0]]
        if f["bson"] in ("int", "long"):
            where_column = f["column"]
    notes = []
    if spec["id"]["kind"] == "none":
        notes.append(f"{spec['table']} has no primary key: full refresh only, _id assigned by MongoDB")
    plan = Plan(name, spec["table"], sql, b.items, calculated, spec["id"]["kind"], where_column, notes,
                b.embed_counts)
    if fast:
        from etl.stages import fastpath

        plan.fast, plan.general_reason = fastpath.plan(spec)
    else:
        plan.general_reason = "the fast path is turned off (ETL_TRANSFORM_FASTPATH)"
    return plan


# ---------------------------------------------------------------------------------------------
# Values Python finishes: text -> BSON value, with the policies


_TS_RE = re.compile(r"^(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
                    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$")
_EPOCH_DAYS = 719162  # date(1970,1,1).toordinal() - 1


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, for any year (year 0 = 1 BC)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_pg_timestamp(text: str) -> int | None:
    """Milliseconds since the epoch (floored) of PostgreSQL's ISO output of a date or
    timestamp; None for ±infinity."""
    if text in ("infinity", "-infinity"):
        return None
    m = _TS_RE.match(text)
    if not m:
        raise ValueError(f"not an ISO date/time: {text!r}")
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if m.group(12):
        y = 1 - y
    days = _days_from_civil(y, mo, d)
    secs = int(m.group(4) or 0) * 3600 + int(m.group(5) or 0) * 60 + int(m.group(6) or 0)
    micros = int((m.group(7) or "0").ljust(6, "0"))
    if m.group(8):
        off = int(m.group(9)) * 3600 + int(m.group(10) or 0) * 60 + int(m.group(11) or 0)
        secs -= off if m.group(8) == "+" else -off
    return (days * 86400 + secs) * 1000 + micros // 1000


_MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
_MAX_MS = 253402300800000  # 10000-01-01T00:00:00Z


class Converter:
    """Text -> document value for one collection, counting what each policy did."""

    def __init__(self, counters: Counter, cast_failures: Counter):
        self.counters = counters
        self.cast_failures = cast_failures

    # -- scalars ----------------------------------------------------------------------------

    def decimal(self, f: dict[str, Any], d: Decimal) -> Any:
        if d.is_nan():
            self.counters["numeric_nan_kept"] += 1
        elif d.is_infinite():
            self.counters["numeric_infinity_kept"] += 1
        else:
            r = f.get("round")
            if r:
                from etl.model.rules import round_value

                d = round_value(d, int(r["places"]), r.get("mode", "half_even"))
        ser = f.get("serialize")
        if ser == "double":
            return float(d)
        if ser == "string":
            return str(d)
        if d.is_finite() and len(d.as_tuple().digits) > 34:
            rounded = _DEC_CTX.create_decimal(d)  # half-even to 34 significant digits
            if rounded != d:
                self.counters["numeric_rounded_to_34_digits"] += 1
            d = rounded
        try:
            return Decimal128(d)
        except (InvalidOperation, ValueError):
            self.counters["numeric_out_of_decimal128_range_nulled"] += 1
            return None

    def date(self, f: dict[str, Any], text: str) -> Any:
        ms = parse_pg_timestamp(text)
        if ms is None:
            self.counters["date_infinity_nulled"] += 1
            return None
        if not _MIN_MS <= ms < _MAX_MS:
            self.counters["date_out_of_range_kept"] += 1
        if f.get("serialize") == "string":
            return text
        return DatetimeMS(ms)

    def scalar(self, f: dict[str, Any], text: str) -> Any:
        t = f["bson"]
        if t == "int":
            return int(text)
        if t == "long":
            return Int64(int(text))
        if t == "decimal":
            return self.decimal(f, Decimal(text))
        if t == "double":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                self.counters["double_nonfinite_kept"] += 1
            elif f.get("round"):
                from etl.model.rules import round_value

                value = round_value(value, int(f["round"]["places"]), f["round"].get("mode", "half_even"))
            return value
        if t == "bool":
            if text in ("t", "true"):
                return True
            if text in ("f", "false"):
                return False
            raise ValueError(f"not a boolean: {text!r}")
        if t == "date":
            return self.date(f, text)
        if t == "uuid":
            u = uuidlib.UUID(text)
            return Binary(u.bytes, 4) if f.get("serialize") == "binary" else str(u)
        if t == "binData":
            return Binary(bytes.fromhex(text[2:] if text.startswith("\\x") else text))
        if t == "object":
            return self.json(json.loads(text, parse_float=_json_float, parse_int=_json_int))
        if t == "array":
            return self.array(f.get("items") or {}, json.loads(text, parse_float=Decimal, parse_int=int))
        return text

    # -- JSON ---------------------------------------------------------------------------------

    def json(self, value: Any) -> Any:
        """A json/jsonb value with MongoDB-safe keys: a leading `$` becomes U+FF04, `.` becomes
        U+FF0E, NUL becomes U+FFFD (each counted); values are kept as they are."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k.startswith("$") or "." in k or "\x00" in k:
                    k2 = k.replace("\x00", "\ufffd").replace(".", "\uff0e")
                    if k2.startswith("$"):
                        k2 = "\uff04" + k2[1:]
                    self.counters["json_key_renamed"] += 1
                    k = k2
                out[k] = self.json(v)
            return out
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, str) and "\x00" in value:
            self.counters["json_nul_in_string_kept"] += 1
        return value

    def array(self, items: dict[str, Any], value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self.array(items, v) for v in value]
        t = items.get("bson")
        if t == "array":  # nested arrays arrive already nested
            return self.array(items.get("items") or {}, value)
        if t == "decimal":
            d = value if isinstance(value, Decimal) else Decimal(str(value))
            return self.decimal(items, d)
        if t == "double":
            return float(value)
        if t == "long":
            return Int64(int(value))
        if t == "int":
            return int(value)
        if t == "date":
            return self.date(items, str(value).replace("T", " "))
        if t == "uuid":
            return self.scalar(items, str(value))
        if t == "binData":
            return self.scalar(items, str(value))
        if t == "object":
            return self.json(_plain_json(value))
        if t == "bool":
            return bool(value)
        return value if isinstance(value, str) else json.dumps(_plain_json(value))


def _json_float(text: str) -> Any:
    return float(text)


def _json_int(text: str) -> Any:
    value = int(text)
    # BSON has no integer wider than 64 bits: a larger JSON integer becomes Decimal128 (exact
    # up to 34 digits) rather than failing the row.
    if -(1 << 63) <= value < (1 << 63):
        return value
    return Decimal128(_DEC_CTX.create_decimal(value))


def _plain_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "E" not in str(value) \
            and "." not in str(value) else float(value)
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    return value


def _python_value(f: dict[str, Any], conv: Converter, text: str | None) -> Any:
    """A natural Python value (Decimal, datetime, int…) for calculated-field inputs."""
    if text is None:
        return None
    t = f["bson"]
    if t == "decimal":
        return Decimal(text)
    if t == "date":
        ms = parse_pg_timestamp(text)
        if ms is None or not _MIN_MS <= ms < _MAX_MS:
            return None
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    if t in ("int", "long"):
        return int(text)
    if t == "double":
        return float(text)
    return conv.scalar({**f, "serialize": None, "round": None}, text)


def _calc_value(calc: dict[str, Any], value: Any, conv: Converter) -> Any:
    if value is None:
        return None
    r = calc.get("round")
    if r:
        from etl.model.rules import round_value

        value = round_value(value, int(r["places"]), r.get("mode", "half_even"))
    t = calc.get("bson", "decimal")
    if t == "decimal":
        return conv.decimal({"serialize": "decimal128"}, value if isinstance(value, Decimal) else Decimal(str(value)))
    if t == "double":
        return float(value)
    if t == "int":
        return int(value)
    if t == "long":
        return Int64(int(value))
    if t == "string":
        return str(value)
    if t == "bool":
        return bool(value)
    return value


# ---------------------------------------------------------------------------------------------
# Running one plan


_I32 = struct.Struct("<i")


def _splice(doc: bytes, extra: dict[str, Any]) -> bytes:
    """`doc` (BSON) with the fields of `extra` appended, without decoding `doc`."""
    if not extra:
        return doc
    tail = bson.encode(extra, codec_options=CODEC)
    body = doc[4:-1] + tail[4:-1]
    return _I32.pack(len(body) + 5) + body + b"\x00"


class RowFinisher:
    """Applies the second column (Python-carried values) to a document."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.counters: Counter = Counter()
        self.cast_failures: Counter = Counter()
        self.conv = Converter(self.counters, self.cast_failures)

    def finish(self, doc: bytes, py_text: str) -> bytes:
        values = json.loads(py_text)
        extra: dict[str, Any] = {}
        inputs: dict[str, Any] = {}
        conv = self.conv
        for item, text in zip(self.plan.items, values):
            f = item.field
            if item.kind == "input":
                inputs[f["column"]] = _python_value(f, conv, text)
                continue
            if item.kind == "special" and text is None:
                continue
            extra[f["name"]] = self._field(f, text, extra, inputs, doc)
        for calc in self.plan.calculated:
            extra[calc["name"]] = self._calculated(calc, inputs, doc)
        return _splice(doc, extra)

    def _field(self, f: dict[str, Any], text: str | None, extra: dict[str, Any],
               inputs: dict[str, Any], doc: bytes) -> Any:
        if text is None:
            default = f.get("default")
            if default is None:
                return None
            self.counters["default_applied"] += 1
            if isinstance(default, dict) and "expression" in default:
                from etl.model.rules import evaluate

                try:
                    return _calc_value({"bson": f["bson"]}, evaluate(default["expression"], inputs), self.conv)
                except ArithmeticError:
                    return None
            return self.conv.array(f, default) if f["bson"] != "array" else default
        cast = f.get("cast")
        try:
            return self.conv.scalar(f, text)
        except (ValueError, InvalidOperation, ArithmeticError, TypeError) as exc:
            if not cast:
                raise TransformError(f"{self.plan.table}.{f['column']}: cannot read {text[:40]!r} as "
                                     f"{f['bson']}: {exc}") from None
            self.cast_failures[f["name"]] += 1
            policy = cast.get("on_failure", "fail")
            if policy == "fail":
                raise TransformError(
                    f"{self.plan.table}.{f['column']}: value {text[:40]!r} does not cast to {f['bson']} "
                    f"(decision on_failure: fail)", hint=f"document {_doc_id(doc)}") from None
            if policy == "keep_old" and f.get("archive_as"):
                extra[f["archive_as"]] = text
            return None

    def _calculated(self, calc: dict[str, Any], inputs: dict[str, Any], doc: bytes) -> Any:
        from etl.model.rules import evaluate

        try:
            value = evaluate(calc["expression"], inputs)
        except ArithmeticError as exc:
            self.counters[f"calculated_{calc['name']}_errors"] += 1
            if calc.get("on_error", "null") == "fail":
                raise TransformError(f"{self.plan.collection}.{calc['name']}: {exc} "
                                     f"(document {_doc_id(doc)})") from None
            return None
        return _calc_value(calc, value, self.conv)


def _doc_id(doc: bytes) -> str:
    try:
        return json_util.dumps(bson.decode(doc, codec_options=CODEC).get("_id"))
    except Exception:  # noqa: BLE001 - only for a message
        return "?"


def _loads_fallback(line: bytes, counters: Counter) -> bytes:
    """A line libbson refused (e.g. a JSON integer wider than 64 bits inside jsonb): decode it
    in Python with the same extended-JSON rules and the wide-integer policy."""
    counters["rows_via_python_json"] += 1
    doc = json_util.loads(line.decode("utf-8"), parse_int=_json_int)
    return bson.encode(doc, codec_options=CODEC)


@dataclass
class PartResult:
    count: int
    counters: dict[str, int]
    cast_failures: dict[str, int]
    seconds: float
    reader: str = "sql-json"  # or "binary-copy" (etl.fastpath)
    via_general: int = 0  # rows of a binary-copy part that the general path transformed


def _psql(conninfo: str) -> tuple[list[str], dict[str, str]]:
    """psql connected with `conninfo`, without a command yet: argv and environment. The
    password travels in PGPASSWORD, never on the command line; session settings in PGOPTIONS."""
    from etl.core.config import client_connection
    from etl.adapters.services import pg_tool

    dsn, env, _ = client_connection(conninfo)
    env["PGOPTIONS"] = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=1"
    return [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn], env


def _psql_command(conninfo: str, sql: str, binary: bool = False) -> tuple[list[str], dict[str, str]]:
    """psql running `COPY (sql) TO STDOUT` (binary format with `binary`): argv and environment."""
    argv, env = _psql(conninfo)
    return argv + ["-c", f"COPY ({sql}) TO STDOUT" + (" (FORMAT binary)" if binary else "")], env


class CopyStream:
    """psql running one `COPY (sql) TO STDOUT` into a pipe (`stdout`). Leaving the `with`
    block stops psql if it still runs and closes the pipes; `finish` checks how it ended."""

    def __init__(self, conninfo: str, sql: str, table: str, binary: bool = False):
        argv, env = _psql_command(conninfo, sql, binary)
        self.table = table
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        self.stdout = self.proc.stdout

    def __enter__(self) -> "CopyStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def finish(self, complete: bool) -> None:
        """One error naming the table unless psql succeeded and the stream was `complete`."""
        err = self.proc.stderr.read().decode("utf-8", "replace").strip()
        if self.proc.wait() != 0 or not complete:
            last = err.splitlines()[-1] if err else f"psql exited with {self.proc.returncode}"
            raise DatabaseError(f"reading {self.table} failed: {mask_uri(last)}")


def run_plan(conninfo: str, plan: Plan, out: Path, where: str | None = None,
             progress: Progress | None = None, fast: bool = True) -> PartResult:
    """Stream `plan`'s SELECT (optionally restricted by `where`) into the .bson file `out`:
    through the binary-COPY fast path when the plan has one (and `fast`), else the general path.

    psql does the COPY and writes it to a pipe: libpq's row-by-row reading stays in C, and
    Python reads the pipe a megabyte at a time while the server and psql keep producing."""
    if fast and plan.fast is not None:
        from etl.stages import fastpath

        return fastpath.run(conninfo, plan, out, where, progress)
    start = time.perf_counter()
    finisher = RowFinisher(plan)
    counters = finisher.counters
    sql = plan.sql.replace("{where}", f" WHERE {where}" if where else "")
    writer = BsonWriter(out)
    try:
        with CopyStream(conninfo, sql, plan.table) as stream:
            rest = b""
            while True:
                block = stream.stdout.read(BLOCK_BYTES)
                if not block:
                    break
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    _flush(data[:cut], writer, finisher, counters, progress)
            stream.finish(not rest)
        count, _, _ = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return PartResult(count, dict(counters), dict(finisher.cast_failures), time.perf_counter() - start)


_NONFINITE = {
    "numeric_nan_kept": (b'{"$numberDecimal":"NaN"}',),
    "numeric_infinity_kept": (b'{"$numberDecimal":"Infinity"}', b'{"$numberDecimal":"-Infinity"}'),
    "double_nan_kept": (b'{"$numberDouble":"NaN"}',),
    "double_infinity_kept": (b'{"$numberDouble":"Infinity"}', b'{"$numberDouble":"-Infinity"}'),
}


def _count_nonfinite(block: bytes, counters: Counter) -> None:
    """Count the NaN/±Infinity values of the fast text. Only the SELECT's own wrappers can
    spell these bytes: quotes inside JSON strings are escaped, and jsonb keys starting with `$`
    never reach the fast text."""
    if b'"NaN"' not in block and b'Infinity"' not in block:
        return
    for name, needles in _NONFINITE.items():
        n = sum(block.count(needle) for needle in needles)
        if n:
            counters[name] += n


BLOCK_BYTES = 1 << 20


def _flush(data: bytes, writer: BsonWriter, finisher: "RowFinisher", counters: Counter,
           progress: Progress | None) -> None:
    chunk = data[:-1]  # whole lines, the last newline dropped
    if b"\\" in chunk:
        # COPY's text format doubles every backslash; JSON text holds no raw control
        # characters, so that is the only escape present.
        chunk = chunk.replace(b"\\\\", b"\\")
    encoded, lines = _encode_lines(chunk, bsonjs.loads, finisher, counters)
    writer.write_raw(encoded, lines)
    if progress is not None:
        progress.advance(lines)


def _encode_lines(block: bytes, loads: Callable[[bytes], bytes], finisher: RowFinisher,
                  counters: Counter) -> tuple[bytes, int]:
    """BSON of the COPY lines in `block` (no trailing newline), and how many there were."""
    lines = block.count(b"\n") + 1
    _count_nonfinite(block, counters)
    # Common case: no line of the block has a second column (each ends in a tab and \N; a
    # raw tab only ever appears as COPY's delimiter, JSON escapes its own).
    if block.count(b"\t\\N") == lines:
        try:
            return b"".join(map(loads, block.replace(b"\t\\N", b"").split(b"\n"))), lines
        except Exception:  # noqa: BLE001 - libbson's errors are plain exceptions; redo line by line
            pass
    out = []
    for line in block.split(b"\n"):
        doc_text, _, py = line.partition(b"\t")
        try:
            doc = loads(doc_text)
        except Exception:  # noqa: BLE001
            doc = _loads_fallback(doc_text, counters)
        if py != b"\\N":
            doc = finisher.finish(doc, py.decode("utf-8"))
        out.append(doc)
    return b"".join(out), lines


# ---------------------------------------------------------------------------------------------
# Fingerprints: is this collection's output still current?


_STATS_SQL = """
SELECT coalesce(json_object_agg(r.name, CASE WHEN to_regclass(r.q) IS NOT NULL THEN (
  SELECT json_build_array(
           coalesce(sum(s.n_tup_ins), 0)::text, coalesce(sum(s.n_tup_upd), 0)::text,
           coalesce(sum(s.n_tup_del), 0)::text, coalesce(sum(s.n_live_tup), 0)::text,
           coalesce(string_agg(c.relfilenode::text, ',' ORDER BY c.oid), ''),
           coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0)::bigint)
  FROM pg_class c
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  WHERE c.oid = to_regclass(r.q)
     OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(r.q))) END), '{}')
FROM (VALUES {values}) r(name, q)
"""


def query_json(conninfo: str, sql: str) -> Any:
    """The one JSON value `sql` returns, through psql: the transform's catalog reads cost a
    psql start (milliseconds) instead of importing a driver, which a run with nothing to do
    would spend most of its time on."""
    argv, env = _psql(conninfo)
    proc = subprocess.run(argv + ["-A", "-t", "-c", sql], capture_output=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        first = err.splitlines()[0] if err else f"psql exited with {proc.returncode}"
        raise DatabaseError(first.removeprefix("psql: error: ").removeprefix("ERROR:  "))
    return json.loads(proc.stdout)


def table_stats(conninfo: str, tables: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per table (partitions summed): write counters, relfilenodes and the row estimate, in one
    catalog query."""
    names = sorted(set(tables))
    if not names:
        return {}
    values = ", ".join(f"({qlit(t)}, {qlit(qtable(t))})" for t in names)
    rows = query_json(conninfo, _STATS_SQL.replace("{values}", values))
    out = {}
    for table in names:
        row = rows.get(table)
        if row is None:
            raise TransformError(f"table {table} of the mapping does not exist in the local database",
                                 hint="the mapping is older than the restore: run `make canonical`")
        out[table] = {"ins": row[0], "upd": row[1], "del": row[2], "live": row[3],
                      "files": row[4], "estimate": int(row[5] or 0)}
    return out


def fingerprint(name: str, spec: dict[str, Any], stats: dict[str, dict[str, Any]], source: Any) -> str:
    """sha256 of what decides the collection's documents: its mapping entry, the transform's
    version, the restored dump, and for its table and every embedded child table the
    statistics counters PostgreSQL keeps anyway (rows inserted/updated/deleted, live rows) and
    the relation's file node (changed by TRUNCATE, VACUUM FULL and a fresh restore). Reading
    them is one catalog query per table, whatever its size."""
    tables = [spec["table"]] + [child for child in _embedded_tables(spec)]
    state = {t: {k: v for k, v in stats.get(t, {}).items() if k != "estimate"} for t in tables}
    return content_hash({"v": TRANSFORM_VERSION, "collection": name, "spec": spec,
                         "tables": state, "source": source})


_EMBED_TABLES: dict[str, list[str]] = {}


def _embedded_tables(spec: dict[str, Any]) -> list[str]:
    return _EMBED_TABLES.get(spec["table"], [])


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


def load_mapping(path: Path | None = None) -> dict[str, Any]:
    from etl.model.mapping import mapping_path

    path = path or mapping_path()
    if not path.is_file():
        raise TransformError(f"{path} not found", hint="run `make canonical` first")
    try:
        mapping = read_json(path)
    except (OSError, ValueError) as exc:
        raise TransformError(f"{path} is not readable JSON: {exc}") from None
    if mapping.get("format_version") != 1 or not isinstance(mapping.get("collections"), dict):
        raise TransformError(f"{path}: unknown mapping format {mapping.get('format_version')!r}")
    return mapping


def _metadata_for(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    from etl.stages.mongo_schema import expected_indexes

    options: dict[str, Any] = {}
    try:
        from etl.stages.canonical import collections_dir

        schema_path = collections_dir() / f"{name}.schema.json"
        if schema_path.is_file():
            from etl.stages.mongo_schema import validator_for

            options = {"validator": validator_for(read_json(schema_path))}
    except ImportError:
        pass
    return metadata(name, expected_indexes(spec), options)


def _work(args: tuple) -> tuple[str, int, PartResult]:
    conninfo, plan, out, where, index = args
    return plan.collection, index, run_plan(conninfo, plan, Path(out), where)


def _run_jobs(jobs: list[tuple], workers: int, parts: dict[str, dict[int, PartResult]], total: int | None,
              db: str) -> None:
    with Progress(f"transform {db}", total=total, unit="rows") as bar:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing

            from concurrent.futures import ProcessPoolExecutor

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
    from etl.adapters.mongodb import check_db_name

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

    for name, spec in specs.items():
        _EMBED_TABLES[spec["table"]] = [specs[e["collection"]]["table"] for e in spec.get("embed") or []
                                        if e["collection"] in specs]
    try:
        stats = table_stats(conninfo, [specs[n]["table"] for n in specs]
                            + [t for n in wanted for t in _EMBED_TABLES.get(specs[n]["table"], [])])
        plans = {n: plan_collection(n, specs[n], mapping, fast=cfg["ETL_TRANSFORM_FASTPATH"]) for n in wanted}
        source = source_dump()
        prints = {n: fingerprint(n, specs[n], stats, source) for n in wanted}
        todo = [n for n in wanted if force or not _current(folder, old.get(n), prints[n])]
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

    from etl.stages import fastpath

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
    from etl.model.mapping import mapping_hash

    collections = {}
    for n, c in sorted(results.items()):
        spec = mapping["collections"].get(n, {})
        collections[n] = {"name": n, "count": c.count, "rows": c.count, "skipped": 0, "sha256": c.sha256,
                          "metadata_sha256": c.metadata_sha256, "bytes": c.size, "fingerprint": c.fingerprint,
                          "table": spec.get("table"), "refresh": spec.get("refresh"),
                          "id": (spec.get("id") or {}).get("kind"), "policies": c.counters,
                          "cast_failures": c.cast_failures, "notes": c.notes, "reader": c.reader,
                          "rows_via_general_path": c.via_general}
        if c.reader_note:
            collections[n]["reader_note"] = c.reader_note
    body = {
        "format_version": FORMAT_VERSION,
        "kind": "transform",
        "database": db,
        "mapping_hash": mapping_hash(mapping),
        "schema_hash": accepted_schema_hash(),
        "source_dump": source_dump(),
        "collections": collections,
        "policies": dict(sum((Counter(c.counters) for c in results.values()), Counter())),
        "cast_failures": {f"{n}.{k}": v for n, c in results.items() for k, v in c.cast_failures.items()},
    }
    body["version"] = content_hash(body)[:16]
    old_body = {k: v for k, v in old.items() if k not in ("created_at",)}
    if old_body == json.loads(json.dumps(body, default=str)):
        return False
    body["created_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_manifest(folder, body)
    return True
