"""The canonical-schema check used by validation (etl.contract.SchemaCheck): its compiled fast
path accepts exactly the documents jsonschema accepts, and decimal bounds are checked too."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from bson import Decimal128, Int64, ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import validators

from etl.model.jsonview import JsonView, SchemaCheck
from test_mongo_schema import campaign, metric

UTC = dt.timezone.utc
VALUES = [None, True, 0, -1, 7, Int64(2**40), 1.5, "x", "X" * 30, "2026-01-01", str(uuid.uuid4()),
          Decimal128("12.50"), Decimal128("-3"), Decimal128("NaN"), dt.datetime(2026, 1, 5, tzinfo=UTC),
          ObjectId(), [], ["a"], [1], {}, {"geo": ["US"]}]
BASES = {"campaigns": campaign(), "daily_metrics": metric()}


def jsonschema_accepts(schema, doc) -> bool:
    cls = validators.validator_for(schema)
    view = JsonView(schema)
    return not list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(view.convert(doc)))


@settings(max_examples=400, deadline=None)
@given(collection=st.sampled_from(sorted(BASES)), changes=st.lists(
    st.tuples(st.integers(0, 20), st.sampled_from(range(len(VALUES)))), max_size=3), drop=st.booleans())
def test_the_fast_check_agrees_with_jsonschema(schemas, collection, changes, drop):
    schema = schemas[collection]
    doc = dict(BASES[collection])
    fields = sorted(doc)
    for field_index, value_index in changes:
        doc[fields[field_index % len(fields)]] = VALUES[value_index]
    if drop and changes:
        doc.pop(fields[changes[0][0] % len(fields)], None)
    check = SchemaCheck(schema)
    problem = check.problem(doc)
    if problem and problem.startswith("(decimal)"):
        return  # bounds: beyond what JSON Schema can say of a decimal string
    assert (problem is None) == jsonschema_accepts(schema, doc), problem


def test_good_documents_pass(schemas):
    for name, doc in BASES.items():
        assert SchemaCheck(schemas[name]).problem(doc) is None


@pytest.mark.parametrize("collection, field, value, message", [
    ("campaigns", "budget", Decimal128("-0.01"), "-0.01 is outside minimum 0"),
    ("daily_metrics", "viewability_rate", Decimal128("1.5"), "1.5 is outside maximum 1"),
])
def test_decimal_bounds_are_checked(schemas, collection, field, value, message):
    doc = dict(BASES[collection], **{field: value})
    assert SchemaCheck(schemas[collection]).problem(doc) == f"(decimal): {message}"


def test_a_failure_is_explained_by_jsonschema(schemas):
    problem = SchemaCheck(schemas["campaigns"]).problem(dict(campaign(), status="deleted"))
    assert problem.startswith("status: 'deleted' is not one of")
