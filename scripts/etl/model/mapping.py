"""The mapping: how each accepted table becomes a collection of documents.

`build_mapping(snapshot, rules, decisions)` is the one place that turns PostgreSQL types into
document types (DESIGN.md's default table, then the rules' overrides, then the recorded
decisions). The transform executes the result and the canonical schemas describe it; neither
re-derives a type. The format is "Mapping" in docs/architecture.md; docs/mapping-and-rules.md
explains every key and policy.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from etl.core.errors import RulesError
from etl.core.hashing import content_hash
from etl.model.expr import ExpressionError, parse

FORMAT_VERSION = 1

ROUND_MODES = ("half_even", "half_up", "half_down", "up", "down", "ceiling", "floor")

# PostgreSQL type name (format_type without modifiers) -> (bson, read_as). `read_as` is the SQL
# type the transform casts the column to in its SELECT; None reads the column as it is.
_BASE_TYPES: dict[str, tuple[str, str | None]] = {
    "smallint": ("int", None),
    "integer": ("int", None),
    "bigint": ("long", None),
    "numeric": ("decimal", None),
    "decimal": ("decimal", None),
    # money's text output carries a currency symbol and the locale's separators; as numeric it
    # is an exact decimal with the column's fixed scale.
    "money": ("decimal", "numeric"),
    "real": ("double", None),
    "double precision": ("double", None),
    "text": ("string", None),
    "character varying": ("string", None),
    "varchar": ("string", None),
    "character": ("string", None),
    "char": ("string", None),
    "bpchar": ("string", None),
    '"char"': ("string", None),
    "name": ("string", None),
    "citext": ("string", None),
    "inet": ("string", "text"),
    "cidr": ("string", "text"),
    "macaddr": ("string", "text"),
    "macaddr8": ("string", "text"),
    "boolean": ("bool", None),
    "date": ("date", None),
    "timestamp without time zone": ("date", None),
    "timestamp with time zone": ("date", None),
    "timestamp": ("date", None),
    "timestamptz": ("date", None),
    # ISO 8601 text; PostgreSQL's own output for time is already ISO, interval is cast with
    # IntervalStyle iso_8601 by the transform.
    "time without time zone": ("string", "text"),
    "time with time zone": ("string", "text"),
    "time": ("string", "text"),
    "timetz": ("string", "text"),
    "interval": ("string", "text"),
    "uuid": ("uuid", None),
    "json": ("object", None),
    "jsonb": ("object", None),
    "bytea": ("binData", None),
}

# Types whose value formats are ISO 8601 strings in the document.
_ISO_TEXT = {"time without time zone", "time with time zone", "time", "timetz", "interval"}

_MODIFIERS = re.compile(r"\s*\(([^)]*)\)")


def type_name(pg_type: str) -> str:
    """`numeric(14,2)` -> `numeric`, `character varying(255)` -> `character varying`,
    `timestamp(3) with time zone` -> `timestamp with time zone`, `text[]` -> `text[]`."""
    name = _MODIFIERS.sub("", pg_type).strip()
    return re.sub(r"\s+", " ", name)


def type_modifiers(pg_type: str) -> list[int]:
    found = _MODIFIERS.search(pg_type)
    if not found:
        return []
    try:
        return [int(x) for x in found.group(1).split(",") if x.strip()]
    except ValueError:
        return []


def collection_name(table: str) -> str:
    """`public.campaigns` -> `campaigns`; other schemas stay qualified: `sales.orders`."""
    schema, _, name = table.partition(".")
    return name if schema == "public" and name else table


def field_name(column: str, naming: str = "snake_case") -> str:
    if naming == "camelCase":
        head, *rest = column.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest if part)
    return column


# ---------------------------------------------------------------------------------------------
# CHECK constraints that a document schema can express
# ---------------------------------------------------------------------------------------------

_CMP = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum", "<": "exclusiveMaximum"}
_FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}
_NUM = r"\(?'?(-?\d+(?:\.\d+)?)'?\)?(?:::[\w ]+)?"
_IDENT = r'\(?("(?:[^"]|"")+"|\w+)\)?(?:::[\w ]+)?'
_CMP_RE = re.compile(rf"^{_IDENT}\s*(>=|<=|>|<)\s*{_NUM}$")
_CMP_REV_RE = re.compile(rf"^{_NUM}\s*(>=|<=|>|<)\s*{_IDENT}$")
_LEN_RE = re.compile(rf"^(?:char_length|length)\({_IDENT}\)\s*(>=|<=|>|<)\s*{_NUM}$")
_ANY_RE = re.compile(rf"^{_IDENT}\s*=\s*ANY\s*\(+ARRAY\[(.*)\](?:::[\w \[\]]+)?\)+$")
_REGEX_RE = re.compile(rf"^{_IDENT}\s*~\s*'((?:[^']|'')*)'(?:::text)?$")
_LITERAL_RE = re.compile(r"'((?:[^']|'')*)'(?:::[\w ]+)?")


# POSIX bracket classes PostgreSQL's regexes allow; JSON Schema's (ECMA 262) and Python's do not.
_POSIX_CLASSES = {
    "alpha": "A-Za-z", "digit": "0-9", "alnum": "A-Za-z0-9", "upper": "A-Z", "lower": "a-z",
    "space": r"\s", "blank": r" \t", "punct": r"!-/:-@\[-`{-~", "xdigit": "0-9A-Fa-f", "word": r"\w",
}
# PostgreSQL-only escapes (word boundaries \m \M \y \Y, \A \Z are spelled differently) and
# embedded options: a pattern using them is left unexpressed rather than translated wrongly.
_PG_ONLY = re.compile(r"\\[mMyYZ]|^\*\*\*|\(\?[bceinpqstwx]+\)")


def pg_regex_to_ecma(pattern: str) -> str | None:
    """A PostgreSQL `~` pattern as a JSON Schema / MongoDB pattern, or None if it cannot be
    carried over faithfully. Both search (unanchored), so only the syntax needs translating."""
    if _PG_ONLY.search(pattern):
        return None
    out = re.sub(r"\[:([a-z]+):\]", lambda m: _POSIX_CLASSES.get(m.group(1), m.group(0)), pattern)
    if "[:" in out:
        return None
    try:
        re.compile(out)
    except re.error:
        return None
    return out


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def _split_and(text: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    in_quote = False
    while i < len(text):
        ch = text[i]
        if ch == "'":
            in_quote = not in_quote
        elif not in_quote:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif depth == 0 and text[i:i + 5].upper() == " AND ":
                parts.append(text[start:i])
                start = i + 5
                i += 5
                continue
        i += 1
    parts.append(text[start:])
    return [_strip_parens(p) for p in parts]


def _ident(raw: str) -> str:
    return raw[1:-1].replace('""', '"') if raw.startswith('"') else raw


def _number(raw: str) -> int | float:
    return float(raw) if "." in raw else int(raw)


def parse_check(expression: str) -> tuple[dict[str, dict[str, Any]], bool]:
    """Split a CHECK into per-column JSON Schema keywords.

    Returns ({column or "VALUE": {keyword: value}}, fully_expressed). Comparisons with a
    constant, `col = ANY (ARRAY[...])`, `col ~ 'regex'` and `char_length(col)` bounds are
    expressible; anything else (two columns, functions, OR) is reported as not expressed."""
    body = expression.strip()
    if body.upper().startswith("CHECK"):
        body = body[5:].strip()
    body = re.sub(r"\s+NOT VALID$", "", body)
    found: dict[str, dict[str, Any]] = {}
    complete = True
    for part in _split_and(_strip_parens(body)):
        if m := _CMP_RE.match(part):
            col, op, num = _ident(m.group(1)), m.group(2), _number(m.group(3))
            found.setdefault(col, {})[_CMP[op]] = num
        elif m := _CMP_REV_RE.match(part):
            num, op, col = _number(m.group(1)), m.group(2), _ident(m.group(3))
            found.setdefault(col, {})[_CMP[_FLIP[op]]] = num
        elif m := _LEN_RE.match(part):
            col, op, num = _ident(m.group(1)), m.group(2), int(_number(m.group(3)))
            key = {">=": ("minLength", 0), ">": ("minLength", 1),
                   "<=": ("maxLength", 0), "<": ("maxLength", -1)}[op]
            found.setdefault(col, {})[key[0]] = num + key[1]
        elif m := _ANY_RE.match(part):
            values = [v.replace("''", "'") for v in _LITERAL_RE.findall(m.group(2))]
            if values:
                found.setdefault(_ident(m.group(1)), {})["enum"] = values
            else:
                complete = False
        elif (m := _REGEX_RE.match(part)) and (pattern := pg_regex_to_ecma(m.group(2).replace("''", "'"))):
            found.setdefault(_ident(m.group(1)), {})["pattern"] = pattern
        else:
            complete = False
    return found, complete


# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


class _Types:
    """Resolves a snapshot column's type to a field's type spec (no name, no rules)."""

    def __init__(self, snapshot: dict[str, Any]):
        self.enums: dict[str, list[str]] = snapshot.get("enums") or {}
        self.domains: dict[str, dict[str, Any]] = snapshot.get("domains") or {}

    def _enum_values(self, pg_type: str) -> list[str] | None:
        name = type_name(pg_type).replace('"', "")
        if name in self.enums:
            return list(self.enums[name])
        if "." not in name and f"public.{name}" in self.enums:
            return list(self.enums[f"public.{name}"])
        return None

    def _domain(self, pg_type: str) -> dict[str, Any] | None:
        name = type_name(pg_type).replace('"', "")
        return self.domains.get(name) or (self.domains.get(f"public.{name}") if "." not in name else None)

    def spec(self, pg_type: str, kind: str | None = None, base_type: str | None = None,
             element_type: str | None = None, depth: int = 0) -> dict[str, Any]:
        """{bson, read_as, policy, enum, items, constraints} for one PostgreSQL type."""
        if depth > 8:  # domains over domains over arrays…: a cycle would be a snapshot bug
            return self._text(pg_type)
        if kind is None:
            kind = self._guess_kind(pg_type)
        if kind == "array" or (kind is None and pg_type.endswith("[]")):
            elem = element_type or re.sub(r"(\[\])+$", "", pg_type)
            items = self.spec(elem, None, None, None, depth + 1)
            return {"bson": "array",
                    "read_as": None if items["read_as"] is None else items["read_as"] + "[]",
                    "policy": "default", "enum": None, "items": _item(items),
                    "constraints": {}}
        if kind == "enum":
            values = self._enum_values(pg_type)
            return {"bson": "string", "read_as": "text", "policy": "default",
                    "enum": values, "items": None, "constraints": {}}
        if kind == "domain":
            domain = self._domain(pg_type) or {}
            base = base_type or domain.get("base_type")
            if not base:
                return self._text(pg_type)
            inner = self.spec(base, None, None, None, depth + 1)
            constraints = dict(inner["constraints"])
            for check in domain.get("checks") or []:
                per_col, _ = parse_check(check)
                constraints.update(per_col.get("VALUE", {}))
            if "enum" in constraints and inner["enum"] is None:
                inner["enum"] = constraints.pop("enum")
            inner["constraints"] = constraints
            return inner
        if kind in ("composite", "range"):
            return self._text(pg_type)
        name = type_name(pg_type)
        if name in _BASE_TYPES:
            bson, read_as = _BASE_TYPES[name]
            constraints: dict[str, Any] = {}
            mods = type_modifiers(pg_type)
            if name in ("character varying", "varchar", "character", "char", "bpchar") and mods:
                constraints["maxLength"] = mods[0]
            return {"bson": bson, "read_as": read_as, "policy": "default", "enum": None,
                    "items": None, "constraints": constraints}
        return self._text(pg_type)

    def _guess_kind(self, pg_type: str) -> str | None:
        if pg_type.endswith("[]"):
            return "array"
        if self._enum_values(pg_type) is not None:
            return "enum"
        if self._domain(pg_type) is not None:
            return "domain"
        return None

    @staticmethod
    def _text(pg_type: str) -> dict[str, Any]:
        # The stated policy for everything DESIGN.md's table does not list (geometric types,
        # bit strings, tsvector, xml, ranges, composites, extension types): the type's own
        # text output, stored as a string. Never a crash, never a silent drop.
        return {"bson": "string", "read_as": "text", "policy": "text", "enum": None,
                "items": None, "constraints": {}}


def _item(spec: dict[str, Any]) -> dict[str, Any]:
    return {"bson": spec["bson"], "policy": spec["policy"], "enum": spec["enum"],
            "items": spec["items"], "constraints": spec["constraints"]}


def _default_serialize(bson: str, serialization: dict[str, str]) -> str | None:
    if bson == "decimal":
        return serialization.get("decimal", "decimal128")
    if bson == "uuid":
        return serialization.get("uuid", "string")
    if bson == "date":
        return serialization.get("date", "datetime")
    return None


def stored_bson(field: dict[str, Any]) -> str:
    """The bsonType a value of `field` has in MongoDB once `serialize` is applied."""
    bson, ser = field["bson"], field.get("serialize")
    if bson == "decimal":
        return {"double": "double", "string": "string"}.get(ser or "", "decimal")
    if bson == "uuid":
        return "binData" if ser == "binary" else "string"
    if bson == "date":
        return "string" if ser == "string" else "date"
    return bson


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


def _decision_entries(decisions: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Decision entries whatever the file's outer shape: {"decisions": {id: entry}},
    {"decisions": [entry]} or {id: entry}."""
    if not decisions:
        return []
    body = decisions.get("decisions", decisions) if isinstance(decisions, dict) else decisions
    if isinstance(body, dict):
        out = []
        for key, entry in body.items():
            if isinstance(entry, dict):
                out.append({"id": key, **entry})
        return out
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict)]
    return []


def _decision_value(entry: dict[str, Any], key: str) -> Any:
    if key in entry:
        return entry[key]
    inner = entry.get("decision")
    return inner.get(key) if isinstance(inner, dict) else None


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------


def _rules_for(rules: dict[str, Any], collection: str, table: str) -> dict[str, Any]:
    per = (rules or {}).get("collections") or {}
    return per.get(collection) or per.get(table) or {}


def build_mapping(snapshot: dict[str, Any], rules: dict[str, Any] | None = None,
                  decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The mapping for every table of `snapshot` (views are not loaded), with `rules` (already
    validated by etl.rules.load_rules) and the recorded `decisions` applied.

    Raises RulesError when a rule names a collection, column or field that does not exist."""
    rules = rules or {}
    defaults = rules.get("defaults") or {}
    naming = defaults.get("naming", "snake_case")
    serialization = defaults.get("serialize") or {}
    default_mode = defaults.get("round_mode", "half_even")
    types = _Types(snapshot)
    tables: dict[str, Any] = snapshot.get("tables") or {}

    by_collection = {collection_name(t): t for t in tables}
    for name in (rules.get("collections") or {}):
        if name not in by_collection and name not in tables:
            raise RulesError(f"rules: collection {name!r} has no table in the accepted schema",
                             hint="remove or rename the rule")

    entries = _decision_entries(decisions)
    collections: dict[str, Any] = {}
    for qualified in sorted(tables):
        table = tables[qualified]
        coll = collection_name(qualified)
        collections[coll] = _build_collection(qualified, table, types, _rules_for(rules, coll, qualified),
                                              naming, serialization, default_mode, entries)

    for coll, spec in collections.items():
        for embed in spec["embed"]:
            child = embed["collection"]
            if child not in collections:
                raise RulesError(f"rules: {coll}.embed names {child!r}, which is not a collection")
            child_fields = {f["column"] for f in collections[child]["fields"]}
            child_fields |= set(collections[child]["id"]["columns"])
            for col in embed["foreign_key"]:
                if col not in child_fields:
                    raise RulesError(f"rules: {coll}.embed.{child}: foreign key column {col!r} "
                                     f"does not exist in {collections[child]['table']}")
            names = {f["name"] for f in collections[child]["fields"]} | {"_id"}
            for key, _ in embed["sort"]:
                if key not in names:
                    raise RulesError(f"rules: {coll}.embed.{child}: sort field {key!r} does not exist")

    return {"format_version": FORMAT_VERSION, "hash": content_hash(collections),
            "collections": collections}


def _build_collection(qualified: str, table: dict[str, Any], types: _Types, rule: dict[str, Any],
                      naming: str, serialization: dict[str, str], default_mode: str,
                      decisions: list[dict[str, Any]]) -> dict[str, Any]:
    columns = sorted(table.get("columns") or [], key=lambda c: c.get("position", 0))
    by_column = {c["name"]: c for c in columns}
    pk = (table.get("primary_key") or {}).get("columns") or []
    if len(pk) == 1:
        id_spec = {"kind": "single", "columns": list(pk)}
    elif pk:
        id_spec = {"kind": "composite", "columns": list(pk)}
    else:
        id_spec = {"kind": "none", "columns": []}

    # Single-column CHECKs become field constraints; the rest are listed as not expressed.
    check_constraints: dict[str, dict[str, Any]] = {}
    unexpressed: list[str] = []
    for check in table.get("checks") or []:
        per_col, complete = parse_check(check.get("expression", ""))
        for col, kw in per_col.items():
            if col in by_column:
                check_constraints.setdefault(col, {}).update(kw)
            else:
                complete = False
        if not complete:
            unexpressed.append(check.get("name") or check.get("expression", ""))

    field_rules: dict[str, Any] = rule.get("fields") or {}
    for col in field_rules:
        if col not in by_column:
            raise RulesError(f"rules: {collection_name(qualified)}.fields.{col}: column {col!r} "
                             f"does not exist in {qualified}", hint="fix schemas/rules.yaml")

    fields: list[dict[str, Any]] = []
    for column in columns:
        col = column["name"]
        spec = types.spec(column.get("type", ""), column.get("type_kind"), column.get("base_type"),
                          column.get("element_type"))
        fr = field_rules.get(col) or {}
        if len(pk) == 1 and col == pk[0]:
            name = "_id"
        else:
            name = fr.get("name") or field_name(col, naming)
        constraints = {**spec["constraints"], **check_constraints.get(col, {})}
        enum = spec["enum"]
        if "enum" in constraints:
            allowed = constraints.pop("enum")
            enum = allowed if enum is None else [v for v in enum if v in allowed]
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern",
                    "minLength", "maxLength"):
            if key in fr:
                constraints[key] = fr[key]
        if "enum" in fr:
            enum = list(fr["enum"])
        field: dict[str, Any] = {
            "name": name, "column": col, "pg_type": column.get("type", ""), "bson": spec["bson"],
            "nullable": bool(column.get("nullable", True)),
            "serialize": fr.get("serialize") or _default_serialize(spec["bson"], serialization),
            "round": None, "enum": enum, "items": spec["items"],
            "cast": None, "default": None, "archive_as": None,
            "read_as": spec["read_as"], "policy": spec["policy"], "constraints": constraints,
        }
        if "round" in fr:
            if spec["bson"] not in ("decimal", "double") and not (
                    spec["bson"] == "array" and (spec["items"] or {}).get("bson") in ("decimal", "double")):
                raise RulesError(f"rules: {collection_name(qualified)}.fields.{col}: round applies to "
                                 f"numeric columns, {col} is {column.get('type')}")
            field["round"] = _round(fr["round"], default_mode)
        if field["serialize"] is not None and spec["bson"] in ("decimal", "uuid", "date"):
            allowed = {"decimal": ("decimal128", "double", "string"), "uuid": ("string", "binary"),
                       "date": ("datetime", "string")}[spec["bson"]]
            if field["serialize"] not in allowed:
                raise RulesError(f"rules: {collection_name(qualified)}.fields.{col}: serialize "
                                 f"{field['serialize']!r} is not one of {', '.join(allowed)} for {spec['bson']}")
        elif "serialize" in fr:
            raise RulesError(f"rules: {collection_name(qualified)}.fields.{col}: serialize applies to "
                             f"decimal, uuid and date columns, {col} is {column.get('type')}")
        _apply_decisions(field, qualified, decisions)
        fields.append(field)

    names = [f["name"] for f in fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RulesError(f"rules: {collection_name(qualified)}: two fields would be named {dupes[0]!r}")

    calculated = []
    for name, calc in sorted((rule.get("calculated") or {}).items()):
        calculated.append(_calculated(collection_name(qualified), name, calc, by_column, default_mode,
                                      types))
        if name in names:
            raise RulesError(f"rules: {collection_name(qualified)}.calculated.{name}: a field of "
                             f"that name already exists")

    embed = []
    for item in rule.get("embed") or []:
        embed.append({"collection": item["collection"], "as": item.get("as") or item["collection"],
                      "foreign_key": list(item["foreign_key"]),
                      "sort": [[k, int(d)] for k, d in item.get("sort") or []],
                      "limit": item.get("limit"), "keep_collection": item.get("keep_collection", True)})

    archived = _archived(qualified, decisions, naming)
    name_of = {f["column"]: f["name"] for f in fields}
    return {
        "table": qualified,
        "kind": table.get("kind", "table"),
        "id": id_spec,
        "refresh": "incremental-capable" if pk else "full",
        "fields": fields,
        "calculated": calculated,
        "embed": embed,
        "indexes": _indexes(table, pk, name_of, {f["column"]: f for f in fields}),
        "archived": archived,
        "checks_not_expressed": unexpressed,
    }


def _round(spec: Any, default_mode: str) -> dict[str, Any]:
    if isinstance(spec, int):
        return {"places": spec, "mode": default_mode}
    return {"places": int(spec["places"]), "mode": spec.get("mode", default_mode)}


def _calculated(coll: str, name: str, calc: dict[str, Any], by_column: dict[str, Any],
                default_mode: str, types: _Types) -> dict[str, Any]:
    expression = calc["expression"]
    try:
        parsed = parse(expression)
    except ExpressionError as exc:
        raise RulesError(f"rules: {coll}.calculated.{name}: {exc}") from None
    used = set(parsed.names)
    missing = sorted(n for n in used if n not in by_column)
    if missing:
        raise RulesError(f"rules: {coll}.calculated.{name}: column {missing[0]!r} does not exist "
                         f"in the table", hint="fix the expression in schemas/rules.yaml")
    for col in sorted(parsed.arithmetic_names):
        column = by_column[col]
        bson = types.spec(column.get("type", ""), column.get("type_kind"), column.get("base_type"),
                          column.get("element_type"))["bson"]
        if bson not in ("int", "long", "decimal", "double"):
            raise RulesError(f"rules: {coll}.calculated.{name}: {col!r} is used in arithmetic but "
                             f"is {column.get('type')}", hint="a schema change broke this rule; "
                             "fix the expression in schemas/rules.yaml")
    return {"name": name, "expression": expression, "bson": calc.get("bson", "decimal"),
            "columns": sorted(used), "round": _round(calc["round"], default_mode) if "round" in calc else None,
            "on_error": calc.get("on_error", "null"), "nullable": True}


def _apply_decisions(field: dict[str, Any], table: str, decisions: list[dict[str, Any]]) -> None:
    for entry in decisions:
        if entry.get("table") != table or entry.get("column") != field["column"]:
            continue
        kind = entry.get("kind")
        if kind == "column_type_changed":
            on_failure = _decision_value(entry, "on_failure") or "fail"
            field["cast"] = {"strategy": _decision_value(entry, "strategy") or "cast",
                             "on_failure": on_failure}
            if on_failure == "keep_old":
                field["archive_as"] = f"{field['name']}__old"
        elif kind == "column_added":
            default = _decision_value(entry, "default")
            if default is not None:
                field["default"] = default
            backfill = _decision_value(entry, "backfill")
            if backfill is not None:
                field["default"] = {"expression": backfill}


def archived_fields(collection: str, mapping: dict[str, Any]) -> list[tuple[str, str]]:
    """(field the removed column had, `<field>__archived`) for each archived column of
    `collection`: values that live only in MongoDB (moved by the decision's migration), which
    loads carry over from the documents already loaded (from either name: a full load may come
    before the migration has run) and validation leaves out of its comparison. The transform
    writes them into its export, where load and validate read them."""
    spec = (mapping.get("collections") or {}).get(collection) or {}
    return [(a.get("field") or a["column"], a["as"]) for a in spec.get("archived") or [] if a.get("as")]


def _archived(table: str, decisions: list[dict[str, Any]], naming: str = "snake_case") -> list[dict[str, Any]]:
    """Removed columns whose decision was `archive`: their last values stay in the documents
    under `<field>__archived` (the migration moves them; loads keep them)."""
    out = []
    for entry in decisions:
        if entry.get("table") == table and entry.get("kind") == "column_removed" \
                and _decision_value(entry, "action") == "archive" and entry.get("column"):
            name = field_name(entry["column"], naming)
            out.append({"column": entry["column"], "field": name, "as": f"{name}__archived"})
    return sorted(out, key=lambda a: a["column"])


def _index_name(keys: Iterable[tuple[str, int]]) -> str:
    # pymongo's own naming, so an index created elsewhere with the same keys matches by name.
    return "_".join(f"{k}_{d}" for k, d in keys)


def _indexes(table: dict[str, Any], pk: list[str], name_of: dict[str, str],
             fields: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found: dict[tuple, dict[str, Any]] = {}

    def add(columns: list[str], unique: bool, source: str) -> None:
        if not columns or any(c not in name_of for c in columns):
            return  # expression indexes and columns not in the document have no MongoDB twin
        if list(columns) == list(pk) and len(pk) >= 1:
            return  # _id is indexed (and unique) by MongoDB itself
        keys = [(name_of[c], 1) for c in columns]
        ident = tuple(keys)
        spec = found.get(ident)
        if spec is not None:
            spec["unique"] = spec["unique"] or unique
            return
        spec = {"keys": [list(k) for k in keys], "unique": unique, "name": _index_name(keys),
                "source": source}
        found[ident] = spec

    for fk in table.get("foreign_keys") or []:
        add(fk.get("columns") or [], False, "foreign_key")
    for uq in table.get("unique") or []:
        add(uq.get("columns") or [], True, "unique")
    for ix in table.get("indexes") or []:
        if ix.get("predicate") or (ix.get("method") not in (None, "btree")):
            continue  # partial and non-btree indexes have no faithful MongoDB equivalent
        add(ix.get("columns") or [], bool(ix.get("unique")), "unique" if ix.get("unique") else "index")

    out = []
    for spec in sorted(found.values(), key=lambda s: s["name"]):
        if spec["unique"]:
            # PostgreSQL lets many rows hold NULL in a unique column; MongoDB would count every
            # null as the same value. Index only the documents where the value is present.
            nullable = [name_of_c for name_of_c, _ in spec["keys"]
                        if any(f["name"] == name_of_c and f["nullable"] for f in fields.values())]
            if nullable:
                spec["partial"] = {n: {"$type": stored_bson(next(f for f in fields.values() if f["name"] == n))}
                                   for n in nullable}
            if spec["source"] == "foreign_key":
                spec["source"] = "unique"
        out.append(spec)
    return out


def mapping_hash(mapping: dict[str, Any]) -> str:
    return content_hash(mapping["collections"])
