"""MongoDB's `$jsonSchema`, evaluated in-process.

MongoDB's dialect is JSON Schema draft 4 plus a `bsonType` keyword (and minus $ref, format,
default…). `jsonschema`'s Draft4Validator extended with `bsonType`, and with numeric bounds
that understand Decimal128 and Int64, answers "would the server accept this document?"
without a server: a check for stand-ins that cannot enforce validators, for the tests, and for
documents before they are loaded.
"""

from __future__ import annotations

import datetime
import re
import uuid
from decimal import Decimal
from typing import Any, Iterator, Mapping

from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from jsonschema import Draft4Validator, ValidationError, validators

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def bson_type_of(value: Any) -> str:
    """The BSON type alias a Python value is stored as by pymongo (uuidRepresentation standard)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Int64):
        return "long"
    if isinstance(value, int):
        return "int" if INT32_MIN <= value <= INT32_MAX else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal128):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, (bytes, Binary, uuid.UUID)):
        return "binData"
    if isinstance(value, ObjectId):
        return "objectId"
    if isinstance(value, datetime.datetime):
        return "date"
    if isinstance(value, (Regex, re.Pattern)):
        return "regex"
    if isinstance(value, Timestamp):
        return "timestamp"
    if isinstance(value, Code):
        return "javascript"
    if isinstance(value, MinKey):
        return "minKey"
    if isinstance(value, MaxKey):
        return "maxKey"
    return type(value).__name__


_NUMBER = {"int", "long", "double", "decimal"}


def _matches(actual: str, wanted: str) -> bool:
    return actual == wanted or (wanted == "number" and actual in _NUMBER)


def _bson_type(validator, wanted, instance, schema) -> Iterator[ValidationError]:
    types = [wanted] if isinstance(wanted, str) else list(wanted)
    actual = bson_type_of(instance)
    if not any(_matches(actual, t) for t in types):
        yield ValidationError(f"{instance!r} is a BSON {actual}, not {' or '.join(types)}")


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal128):
        value = value.to_decimal()
        return value if value.is_finite() else None
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, Decimal):
        return value
    return None


def _bound(kind: str):
    def check(validator, limit, instance, schema) -> Iterator[ValidationError]:
        number = _as_number(instance)
        if number is None:
            return
        exclusive = schema.get("exclusiveMinimum" if kind == "minimum" else "exclusiveMaximum", False)
        limit_d = _as_number(limit)
        if kind == "minimum":
            bad = number <= limit_d if exclusive else number < limit_d
            word = "greater than" if exclusive else "at least"
        else:
            bad = number >= limit_d if exclusive else number > limit_d
            word = "less than" if exclusive else "at most"
        if bad:
            yield ValidationError(f"{instance!r} must be {word} {limit}")

    return check


def _enum(validator, enums, instance, schema) -> Iterator[ValidationError]:
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        na, nb = _as_number(a), _as_number(b)
        if na is not None and nb is not None:
            return na == nb
        return a == b

    if not any(same(instance, e) for e in enums):
        yield ValidationError(f"{instance!r} is not one of {enums!r}")


_type_checker = Draft4Validator.TYPE_CHECKER.redefine_many({
    "object": lambda checker, value: isinstance(value, Mapping),
    "array": lambda checker, value: isinstance(value, (list, tuple)),
    "number": lambda checker, value: _as_number(value) is not None,
    "integer": lambda checker, value: isinstance(value, int) and not isinstance(value, bool),
})

BsonSchemaValidator = validators.extend(
    Draft4Validator,
    {"bsonType": _bson_type, "minimum": _bound("minimum"), "maximum": _bound("maximum"),
     "enum": _enum},
    type_checker=_type_checker,
)


def errors(schema: dict[str, Any], document: Mapping[str, Any]) -> list[str]:
    """Why MongoDB would reject `document` under `{"$jsonSchema": schema}`; empty if it would not."""
    validator = BsonSchemaValidator(schema)
    out = []
    for err in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path) or "(document)"
        out.append(f"{where}: {err.message}")
    return out


def is_valid(schema: dict[str, Any], document: Mapping[str, Any]) -> bool:
    return not errors(schema, document)
