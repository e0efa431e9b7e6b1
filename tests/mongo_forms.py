"""MongoDB's documented command forms, as the tests check what the pipeline sends.

Each checker raises AssertionError naming what is off, so a command that only a real MongoDB
would refuse (an unknown option, a wrong type, a keyword `$jsonSchema` does not support)
fails the tests here, whatever the server under test accepts. Sources: the MongoDB manual's
pages for each command (insert, update, create, collMod, createIndexes, renameCollection) and
"$jsonSchema: available keywords" / "Partial indexes: filter expressions".
"""

from __future__ import annotations

from typing import Any, Mapping

# Fields every command may carry that the driver adds (sessions, cluster time, read/write
# concern, API version).
DRIVER_FIELDS = {"$db", "lsid", "$clusterTime", "txnNumber", "writeConcern", "readConcern", "$readPreference",
                 "apiVersion", "apiStrict", "apiDeprecationErrors", "comment", "startTransaction", "autocommit"}

FORMS: dict[str, set[str]] = {
    "insert": {"insert", "documents", "ordered", "bypassDocumentValidation", "maxTimeMS", "let"},
    "update": {"update", "updates", "ordered", "bypassDocumentValidation", "maxTimeMS", "let"},
    "create": {"create", "capped", "size", "max", "validator", "validationLevel", "validationAction",
               "collation", "storageEngine", "indexOptionDefaults", "viewOn", "pipeline", "timeseries",
               "expireAfterSeconds", "clusteredIndex", "changeStreamPreAndPostImages", "encryptedFields"},
    "collMod": {"collMod", "validator", "validationLevel", "validationAction", "index", "viewOn", "pipeline",
                "expireAfterSeconds", "changeStreamPreAndPostImages", "dryRun", "timeseries"},
    "createIndexes": {"createIndexes", "indexes", "commitQuorum"},
    "renameCollection": {"renameCollection", "to", "dropTarget"},
}
INDEX_OPTIONS = {"key", "name", "unique", "partialFilterExpression", "sparse", "expireAfterSeconds", "hidden",
                 "collation", "storageEngine", "weights", "default_language", "language_override",
                 "textIndexVersion", "2dsphereIndexVersion", "bits", "min", "max", "wildcardProjection"}
VALIDATION_LEVELS = {"off", "strict", "moderate"}
VALIDATION_ACTIONS = {"error", "warn", "errorAndLog"}
# $jsonSchema: MongoDB supports these keywords and omits $ref, $schema, default, definitions,
# format and id.
JSONSCHEMA_KEYWORDS = {"bsonType", "enum", "type", "allOf", "anyOf", "oneOf", "not", "multipleOf", "maximum",
                       "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
                       "maxProperties", "minProperties", "required", "additionalProperties", "properties",
                       "patternProperties", "dependencies", "additionalItems", "items", "maxItems", "minItems",
                       "uniqueItems", "title", "description"}
BSON_TYPES = {"double", "string", "object", "array", "binData", "objectId", "bool", "date", "null", "regex",
              "javascript", "int", "timestamp", "long", "decimal", "minKey", "maxKey", "number"}
# Operators a partialFilterExpression may use, besides equality.
PARTIAL_OPERATORS = {"$exists", "$gt", "$gte", "$lt", "$lte", "$type", "$and", "$or", "$in", "$eq"}


def check(name: str, command: Mapping[str, Any]) -> None:
    """Assert that `command` (as sent) is in the documented form of `name`."""
    assert name in FORMS, f"no documented form recorded for {name}"
    unknown = set(command) - FORMS[name] - DRIVER_FIELDS
    assert not unknown, f"{name}: fields MongoDB does not document: {sorted(unknown)}"
    {"insert": _insert, "update": _update, "create": _create, "collMod": _coll_mod,
     "createIndexes": _create_indexes, "renameCollection": _rename}[name](command)


def _insert(cmd: Mapping) -> None:
    assert isinstance(cmd["insert"], str) and cmd["insert"]
    assert isinstance(cmd["documents"], list) and cmd["documents"], "insert needs documents"
    assert isinstance(cmd.get("ordered", True), bool)


def _update(cmd: Mapping) -> None:
    assert isinstance(cmd["update"], str)
    for stmt in cmd["updates"]:
        assert set(stmt) <= {"q", "u", "upsert", "multi", "collation", "arrayFilters", "hint", "c", "sort"}, stmt
        u = stmt["u"]
        if isinstance(u, list):  # an aggregation pipeline: only these stages are allowed in updates
            for stage in u:
                assert len(stage) == 1 and next(iter(stage)) in {"$addFields", "$set", "$project", "$unset",
                                                                 "$replaceRoot", "$replaceWith"}, stage
        else:
            keys = set(u)
            assert all(k.startswith("$") for k in keys) or not any(k.startswith("$") for k in keys), \
                "an update document is all operators or a replacement"


def _validation(cmd: Mapping) -> None:
    if "validationLevel" in cmd:
        assert cmd["validationLevel"] in VALIDATION_LEVELS, cmd["validationLevel"]
    if "validationAction" in cmd:
        assert cmd["validationAction"] in VALIDATION_ACTIONS, cmd["validationAction"]
    if "validator" in cmd:
        validator = cmd["validator"]
        assert isinstance(validator, Mapping)
        if "$jsonSchema" in validator:
            jsonschema(validator["$jsonSchema"])


def _create(cmd: Mapping) -> None:
    assert isinstance(cmd["create"], str) and cmd["create"]
    _validation(cmd)


def _coll_mod(cmd: Mapping) -> None:
    assert isinstance(cmd["collMod"], str) and cmd["collMod"]
    _validation(cmd)


def _create_indexes(cmd: Mapping) -> None:
    assert isinstance(cmd["createIndexes"], str)
    assert cmd["indexes"], "createIndexes needs at least one index"
    for index in cmd["indexes"]:
        assert set(index) <= INDEX_OPTIONS, f"index options MongoDB does not document: {sorted(set(index) - INDEX_OPTIONS)}"
        assert isinstance(index["name"], str) and index["name"]
        key = dict(index["key"])
        assert key and all(v in (1, -1) or v in ("text", "2dsphere", "hashed") for v in key.values()), key
        if "unique" in index:
            assert isinstance(index["unique"], bool)
        if "partialFilterExpression" in index:
            partial_filter(index["partialFilterExpression"])


def _rename(cmd: Mapping) -> None:
    source, target = cmd["renameCollection"], cmd["to"]
    assert "." in source and "." in target, "renameCollection takes full namespaces (db.collection)"
    assert isinstance(cmd.get("dropTarget", False), bool)


def jsonschema(node: Any, path: str = "$jsonSchema") -> None:
    assert isinstance(node, Mapping), path
    unknown = set(node) - JSONSCHEMA_KEYWORDS
    assert not unknown, f"{path}: keywords $jsonSchema does not support: {sorted(unknown)}"
    if "bsonType" in node:
        types = node["bsonType"] if isinstance(node["bsonType"], list) else [node["bsonType"]]
        assert set(types) <= BSON_TYPES, f"{path}: unknown bsonType {types}"
    for flag in ("exclusiveMinimum", "exclusiveMaximum"):
        if flag in node:
            assert isinstance(node[flag], bool), f"{path}: {flag} is a boolean in $jsonSchema (draft 4)"
    for key in ("properties", "patternProperties"):
        for name, sub in (node.get(key) or {}).items():
            jsonschema(sub, f"{path}.{name}")
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(node.get(key) or []):
            jsonschema(sub, f"{path}.{key}[{i}]")
    if isinstance(node.get("items"), Mapping):
        jsonschema(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        jsonschema(node["additionalProperties"], f"{path}.*")


def partial_filter(expr: Mapping, top: bool = True) -> None:
    for key, value in expr.items():
        if key.startswith("$"):
            assert key in ("$and", "$or") and top, f"partialFilterExpression: {key} only at the top level"
            for sub in value:
                partial_filter(sub, top=False)
        elif isinstance(value, Mapping) and any(k.startswith("$") for k in value):
            bad = set(value) - PARTIAL_OPERATORS
            assert not bad, f"partialFilterExpression: operators not allowed there: {sorted(bad)}"
            if "$exists" in value:
                assert value["$exists"] is True, "partialFilterExpression: only $exists: true"
