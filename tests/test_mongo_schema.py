"""MongoDB validators and indexes from the canonical schemas: the dialect, enforcement by the
server, index sync, and a server that refuses a validator, collMod or an index."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
import uuid
from pathlib import Path

import pymongo
import pytest
from bson import Decimal128, Int64, ObjectId
from click.testing import CliRunner
from pymongo.errors import WriteError

from conftest import FAILPOINT_MESSAGE, expect_gap, fail_command, server_has_gap
from etl.formats.canonical import write_canonical
from etl.cli import cli
from etl.core.errors import DatabaseError
from etl.model.mapping import build_mapping
from etl.adapters.mongodb import connect
from etl.model.indexes import planned_indexes
from etl.adapters.mongodb.collections import apply_validators, sync_indexes
from etl.model.validators import to_bson_schema, validation_options, validator_for
from etl.formats.rules import load_rules

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


# ---- enforcement by the server -------------------------------------------------------------


@pytest.fixture
def db(mongo_db):
    uri, name = mongo_db
    client = connect(uri)
    yield client[name]
    client.close()


def strict(db, schemas, collection):
    outcome = apply_validators(db, {collection: schemas[collection]}, strict=True, indexes=False)[0]
    assert outcome.action == "created"
    return db[collection]


@pytest.mark.parametrize("collection, document", [
    ("campaigns", campaign()),
    ("campaigns", campaign(owner_id=None, end_date=dt.datetime(2026, 3, 1, tzinfo=UTC), flights=[])),
    ("daily_metrics", metric()),
    ("daily_metrics", metric(impressions=Int64(5_000_000_000), viewability_rate=None, ctr=None)),
    ("platform_sync_log", {"_id": ObjectId(), "platform_id": 2, "synced_at": dt.datetime(2026, 1, 1, tzinfo=UTC),
                           "status": "ok", "rows_synced": None, "message": None, "payload": {"a": [1, 2]}}),
])
def test_the_server_accepts_good_documents(schemas, db, collection, document):
    coll = strict(db, schemas, collection)
    coll.insert_one(document)
    assert coll.count_documents({}) == 1


@pytest.mark.parametrize("collection, document, gap", [
    ("campaigns", campaign(budget=Decimal128("-0.01")), "decimal-bounds"),  # below the CHECK's minimum
    ("campaigns", campaign(budget=125000.5), None),  # a double where the column is numeric
    ("campaigns", campaign(status="deleted"), None),  # not a value of the enum
    ("campaigns", campaign(code="X" * 25), None),  # longer than varchar(24)
    ("campaigns", campaign(flights=[flight(budget=None)]), None),  # NOT NULL inside an embedded child
    ("campaigns", campaign(extra=1), None),  # a field the schema does not have
    ("campaigns", {k: v for k, v in campaign().items() if k != "tags"}, None),  # a required field missing
    ("daily_metrics", metric(impressions=-1), None),
    ("daily_metrics", metric(viewability_rate=Decimal128("1.5")), "decimal-bounds"),  # above the maximum
    ("daily_metrics", metric(_id={"media_buy_id": Int64(43)}), None),  # half a composite key
    ("platforms", {"_id": 1, "code": "x", "name": "x", "channel": "video", "fee_rate": Decimal128("1"),
                   "supports": [], "api_config": {}, "is_active": True}, "decimal-bounds"),  # exclusive maximum
])
def test_the_server_rejects_bad_documents(schemas, db, collection, document, gap):
    coll = strict(db, schemas, collection)
    try:
        coll.insert_one(document)
    except WriteError as refused:
        assert refused.code == 121  # DocumentValidationFailure
        assert coll.count_documents({}) == 0
        assert not (gap and server_has_gap(db.client, gap)), f"the server no longer has gap {gap!r}: update KNOWN_GAPS"
        return
    if gap:
        expect_gap(db.client, gap)
    pytest.fail(f"the server accepted a document its validator forbids: {document}")


def test_the_validator_the_server_holds_is_the_derived_one(schemas, db):
    strict(db, schemas, "campaigns")
    info = {c["name"]: c["options"] for c in db.list_collections()}
    assert info["campaigns"]["validator"] == validator_for(schemas["campaigns"])
    assert info["campaigns"]["validationLevel"] == "strict"
    assert info["campaigns"]["validationAction"] == "error"


def test_indexes_enforce_unique_and_allow_many_nulls(schemas, db):
    apply_validators(db, {"media_buys": schemas["media_buys"]}, strict=True)
    names = {i["name"] for i in db.media_buys.list_indexes()}
    # The partial PostgreSQL index on status has no faithful twin and is left out.
    assert names == {"_id_", "creative_id_1", "line_item_id_1", "platform_id_1", "platform_id_1_external_id_1"}
    base = {"line_item_id": Int64(1), "platform_id": 2, "creative_id": None, "status": "planned",
            "planned_spend": Decimal128("10.00"), "booked_at": None, "settings": None,
            "created_at": dt.datetime(2026, 1, 1, tzinfo=UTC)}
    # PostgreSQL's UNIQUE (platform_id, external_id) allows many NULL external ids.
    db.media_buys.insert_many([{**base, "_id": Int64(1), "external_id": None},
                               {**base, "_id": Int64(2), "external_id": None},
                               {**base, "_id": Int64(3), "external_id": "X-1"}])
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        db.media_buys.insert_one({**base, "_id": Int64(4), "external_id": "X-1"})


def test_an_existing_collection_is_modified_then_left_alone(schemas, db):
    db.create_collection("flights")
    assert apply_validators(db, {"flights": schemas["flights"]})[0].action == "modified"
    again = apply_validators(db, {"flights": schemas["flights"]})[0]
    assert again.action == "unchanged"
    options = next(c["options"] for c in db.list_collections() if c["name"] == "flights")
    assert options["validationLevel"] == "moderate" and options["validationAction"] == "warn"
    # Strict mode is a different validator setting: collMod again.
    assert apply_validators(db, {"flights": schemas["flights"]}, strict=True)[0].action == "modified"


# ---- a server that refuses ------------------------------------------------------------------


@pytest.mark.parametrize("command, setup, message", [
    ("create", None, "flights: creating it with its validator failed: the server said: "),
    ("collMod", "exists", "flights: collMod with its validator failed: the server said: "),
    ("createIndexes", None, "indexes of flights: building them failed: the server said: "),
])
def test_a_refusal_is_an_error_naming_the_collection_and_the_message(schemas, db, command, setup, message):
    if setup == "exists":
        db.create_collection("flights")
    with fail_command(db.client, command, code=2):
        with pytest.raises(DatabaseError) as refused:
            apply_validators(db, {"flights": schemas["flights"]})
    assert refused.value.line().startswith(message)
    assert FAILPOINT_MESSAGE in refused.value.line()


def test_a_lost_connection_is_not_taken_for_a_refusal(schemas, db):
    with fail_command(db.client, "create", close_connection=True):
        with pytest.raises(DatabaseError) as failed:
            apply_validators(db, {"flights": schemas["flights"]})
    assert "the connection to MongoDB failed (AutoReconnect" in failed.value.line()
    assert "the server said" not in failed.value.line()
    # Nothing was created without its validator.
    assert "flights" not in db.list_collection_names()


# ---- indexes -------------------------------------------------------------------------------


def test_sync_indexes_creates_rebuilds_and_drops(schemas, db):
    coll = db["campaigns"]
    coll.insert_one({"_id": 1})
    expected = planned_indexes(schemas["campaigns"])
    assert {i.name for i in expected} == {"advertiser_id_1", "owner_id_1", "code_1", "status_1", "start_date_1"}
    first = sync_indexes(coll, expected)
    assert sorted(first["created"]) == sorted(i.name for i in expected) and first["dropped"] == []
    assert sync_indexes(coll, expected) == {"created": [], "dropped": [], "kept": [i.name for i in expected]}

    # An index that disappeared from PostgreSQL is dropped; one whose uniqueness changed is rebuilt.
    fewer = [replace(i, unique=True) if i.name == "start_date_1" else i for i in expected if i.name != "status_1"]
    third = sync_indexes(coll, fewer)
    assert sorted(third["dropped"]) == ["start_date_1", "status_1"] and third["created"] == ["start_date_1"]
    current = {i["name"]: dict(i) for i in coll.list_indexes()}
    assert set(current) == {"_id_"} | {i.name for i in fewer}
    assert current["start_date_1"].get("unique") is True


def test_staging_names(schemas, db):
    outcome = apply_validators(db, {"flights": schemas["flights"]}, names={"flights": "flights__staging_1"})[0]
    assert outcome.collection == "flights__staging_1" and outcome.action == "created"
    assert db.list_collection_names() == ["flights__staging_1"]
    assert {i["name"] for i in db["flights__staging_1"].list_indexes()} == {"_id_", "campaign_id_1"}


# ---- the command ----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path, monkeypatch, sample_snapshot):
    root = tmp_path / "project"
    write_canonical(build_mapping(sample_snapshot, load_rules(RULES)), root / "schemas" / "collections",
                    root / "schemas" / "mapping.json")
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.delenv("ETL_DEBUG", raising=False)
    return root


def test_mongo_schema_command(root, mongo_db, monkeypatch):
    uri, db = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("ETL_SCHEMA_STRICT_MODE", "true")
    result = CliRunner().invoke(cli, ["mongo-schema", "--db", db])
    assert result.exit_code == 0, result.output
    assert "12 created" in result.output
    client = connect(uri)
    options = {c["name"]: c["options"] for c in client[db].list_collections()}
    client.close()
    assert options["line_items"]["validationAction"] == "error"
    again = CliRunner().invoke(cli, ["mongo-schema", "--db", db])
    assert again.exit_code == 0 and "12 unchanged" in again.output


def test_mongo_schema_command_says_what_the_server_refused(root, mongo_db, monkeypatch):
    uri, db = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    client = connect(uri)
    try:
        with fail_command(client, "create", code=2):
            refused = CliRunner().invoke(cli, ["mongo-schema", "--db", db])
    finally:
        client.close()
    assert refused.exit_code == 1
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "flights" not in lines[0] or "creating it with its validator failed" in lines[0]
    assert FAILPOINT_MESSAGE in lines[0]


def test_mongo_schema_command_rejects_a_bad_database_name(root):
    result = CliRunner().invoke(cli, ["mongo-schema", "--db", "bad/name"])
    assert result.exit_code == 1 and "Error: database name 'bad/name'" in result.output
