"""MongoDB validators and indexes, derived from the canonical schemas.

`validator_for(schema)` turns a canonical schema (draft 2020-12, JSON representation, with
`x-bsonType` hints) into MongoDB's `$jsonSchema` dialect: `bsonType` instead of `type`, no
`$ref`, no `format`, draft-4 exclusive bounds. `apply_validators` sets it with `create` for a
new collection and `collMod` for an existing one; `sync_indexes` makes a collection's indexes
exactly the expected ones (primary keys are `_id`; foreign keys, unique constraints and
plain-column indexes come from the mapping), dropping those that disappeared.

A server that refuses a validator, `collMod` or an index is an error naming the collection
and the server's message: a collection never silently goes without its validator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from pymongo.errors import CollectionInvalid, PyMongoError

from etl.core.errors import DatabaseError
from etl.adapters.mongodb import describe

log = logging.getLogger("etl.mongo_schema")

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


# ---------------------------------------------------------------------------------------------
# Indexes
# ---------------------------------------------------------------------------------------------


def expected_indexes(schema_or_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The indexes a collection should have besides `_id_`, as
    [{"name", "keys": [[field, 1], …], "unique", "partialFilterExpression"?}], from a canonical
    schema (`x-indexes`) or a mapping collection (`indexes`)."""
    specs = schema_or_spec.get("x-indexes", schema_or_spec.get("indexes")) or []
    out = []
    for spec in specs:
        item: dict[str, Any] = {"name": spec["name"], "keys": [[k, int(d)] for k, d in spec["keys"]],
                                "unique": bool(spec.get("unique"))}
        if spec.get("partial"):
            item["partialFilterExpression"] = spec["partial"]
        out.append(item)
    return out


def _current_indexes(coll) -> dict[str, dict[str, Any]]:
    found = {}
    for info in coll.list_indexes():
        info = dict(info)
        name = info["name"]
        if name == "_id_":
            continue
        keys = info.get("key", {})
        found[name] = {"name": name, "keys": [[k, int(v)] for k, v in dict(keys).items()],
                       "unique": bool(info.get("unique")),
                       **({"partialFilterExpression": dict(info["partialFilterExpression"])}
                          if info.get("partialFilterExpression") else {})}
    return found


def _same_index(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["keys"] == b["keys"] and a["unique"] == b["unique"]
            and (a.get("partialFilterExpression") or None) == (b.get("partialFilterExpression") or None))


def sync_indexes(coll, expected: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Make `coll`'s indexes the expected ones: create the missing, rebuild the changed, drop
    the ones no longer expected (except `_id_`). Returns {"created", "dropped", "kept"}."""
    expected = list(expected)
    current = _current_indexes(coll)
    wanted = {spec["name"]: spec for spec in expected}
    result: dict[str, list[str]] = {"created": [], "dropped": [], "kept": []}
    try:
        for name, spec in current.items():
            if name not in wanted or not _same_index(spec, wanted[name]):
                coll.drop_index(name)
                result["dropped"].append(name)
        for name, spec in wanted.items():
            if name in current and _same_index(current[name], spec):
                result["kept"].append(name)
                continue
            options: dict[str, Any] = {"name": name}
            if spec["unique"]:
                options["unique"] = True
            if spec.get("partialFilterExpression"):
                options["partialFilterExpression"] = spec["partialFilterExpression"]
            coll.create_index([(k, d) for k, d in spec["keys"]], **options)
            result["created"].append(name)
    except PyMongoError as exc:
        raise DatabaseError(f"indexes of {coll.name}: building them failed: {describe(exc)}") from None
    return result


# ---------------------------------------------------------------------------------------------
# Validators
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    collection: str
    action: str  # created | modified | unchanged
    indexes: dict[str, list[str]] = field(default_factory=dict)


def current_validator(db, name: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(validator, options) of collection `name` as the server reports them; (None, {}) when
    the collection has none."""
    for info in db.list_collections(filter={"name": name}):
        options = dict(info.get("options") or {})
        return options.get("validator"), options
    return None, {}


def plain(value: Any) -> Any:
    # Servers hand options back as SON/RawBSON; compare plain data.
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


VALIDATION_OPTIONS = ("validator", "validationLevel", "validationAction")


def keep_options(db, name: str, options: dict[str, Any]) -> bool:
    """After a `renameCollection`, make sure `name` still holds the validation options it was
    created with (`options`: validator, validationLevel, validationAction). MongoDB keeps them
    across a rename and this only reads; a server that dropped them gets them back through
    collMod. Returns whether it had to."""
    wanted = {k: options[k] for k in VALIDATION_OPTIONS if k in options}
    if not wanted:
        return False
    _, have = current_validator(db, name)
    if all(plain(have.get(k)) == plain(v) for k, v in wanted.items()):
        return False
    try:
        db.command({"collMod": name, **wanted})
    except PyMongoError as exc:
        raise DatabaseError(f"{name}: the validator was lost in renameCollection, and collMod to set it "
                            f"again failed: {describe(exc)}") from None
    log.info("%s: the server dropped the collection's validator in renameCollection; set again with collMod", name)
    return True


def apply_validator(db, name: str, schema: dict[str, Any], *, strict: bool) -> Outcome:
    """Create `name` with the validator of `schema`, or collMod an existing collection. A
    refusal is a DatabaseError naming the collection and the server's message."""
    validator = validator_for(schema)
    options = validation_options(strict)
    exists = name in db.list_collection_names()
    if exists:
        have, have_options = current_validator(db, name)
        if (have is not None and plain(have) == validator
                and have_options.get("validationLevel", "strict") == options["validationLevel"]
                and have_options.get("validationAction", "error") == options["validationAction"]):
            return Outcome(name, "unchanged")
        try:
            db.command({"collMod": name, "validator": validator, **options})
        except PyMongoError as exc:
            raise DatabaseError(f"{name}: collMod with its validator failed: {describe(exc)}") from None
        return Outcome(name, "modified")
    try:
        db.create_collection(name, validator=validator, **options)
    except CollectionInvalid:  # created by someone else meanwhile: modify it instead
        return apply_validator(db, name, schema, strict=strict)
    except PyMongoError as exc:
        raise DatabaseError(f"{name}: creating it with its validator failed: {describe(exc)}") from None
    return Outcome(name, "created")


def apply_validators(db, schemas: dict[str, dict[str, Any]], *, strict: bool = False,
                     names: dict[str, str] | None = None, indexes: bool = True) -> list[Outcome]:
    """Validators (and, with `indexes`, indexes) for every collection of `schemas`.

    `names` maps a collection to the name to apply it to, so a load can prepare its staging
    collections (`{"campaigns": "campaigns__staging_x"}`) before swapping them in."""
    outcomes = []
    for coll_name, schema in sorted(schemas.items()):
        target = (names or {}).get(coll_name, coll_name)
        outcome = apply_validator(db, target, schema, strict=strict)
        if indexes:
            outcome.indexes = sync_indexes(db[target], expected_indexes(schema))
        outcomes.append(outcome)
    return outcomes


def run_mongo_schema(cfg, db_name: str | None = None, out=None) -> list[Outcome]:
    from etl.stages.canonical import read_canonical
    from etl.adapters.mongodb import connect

    schemas = read_canonical()
    db_name = db_name or cfg["MONGO_DB_NAME"]
    client = connect(cfg["MONGO_URI"])
    try:
        return apply_validators(client[db_name], schemas, strict=cfg["ETL_SCHEMA_STRICT_MODE"])
    finally:
        client.close()
