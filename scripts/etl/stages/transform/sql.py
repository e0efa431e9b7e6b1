"""The transform's SQL: per collection, the query PostgreSQL runs and the plan the rest follows."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from etl.model.expr import names_in

log = logging.getLogger("etl.transform")




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


def round_sql(v: str, places: int, mode: str) -> str:
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
            num = round_sql(num, int(r["places"]), r.get("mode", "half_even"))
        if ser == "double":
            return f"""'{{"$numberDouble":"' || ({num})::float8::text || '"}}'""", None
        if ser == "string":
            return f"to_json(({num})::text)::text", None
        ok = None
        mods = modifiers(f.get("pg_type", ""))
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


def modifiers(pg_type: str) -> list[int]:
    m = re.search(r"\(([^)]*)\)", pg_type)
    if not m:
        return []
    try:
        return [int(x) for x in m.group(1).split(",") if x.strip()]
    except ValueError:
        return []


def read_expr(f: dict[str, Any], alias: str) -> str:
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
            j, _ = _fast_value(f, read_expr(f, alias))
            if j is None:
                j = f"to_json({read_expr(f, alias)}::text)::text"
            subs.append(f"{_key(f['name'])} || {j}")
        pieces.append(f"',' || {_key('_id')} || '{{' || " + " || ',' || ".join(subs) + " || '}'")
    for f in sorted(fields, key=lambda f: f["name"] != "_id"):
        v = read_expr(f, alias)
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


def build_plan(name: str, spec: dict[str, Any], mapping: dict[str, Any]) -> Plan:
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
            needed.update(names_in(d["expression"]))
    for col in sorted(needed):
        f = by_col[col]
        b.items.append(PyItem("input", f, _text_expr(f, read_expr(f, alias))))
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
    return plan


