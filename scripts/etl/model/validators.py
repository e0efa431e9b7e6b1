"""MongoDB `$jsonSchema` validators from canonical schemas.

`validator_for(schema)` turns a canonical schema (draft 2020-12, JSON representation, with
`x-bsonType` hints) into MongoDB's dialect: `bsonType` instead of `type`, no `$ref`, no
`format`, draft-4 exclusive bounds. `validation_options(strict)` is the level and action.
"""

from __future__ import annotations

from typing import Any

# Keywords MongoDB's $jsonSchema accepts besides bsonType/properties/items/required/….
_STRING_KW = ("minLength", "maxLength", "pattern")


_ARRAY_KW = ("minItems", "maxItems", "uniqueItems")


_NUMERIC = {"int", "long", "double", "decimal", "number"}


def _types(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _bounds(out: dict[str, Any], source: dict[str, Any]) -> None:
    # Draft 2020-12 spells an exclusive bound as a number; draft 4 (MongoDB) as a flag beside
    # minimum/maximum.
    if "minimum" in source:
        out["minimum"] = source["minimum"]
    if "maximum" in source:
        out["maximum"] = source["maximum"]
    if "exclusiveMinimum" in source:
        value = source["exclusiveMinimum"]
        if isinstance(value, bool):
            out["exclusiveMinimum"] = value
        elif "minimum" not in out or value >= out["minimum"]:
            out["minimum"], out["exclusiveMinimum"] = value, True
    if "exclusiveMaximum" in source:
        value = source["exclusiveMaximum"]
        if isinstance(value, bool):
            out["exclusiveMaximum"] = value
        elif "maximum" not in out or value <= out["maximum"]:
            out["maximum"], out["exclusiveMaximum"] = value, True


def to_bson_schema(node: dict[str, Any]) -> dict[str, Any]:
    """One canonical schema node in MongoDB's dialect."""
    out: dict[str, Any] = {}
    for key in ("title", "description"):
        if isinstance(node.get(key), str):
            out[key] = node[key]
    types = _types(node.get("x-bsonType"))
    if types:
        out["bsonType"] = types[0] if len(types) == 1 else types
    if "anyOf" in node:
        out["anyOf"] = [to_bson_schema(n) for n in node["anyOf"]]
    if "enum" in node and (not types or set(types) <= {"string", "null", "bool", "int", "long", "double"}):
        out["enum"] = list(node["enum"])
    if "string" in types:
        for key in _STRING_KW:
            if key in node:
                out[key] = node[key]
    if set(types) & _NUMERIC:
        if node.get("type") in ("integer", "number") or (isinstance(node.get("type"), list)
                                                        and set(node["type"]) & {"integer", "number"}):
            _bounds(out, node)
        if "x-bounds" in node:
            _bounds(out, node["x-bounds"])
    if "array" in types or "items" in node:
        for key in _ARRAY_KW:
            if key in node:
                out[key] = node[key]
        if isinstance(node.get("items"), dict):
            out["items"] = to_bson_schema(node["items"])
    if "object" in types and "properties" in node:
        out["properties"] = {k: to_bson_schema(v) for k, v in node["properties"].items()}
        if node.get("required"):
            out["required"] = list(node["required"])
        if isinstance(node.get("additionalProperties"), bool):
            out["additionalProperties"] = node["additionalProperties"]
    return out


def validator_for(schema: dict[str, Any]) -> dict[str, Any]:
    """The `{"$jsonSchema": …}` validator of a canonical collection schema."""
    return {"$jsonSchema": to_bson_schema(schema)}


def validation_options(strict: bool) -> dict[str, str]:
    """strict/error rejects bad documents; moderate/warn logs them and leaves existing
    documents that already break the rule alone (the gentler default for a schema in flux)."""
    if strict:
        return {"validationLevel": "strict", "validationAction": "error"}
    return {"validationLevel": "moderate", "validationAction": "warn"}


def plain(value: Any) -> Any:
    # Servers hand options back as SON/RawBSON; compare plain data.
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


VALIDATION_OPTIONS = ("validator", "validationLevel", "validationAction")
