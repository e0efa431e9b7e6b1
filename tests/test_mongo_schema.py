"""MongoDB validators and indexes from the canonical schemas: the dialect, in-process checks,
enforcement by a wire server, index sync, and servers that refuse validators or collMod."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pymongo
import pytest
from bson import Decimal128, Int64, ObjectId
from click.testing import CliRunner
from pymongo.errors import WriteError

from etl import bsonschema
from etl.canonical import write_canonical
from etl.cli import cli
from etl.errors import DatabaseError
from etl.mapping import build_mapping
from etl.mongo import connect
from etl.mongo_schema import (apply_validators, expected_indexes, sync_indexes, to_bson_schema,
                              validation_options, validator_for)
from etl.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "schemas" / "rules.yaml"
UTC = dt.timezone.utc


def flight(**over):
    doc = {"_id": Int64(11), "campaign_id": Int64(7), "name": "Q1 burst",
           "start_date": dt.datetime(2026, 1, 5, tzinfo=UTC), "end_date": dt.datetime(2026, 2, 1, tzinfo=UTC),
           "budget": Decimal128("5000.00"), "pacing": "even", "is_locked": False}
    return {**doc, **over}


def campaign(**over):
    doc = {"_id": Int64(7), "advertiser_id": Int64(3), "owner_id": str(uuid.uuid4()), "code": "CMP-0007",
           "name": "Spring launch", "status": "active", "budget": Decimal128("125000.50"), "currency": "USD",
           "start_date": dt.datetime(2026, 1, 5, tzinfo=UTC), "end_date": None, "objective": None,
           "tags": ["q1"], "targeting": {"geo": ["US"]}, "legacy_field": None,
           "created_at": dt.datetime(2025, 12, 1, 9, 30, tzinfo=UTC),
           "updated_at": dt.datetime(2025, 12, 2, tzinfo=UTC), "flights": [flight()]}
    return {**doc, **over}


def metric(**over):
    day = dt.datetime(2026, 1, 6, tzinfo=UTC)
    doc = {"_id": {"media_buy_id": Int64(42), "metric_date": day}, "media_buy_id": Int64(42), "metric_date": day,
           "impressions": 120000, "clicks": 360, "conversions": 4, "spend": Decimal128("1440.00"),
           "video_completions": None, "viewability_rate": Decimal128("0.7312"),
           "ctr": Decimal128("0.003000"), "cpm": Decimal128("12.00")}
    return {**doc, **over}


# ---- the dialect ----------------------------------------------------------------------------


ALLOWED_KEYWORDS = {"bsonType", "properties", "required", "additionalProperties", "items", "anyOf", "enum",
                    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                    "pattern", "minItems", "maxItems", "title", "description"}


def _keywords(node: dict) -> set[str]:
    found = set(node)
    for sub in (node.get("properties") or {}).values():
        found |= _keywords(sub)
    for sub in node.get("anyOf") or []:
        found |= _keywords(sub)
    if isinstance(node.get("items"), dict):
        found |= _keywords(node["items"])
    return found


def test_validator_is_mongodb_dialect(schemas):
    # No $ref, format, $schema, type, x-… : MongoDB rejects keywords it does not know.
    for name, schema in schemas.items():
        assert _keywords(validator_for(schema)["$jsonSchema"]) <= ALLOWED_KEYWORDS, name
    v = validator_for(schemas["campaigns"])["$jsonSchema"]
    assert v["bsonType"] == "object" and v["additionalProperties"] is False
    assert v["properties"]["budget"] == {"bsonType": "decimal", "minimum": 0}
    assert v["properties"]["status"]["enum"] == ["draft", "active", "paused", "completed", "archived"]
    assert v["properties"]["end_date"] == {"bsonType": ["date", "null"]}
    assert v["properties"]["flights"]["items"]["properties"]["budget"]["bsonType"] == "decimal"


def test_exclusive_bounds_use_draft_4_spelling(schemas):
    fee = validator_for(schemas["platforms"])["$jsonSchema"]["properties"]["fee_rate"]
    assert fee == {"bsonType": "decimal", "minimum": 0, "maximum": 1, "exclusiveMaximum": True}
    assert to_bson_schema({"type": "integer", "x-bsonType": "int", "exclusiveMinimum": 0}) == \
        {"bsonType": "int", "minimum": 0, "exclusiveMinimum": True}


def test_validation_options_follow_strict_mode():
    assert validation_options(True) == {"validationLevel": "strict", "validationAction": "error"}
    assert validation_options(False) == {"validationLevel": "moderate", "validationAction": "warn"}


# ---- in-process checks ----------------------------------------------------------------------


@pytest.mark.parametrize("collection, document", [
    ("campaigns", campaign()),
    ("campaigns", campaign(owner_id=None, end_date=dt.datetime(2026, 3, 1, tzinfo=UTC), flights=[])),
    ("daily_metrics", metric()),
    ("daily_metrics", metric(impressions=Int64(5_000_000_000), viewability_rate=None, ctr=None)),
    ("platform_sync_log", {"_id": ObjectId(), "platform_id": 2, "synced_at": dt.datetime(2026, 1, 1, tzinfo=UTC),
                           "status": "ok", "rows_synced": None, "message": None, "payload": {"a": [1, 2]}}),
])
def test_in_process_validator_accepts_good_documents(schemas, collection, document):
    assert bsonschema.errors(validator_for(schemas[collection])["$jsonSchema"], document) == []


@pytest.mark.parametrize("collection, document, expected", [
    ("campaigns", campaign(budget=Decimal128("-0.01")), "budget: Decimal128('-0.01') must be at least 0"),
    ("campaigns", campaign(budget=125000.5), "budget: 125000.5 is a BSON double, not decimal"),
    ("campaigns", campaign(status="deleted"), "status: 'deleted' is not one of"),
    ("campaigns", campaign(code="X" * 25), "code: 'XXXXXXXXXXXXXXXXXXXXXXXXX' is too long"),
    ("campaigns", campaign(flights=[flight(budget=None)]), "flights.0.budget: None is a BSON null"),
    ("campaigns", campaign(extra=1), "(document): Additional properties are not allowed"),
    ("daily_metrics", metric(impressions=-1), "impressions: -1 must be at least 0"),
    ("daily_metrics", metric(viewability_rate=Decimal128("1.5")),
     "viewability_rate: Decimal128('1.5') must be at most 1"),
    ("platforms", {"_id": 1, "code": "x", "name": "x", "channel": "video", "fee_rate": Decimal128("1"),
                   "supports": [], "api_config": {}, "is_active": True},
     "fee_rate: Decimal128('1') must be less than 1"),
])
def test_in_process_validator_rejects_bad_documents(schemas, collection, document, expected):
    errors = bsonschema.errors(validator_for(schemas[collection])["$jsonSchema"], document)
    assert any(e.startswith(expected) for e in errors), errors


def test_missing_field_is_rejected_in_process(schemas):
    document = campaign()
    del document["tags"]
    errors = bsonschema.errors(validator_for(schemas["campaigns"])["$jsonSchema"], document)
    assert errors == ["(document): 'tags' is a required property"]


# ---- enforcement by a wire server -----------------------------------------------------------


@pytest.fixture
def wire_db(wire_mongo_uri):
    client = pymongo.MongoClient(wire_mongo_uri, serverSelectionTimeoutMS=5000, uuidRepresentation="standard",
                                 tz_aware=True)
    name = f"etltest-{uuid.uuid4().hex[:8]}"
    yield client[name]
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.mark.wire
def test_wire_server_enforces_the_derived_validator(schemas, wire_db):
    outcomes = apply_validators(wire_db, {"campaigns": schemas["campaigns"], "daily_metrics": schemas["daily_metrics"]},
                                strict=True, allow_unsupported=False)
    assert [(o.collection, o.action) for o in outcomes] == [("campaigns", "created"), ("daily_metrics", "created")]
    wire_db.campaigns.insert_one(campaign())
    wire_db.daily_metrics.insert_one(metric())
    with pytest.raises(WriteError) as bad_budget:
        wire_db.campaigns.insert_one(campaign(_id=Int64(8), code="CMP-0008", budget=Decimal128("-5")))
    assert bad_budget.value.code == 121
    with pytest.raises(WriteError) as bad_status:
        wire_db.campaigns.insert_one(campaign(_id=Int64(9), code="CMP-0009", status="deleted"))
    assert bad_status.value.code == 121
    with pytest.raises(WriteError) as bad_metric:
        wire_db.daily_metrics.insert_one(metric(_id={"media_buy_id": Int64(43)}))
    assert bad_metric.value.code == 121
    assert wire_db.campaigns.count_documents({}) == 1 and wire_db.daily_metrics.count_documents({}) == 1
    info = {c["name"]: c["options"] for c in wire_db.list_collections()}
    assert info["campaigns"]["validator"] == validator_for(schemas["campaigns"])
    assert info["campaigns"]["validationLevel"] == "strict"


@pytest.mark.wire
def test_wire_indexes_enforce_unique_and_allow_many_nulls(schemas, wire_db):
    apply_validators(wire_db, {"media_buys": schemas["media_buys"]}, strict=True, allow_unsupported=False)
    names = {i["name"] for i in wire_db.media_buys.list_indexes()}
    # The partial PostgreSQL index on status has no faithful twin and is left out.
    assert names == {"_id_", "creative_id_1", "line_item_id_1", "platform_id_1", "platform_id_1_external_id_1"}
    base = {"line_item_id": Int64(1), "platform_id": 2, "creative_id": None, "status": "planned",
            "planned_spend": Decimal128("10.00"), "booked_at": None, "settings": None,
            "created_at": dt.datetime(2026, 1, 1, tzinfo=UTC)}
    # PostgreSQL's UNIQUE (platform_id, external_id) allows many NULL external ids.
    wire_db.media_buys.insert_many([{**base, "_id": Int64(1), "external_id": None},
                                    {**base, "_id": Int64(2), "external_id": None},
                                    {**base, "_id": Int64(3), "external_id": "X-1"}])
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        wire_db.media_buys.insert_one({**base, "_id": Int64(4), "external_id": "X-1"})


@pytest.mark.wire
def test_existing_collection_is_modified_or_the_refusal_is_reported(schemas, wire_db):
    wire_db.create_collection("flights")
    outcome = apply_validators(wire_db, {"flights": schemas["flights"]}, allow_unsupported=True)[0]
    if outcome.action == "unsupported":  # a server without collMod (mongoeco)
        assert "collMod" in outcome.reason
        with pytest.raises(DatabaseError) as refused:
            apply_validators(wire_db, {"flights": schemas["flights"]}, allow_unsupported=False)
        assert "refused collMod for flights" in refused.value.line()
        assert "ETL_MONGO_ALLOW_NO_COLLMOD=true" in refused.value.line()
    else:  # a real server
        assert outcome.action == "modified"
        again = apply_validators(wire_db, {"flights": schemas["flights"]}, allow_unsupported=False)[0]
        assert again.action == "unchanged"


# ---- indexes on the configured MongoDB (stand-in or MONGO_TEST_URI) -------------------------


def test_sync_indexes_creates_rebuilds_and_drops(schemas, mongo_db):
    uri, name = mongo_db
    client = connect(uri)
    coll = client[name]["campaigns"]
    coll.insert_one({"_id": 1})
    expected = expected_indexes(schemas["campaigns"])
    assert {i["name"] for i in expected} == {"advertiser_id_1", "owner_id_1", "code_1", "status_1", "start_date_1"}
    first = sync_indexes(coll, expected)
    assert sorted(first["created"]) == sorted(i["name"] for i in expected) and first["dropped"] == []
    assert sync_indexes(coll, expected) == {"created": [], "dropped": [], "kept": [i["name"] for i in expected]}

    # An index that disappeared from PostgreSQL is dropped; one whose uniqueness changed is rebuilt.
    fewer = [i for i in expected if i["name"] != "status_1"]
    fewer = [{**i, "unique": True} if i["name"] == "start_date_1" else i for i in fewer]
    third = sync_indexes(coll, fewer)
    assert sorted(third["dropped"]) == ["start_date_1", "status_1"] and third["created"] == ["start_date_1"]
    current = {i["name"]: dict(i) for i in coll.list_indexes()}
    assert set(current) == {"_id_"} | {i["name"] for i in fewer}
    assert current["start_date_1"].get("unique") is True
    client.close()


def test_unsupported_validators_stop_unless_allowed(schemas):
    # An in-process stand-in that refuses $jsonSchema: the refusal is reported, not hidden.
    db = connect(f"mongomock://refuses-{uuid.uuid4().hex[:8]}")["db"]
    with pytest.raises(DatabaseError, match="refused create with a validator for flights"):
        apply_validators(db, {"flights": schemas["flights"]}, allow_unsupported=False)
    outcome = apply_validators(db, {"flights": schemas["flights"]}, allow_unsupported=True)[0]
    assert outcome.action == "unsupported"
    assert outcome.indexes["created"] == ["campaign_id_1"] or outcome.indexes["kept"] == ["campaign_id_1"]
    assert "flights" in db.list_collection_names()


def test_staging_names(schemas, mongo_db):
    uri, name = mongo_db
    client = connect(uri)
    db = client[name]
    outcome = apply_validators(db, {"flights": schemas["flights"]}, allow_unsupported=True,
                               names={"flights": "flights__staging_1"})[0]
    assert outcome.collection == "flights__staging_1" and outcome.action in ("created", "unsupported")
    assert db.list_collection_names() == ["flights__staging_1"]
    assert {i["name"] for i in db["flights__staging_1"].list_indexes()} == {"_id_", "campaign_id_1"}
    client.close()


# ---- the command ----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path, monkeypatch, sample_snapshot):
    root = tmp_path / "project"
    write_canonical(build_mapping(sample_snapshot, load_rules(RULES)), root / "schemas" / "collections",
                    root / "schemas" / "mapping.json")
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.delenv("ETL_DEBUG", raising=False)
    return root


@pytest.mark.wire
def test_mongo_schema_command_against_the_wire_server(root, wire_mongo_uri, monkeypatch):
    db = f"etltest-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MONGO_URI", wire_mongo_uri)
    monkeypatch.setenv("ETL_MONGO_ALLOW_NO_COLLMOD", "false")
    monkeypatch.setenv("ETL_SCHEMA_STRICT_MODE", "true")
    result = CliRunner().invoke(cli, ["mongo-schema", "--db", db])
    assert result.exit_code == 0, result.output
    assert "12 created" in result.output
    client = pymongo.MongoClient(wire_mongo_uri)
    try:
        options = {c["name"]: c["options"] for c in client[db].list_collections()}
        assert options["line_items"]["validationAction"] == "error"
    finally:
        client.drop_database(db)
        client.close()


def test_mongo_schema_command_on_a_server_without_validators(root, monkeypatch):
    monkeypatch.setenv("MONGO_URI", f"mongomock://cmd-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("ETL_MONGO_ALLOW_NO_COLLMOD", "false")
    refused = CliRunner().invoke(cli, ["mongo-schema", "--db", "bravo-test"])
    assert refused.exit_code == 1
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: the server refused create with a validator")
    assert "ETL_MONGO_ALLOW_NO_COLLMOD=true" in lines[0]

    monkeypatch.setenv("ETL_MONGO_ALLOW_NO_COLLMOD", "true")
    allowed = CliRunner().invoke(cli, ["mongo-schema", "--db", "bravo-test"])
    assert allowed.exit_code == 0, allowed.output
    assert "Warning: this server does not enforce validators" in allowed.output
    assert "12 unsupported" in allowed.output


def test_mongo_schema_command_rejects_a_bad_database_name(root):
    result = CliRunner().invoke(cli, ["mongo-schema", "--db", "bad/name"])
    assert result.exit_code == 1 and "Error: database name 'bad/name'" in result.output
