"""Canonical schemas: one JSON Schema (draft 2020-12) per collection, describing its documents
in their JSON form, built from the mapping alone (pure; etl.formats.canonical writes them).
"""

from __future__ import annotations

from typing import Any

from etl.core.hashing import content_hash

DRAFT = "https://json-schema.org/draft/2020-12/schema"


ID_BASE = "https://media-tool-etl.local/schemas/collections/"


# A decimal string as Decimal128 prints it: optional sign, digits, optional exponent; NaN and
# ±Infinity too, which PostgreSQL's numeric allows and the transform keeps.
DECIMAL_PATTERN = r"^(-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|NaN|-?Infinity)$"


OBJECT_ID_PATTERN = r"^[0-9a-f]{24}$"


NUMERIC_BSON = ("int", "long", "double", "decimal")


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


_STRING_KW = ("minLength", "maxLength", "pattern")


# Every type a json/jsonb value can have once stored.
JSON_BSON = ["object", "array", "string", "int", "long", "double", "decimal", "bool", "null"]


def _scalar(bson: str, serialize: str | None, pg_type: str) -> dict[str, Any]:
    """JSON Schema of one non-null value of a stored type, with its x-bsonType."""
    if bson == "decimal":
        if serialize == "double":
            return {"type": "number", "x-bsonType": "double"}
        if serialize == "string":
            return {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN, "x-bsonType": "string"}
        return {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN, "x-bsonType": "decimal"}
    if bson == "uuid":
        return {"type": "string", "format": "uuid",
                "x-bsonType": "binData" if serialize == "binary" else "string"}
    if bson == "date":
        if serialize == "string":
            fmt = "date" if pg_type.strip() == "date" else "date-time"
            return {"type": "string", "format": fmt, "x-bsonType": "string"}
        return {"type": "string", "format": "date-time", "x-bsonType": "date"}
    if bson == "int":
        return {"type": "integer", "x-bsonType": "int"}
    if bson == "long":
        # pymongo decodes int64 as a plain int and re-encodes small ones as int32, so a value
        # that went through a backup and restore may come back as int: both are the column.
        return {"type": "integer", "x-bsonType": ["long", "int"]}
    if bson == "double":
        return {"type": "number", "x-bsonType": "double"}
    if bson == "bool":
        return {"type": "boolean", "x-bsonType": "bool"}
    if bson == "binData":
        return {"type": "string", "contentEncoding": "base64", "x-bsonType": "binData"}
    if bson == "objectId":
        return {"type": "string", "pattern": OBJECT_ID_PATTERN, "x-bsonType": "objectId"}
    if bson == "object":  # json / jsonb: any JSON value
        return {"x-bsonType": list(JSON_BSON)}
    return {"type": "string", "x-bsonType": "string"}


def _constrain(schema: dict[str, Any], bson: str, enum: list[Any] | None,
               constraints: dict[str, Any]) -> dict[str, Any]:
    stored = schema.get("x-bsonType")
    if enum is not None:
        schema["enum"] = list(enum)
    bounds = {k: constraints[k] for k in _BOUNDS if k in constraints}
    if bounds:
        if schema.get("type") in ("integer", "number"):
            schema.update(bounds)
        elif stored in NUMERIC_BSON or bson == "decimal":
            # A decimal is a string in JSON: its bounds travel beside it for the validator
            # (Decimal128 compares numerically in MongoDB) and for in-process checks.
            schema["x-bounds"] = bounds
    if schema.get("type") == "string" and stored == "string":
        for key in _STRING_KW:
            if key in constraints:
                schema[key] = constraints[key]
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    stored = out.get("x-bsonType")
    if isinstance(stored, list):
        if "null" not in stored:
            out["x-bsonType"] = stored + ["null"]
    elif stored:
        out["x-bsonType"] = [stored, "null"]
    if "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = out["enum"] + [None]
    if "anyOf" in out:
        out["anyOf"] = out["anyOf"] + [{"type": "null", "x-bsonType": "null"}]
    return out


def _items_schema(items: dict[str, Any], pg_type: str, serialize: str | None) -> dict[str, Any]:
    elem_type = pg_type[:-2] if pg_type.endswith("[]") else pg_type
    elem = _value_schema(items["bson"], serialize if items["bson"] in ("decimal", "uuid", "date") else None,
                         elem_type, items.get("enum"), items.get("constraints") or {}, items.get("items"))
    # PostgreSQL array elements may be NULL, and one column may hold arrays of any
    # dimension: a nested array keeps its shape (DESIGN.md: "nested arrays kept").
    return {"anyOf": [_nullable(elem), {"type": "array", "x-bsonType": "array"}]}


def _value_schema(bson: str, serialize: str | None, pg_type: str, enum: list[Any] | None,
                  constraints: dict[str, Any], items: dict[str, Any] | None) -> dict[str, Any]:
    if bson == "array":
        return {"type": "array", "x-bsonType": "array",
                "items": _items_schema(items or {"bson": "string"}, pg_type, serialize)}
    return _constrain(_scalar(bson, serialize, pg_type), bson, enum, constraints)


def field_schema(field: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one mapped field (type, enum, constraints, null when nullable)."""
    schema = _value_schema(field["bson"], field.get("serialize"), field.get("pg_type", ""),
                           field.get("enum"), field.get("constraints") or {}, field.get("items"))
    if field.get("round"):
        schema["x-round"] = field["round"]
    schema["x-pgType"] = field.get("pg_type", "")
    if field.get("policy") == "text":
        schema["description"] = f"{field.get('pg_type')} stored as its PostgreSQL text output"
    if field.get("nullable", True):
        schema = _nullable(schema)
    return schema


def _id_schema(spec: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    kind = spec["kind"]
    if kind == "single":
        field = next(f for f in fields if f["name"] == "_id")
        return field_schema({**field, "nullable": False})
    if kind == "composite":
        by_col = {f["column"]: f for f in fields}
        props = {by_col[c]["name"]: field_schema({**by_col[c], "nullable": False}) for c in spec["columns"]}
        return {"type": "object", "x-bsonType": "object", "properties": props,
                "required": list(props), "additionalProperties": False}
    return _scalar("objectId", None, "")


def collection_schema(name: str, spec: dict[str, Any],
                      collections: dict[str, dict[str, Any]] | None = None,
                      _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The canonical schema of collection `name` from its mapping `spec`. `collections` (the
    whole mapping) resolves embedded children, which are inlined: MongoDB's dialect has no
    $ref, and one self-contained file per collection keeps the generators simple."""
    fields = spec["fields"]
    props: dict[str, Any] = {"_id": _id_schema(spec["id"], fields)}
    required = ["_id"]
    for field in fields:
        if field["name"] == "_id":
            continue
        props[field["name"]] = field_schema(field)
        required.append(field["name"])
        if field.get("archive_as"):
            # Present only where a value failed its cast: optional, and of any type.
            props[field["archive_as"]] = {"description": f"previous value of {field['name']} that "
                                                         f"did not cast to {field['pg_type']}"}
    for calc in spec.get("calculated") or []:
        schema = _value_schema(calc["bson"], None, "", None, {}, None)
        if calc.get("round"):
            schema["x-round"] = calc["round"]
        schema["x-expression"] = calc["expression"]
        props[calc["name"]] = _nullable(schema)
        required.append(calc["name"])
    for embed in spec.get("embed") or []:
        child = (collections or {}).get(embed["collection"])
        if child is None or embed["collection"] in _seen:
            continue
        child_schema = collection_schema(embed["collection"], child, collections, _seen + (name,))
        for key in ("$schema", "$id", "x-indexes", "x-id", "x-refresh"):
            child_schema.pop(key, None)
        arr: dict[str, Any] = {"type": "array", "x-bsonType": "array", "items": child_schema,
                               "x-embed": {k: embed[k] for k in ("collection", "foreign_key", "sort", "limit")}}
        if embed.get("limit"):
            arr["maxItems"] = embed["limit"]
        props[embed["as"]] = arr
        required.append(embed["as"])
    for archived in spec.get("archived") or []:
        props[archived["as"]] = {"description": f"archived value of the removed column {archived['column']}"}

    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": f"{ID_BASE}{name}.schema.json",
        "title": name,
        "description": f"A document of the MongoDB collection {name}, from the PostgreSQL table "
                       f"{spec['table']}.",
        "type": "object",
        "x-bsonType": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
        "x-collection": name,
        "x-table": spec["table"],
        "x-id": spec["id"],
        "x-refresh": spec["refresh"],
        "x-indexes": spec.get("indexes") or [],
    }
    if spec.get("checks_not_expressed"):
        schema["x-checks-not-expressed"] = spec["checks_not_expressed"]
    return schema


def canonical_schemas(mapping: dict[str, Any]) -> dict[str, dict[str, Any]]:
    colls = mapping["collections"]
    return {name: collection_schema(name, spec, colls) for name, spec in sorted(colls.items())}


def canonical_hash(schemas: dict[str, dict[str, Any]]) -> str:
    return content_hash(schemas)
