"""Documents in the JSON form the canonical schemas describe, and the check of a canonical schema
on them (docs/mapping-and-rules.md): what validation and the contract tests compare.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import fastjsonschema
from bson import Binary, Decimal128, Int64, ObjectId
from jsonschema import validators


def _types_of(schema: Any, root: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The JSON types a (sub)schema accepts; None when it does not say (anything goes)."""
    if not isinstance(schema, dict):
        return None
    found: set[str] | None = None

    def add(types: set[str] | None) -> None:
        nonlocal found
        if types is None:
            return
        found = (found or set()) | types

    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and ref not in seen:
        add(_types_of(_resolve(root, ref), root, seen | {ref}))
    t = schema.get("type")
    if isinstance(t, str):
        add({t})
    elif isinstance(t, list):
        add(set(t))
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            add(_types_of(branch, root, seen))
    return found


def _resolve(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref[2:].split("/") if ref != "#" else []:
        if not isinstance(node, dict):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def _sub(schema: Any, root: dict[str, Any], key: str | int) -> Any:
    """The subschema that applies to property `key` (str) or array item `key` (int)."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        schema = {**(_resolve(root, ref) or {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(key, int):
        prefix = schema.get("prefixItems") or []
        if key < len(prefix):
            return prefix[key]
        return schema.get("items") if isinstance(schema.get("items"), dict) else None
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    for branch in (schema.get("anyOf") or []) + (schema.get("oneOf") or []):
        found = _sub(branch, root, key)
        if found is not None:
            return found
    return None


def _format_of(schema: Any, root: dict[str, Any]) -> str | None:
    if not isinstance(schema, dict):
        return None
    if schema.get("format"):
        return schema["format"]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        return _format_of(_resolve(root, ref), root)
    for branch in (schema.get("anyOf") or []) + (schema.get("oneOf") or []):
        fmt = _format_of(branch, root)
        if fmt:
            return fmt
    return None


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:  # BSON dates are UTC; a naive one came from a tz-unaware client
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def to_json_doc(doc: Any, schema: dict[str, Any] | None = None) -> Any:
    """A BSON document (as pymongo returns it) in the JSON form the canonical schemas describe.

    ObjectId → 24-hex string; datetime → ISO 8601 UTC with `Z` (`YYYY-MM-DD` where the schema
    says `format: date`); UUID and Binary subtype 4 → canonical UUID string; other Binary and
    bytes → base64; Int64 → integer; Decimal128 / Decimal → its exact decimal string, or a JSON
    number where the schema accepts a number but not a string (a canonical schema may describe
    money either way). Embedded documents and arrays are converted recursively, following the
    schema's properties and items. Anything else stays as it is.
    """
    return JsonView(schema).convert(doc)


class JsonView:
    """to_json_doc for many documents of one schema: what each schema node says about its
    properties, items, types and format is looked up once per node, not once per value."""

    def __init__(self, schema: dict[str, Any] | None):
        self.schema = schema
        self.root = schema or {}
        self._subs: dict[tuple[int, str | int], Any] = {}
        self._number: dict[int, tuple[bool, bool]] = {}
        self._dates: dict[int, bool] = {}
        self._keep: list[Any] = []  # nodes built here (a $ref merged) stay alive: ids stay unique
        # Decimals outside their node's `x-bounds` (a decimal is a string in JSON, so JSON
        # Schema cannot bound it): found while converting, one line each, for the last document.
        self.out_of_bounds: list[str] = []

    def convert(self, doc: Any) -> Any:
        self.out_of_bounds = []
        return self._convert(doc, self.schema)

    def _check_bounds(self, number: Decimal, node: Any) -> None:
        bounds = node.get("x-bounds") if isinstance(node, dict) else None
        if not bounds or not number.is_finite():
            return
        for key, ok in (("minimum", lambda b: number >= b), ("maximum", lambda b: number <= b),
                        ("exclusiveMinimum", lambda b: number > b), ("exclusiveMaximum", lambda b: number < b)):
            if key in bounds and not isinstance(bounds[key], bool) and not ok(Decimal(str(bounds[key]))):
                self.out_of_bounds.append(f"{number} is outside {key} {bounds[key]}")

    def sub(self, node: Any, key: str | int) -> Any:
        cache_key = (id(node), key)
        try:
            return self._subs[cache_key]
        except KeyError:
            found = self._subs[cache_key] = _sub(node, self.root, key)
            self._keep.append(found)
            return found

    def _decimal_as(self, node: Any) -> tuple[bool, bool]:
        """(as a number, as an integer when integral) for a decimal at `node`."""
        key = id(node)
        if key not in self._number:
            types = _types_of(node, self.root)
            number = types is not None and "string" not in types and bool(types & {"number", "integer"})
            self._number[key] = (number, number and "integer" in types)
        return self._number[key]

    def _date_only(self, node: Any) -> bool:
        key = id(node)
        if key not in self._dates:
            self._dates[key] = _format_of(node, self.root) == "date"
        return self._dates[key]

    def _convert(self, value: Any, node: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._convert(v, self.sub(node, k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._convert(v, self.sub(node, i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, Int64):
            return int(value)
        if isinstance(value, ObjectId):
            return str(value)
        if isinstance(value, (Decimal128, Decimal)):
            number = value.to_decimal() if isinstance(value, Decimal128) else value
            self._check_bounds(number, node)
            as_number, as_integer = self._decimal_as(node)
            if as_number:
                if as_integer and number.is_finite() and number == number.to_integral_value():
                    return int(number)
                return float(number)
            return str(number)
        if isinstance(value, dt.datetime):
            return value.date().isoformat() if self._date_only(node) else _iso(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, Binary):
            if value.subtype == 4 and len(value) == 16:
                return str(uuid.UUID(bytes=bytes(value)))
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode("ascii")
        return value


class SchemaCheck:
    """A canonical schema checked on BSON documents in their JSON form.

    fastjsonschema's compiled check decides whether a document passes (the canonical dialect
    uses only keywords that mean the same in draft 7, and the formats are jsonschema's own
    checkers); jsonschema (draft 2020-12) explains the documents that fail. Decimal bounds
    (`x-bounds`) are checked by the conversion itself."""

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self.view = JsonView(schema)
        cls = validators.validator_for(schema)
        self.explainer = cls(schema, format_checker=cls.FORMAT_CHECKER)
        checker = cls.FORMAT_CHECKER
        formats = {name: (lambda name: lambda value: checker.conforms(value, name))(name)
                   for name in checker.checkers}
        formats["decimal"] = lambda value: True  # the pattern beside it checks the syntax
        draft7 = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
        draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
        self._passes = fastjsonschema.compile(draft7, formats=formats)
        self._failure = fastjsonschema.JsonSchemaException

    def problem(self, doc: Any) -> str | None:
        """The first thing wrong with `doc` as `path: message`, or None."""
        converted = self.view.convert(doc)
        if self.view.out_of_bounds:
            return f"(decimal): {self.view.out_of_bounds[0]}"
        try:
            self._passes(converted)
            return None
        except self._failure as exc:
            fast = str(exc)
        error = next(iter(self.explainer.iter_errors(converted)), None)
        if error is None:
            return f"(document): {fast[:200]}"
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        return f"{where}: {error.message[:200]}"
