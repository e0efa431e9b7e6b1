"""The pytest module `etl generate` writes per collection (generated/tests/test_<slug>.py): its
template and rendering. The checks it calls live in etl.stages.contract.
"""

from __future__ import annotations

from typing import Any

_TEMPLATE = '''\
"""Contract tests for the `{name}` collection, from its canonical schema.

Run through `etl test-data` (or pytest) with MONGO_URI / MONGO_DB_NAME naming the target.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.stages import contract

COLLECTION = {name!r}
SCHEMA_HASH = {schema_hash!r}
# The canonical schema's x-indexes; None: it names none to compare with.
EXPECTED_INDEXES = {indexes}

GENERATED = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def target():
    return contract.Target.from_environment(COLLECTION, {slug!r}, {type_name!r}, GENERATED)


def test_collection_exists(target):
    assert target.exists(), f"collection {{COLLECTION}} does not exist in the target database"


def test_documents_match_canonical_schema(target):
    failures = contract.schema_failures(target.schema, target.sample())
    assert not failures, contract.report(failures, "schema violations")


def test_documents_match_model(target):
    failures = contract.model_failures(target.model, target.sample())
    assert not failures, contract.report(failures, "model validation errors")


def test_documents_match_zod(target):
    failures = contract.zod_failures(target)
    assert not failures, contract.report(failures, "Zod validation errors")


def test_documents_compile_as_typescript(target):
    failures = contract.typescript_failures(target)
    assert not failures, contract.report(failures, "TypeScript errors (tsc --noEmit --strict)")


def test_validator_is_canonical(target):
    problems = contract.validator_problems(target.schema, target.validator())
    assert not problems, contract.report(problems, "validator differences")


def test_indexes_are_planned(target):
    if EXPECTED_INDEXES is None:
        pytest.skip("the canonical schema lists no expected indexes (x-indexes)")
    problems = contract.index_problems(EXPECTED_INDEXES, target.indexes())
    assert not problems, contract.report(problems, "index differences")
'''


def render_test_module(name: str, slug: str, type_name: str, schema_hash: str,
                       indexes: list[dict[str, Any]] | None) -> str:
    """The pytest module for one collection (without its header)."""
    return _TEMPLATE.format(name=name, slug=slug, type_name=type_name, schema_hash=schema_hash,
                            indexes=_literal(indexes))


def _literal(value: Any) -> str:
    """A Python literal of JSON data, one index per line so a changed index shows in a diff."""
    if not value:
        return repr(value)
    return "[\n" + "".join(f"    {item!r},\n" for item in value) + "]"
