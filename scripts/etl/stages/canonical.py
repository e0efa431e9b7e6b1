"""Canonical schemas: one JSON Schema (draft 2020-12) per collection, describing the documents.

The accepted snapshot, the rules and the decisions give the mapping (etl.mapping); the mapping
gives one schema per collection in schemas/collections/<collection>.schema.json plus an
index.json holding the canonical hash. Everything downstream (generated artifacts, MongoDB
validators and indexes, contract tests) is derived from these files only.

The schemas describe a document as JSON (the representation in docs/mapping-and-rules.md:
Decimal128 as a decimal string, dates as RFC 3339 strings, ObjectId as 24 hex digits, UUIDs
as strings, binary as base64). Each property also carries `x-bsonType`, the type it has inside
MongoDB, and `x-bounds` for numeric limits a decimal string cannot express, so the MongoDB
validator can be derived without going back to the mapping.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from etl.core.errors import SnapshotError
from etl.core.fsutil import read_json
from etl.core.paths import paths
from etl.formats.canonical import write_canonical
from etl.formats.decisions import decisions_data
from etl.formats.rules import load_rules
from etl.model.mapping import build_mapping

log = logging.getLogger("etl.canonical")


# ---------------------------------------------------------------------------------------------
# Field -> schema
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def load_accepted(path: Path | None = None) -> dict[str, Any]:
    path = path or paths.schemas / "accepted.json"
    if not path.is_file():
        raise SnapshotError(f"no accepted schema at {path}", hint="run `etl decide` (make decide) first")
    try:
        snapshot = read_json(path)
    except ValueError as exc:
        raise SnapshotError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("tables"), dict):
        raise SnapshotError(f"{path.name} has no tables: not a schema snapshot")
    return snapshot


def run_canonical() -> dict[str, Any]:
    snapshot = load_accepted()
    mapping = build_mapping(snapshot, load_rules(), decisions_data())
    return write_canonical(mapping)
