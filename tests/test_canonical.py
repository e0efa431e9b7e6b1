"""Canonical schemas from the sample's real catalog: valid draft 2020-12, accepting documents in
the documented JSON representation and rejecting broken ones; written only when changed."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from etl.formats.canonical import write_canonical
from etl.model.canonical import DECIMAL_PATTERN, canonical_schemas, collection_schema
from etl.cli import cli
from etl.model.mapping import build_mapping
from etl.formats.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "schemas" / "rules.yaml"


def _validator(schema: dict) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


FLIGHT = {"_id": 11, "campaign_id": 7, "name": "Q1 burst", "start_date": "2026-01-05T00:00:00Z",
          "end_date": "2026-02-01T00:00:00Z", "budget": "5000.00", "pacing": "even", "is_locked": False}

CAMPAIGN = {
    "_id": 7, "advertiser_id": 3, "owner_id": "0b7e1f9e-8d4c-4a55-9a53-2f8a1c7d6e01", "code": "CMP-0007",
    "name": "Spring launch", "status": "active", "budget": "125000.50", "currency": "USD",
    "start_date": "2026-01-05T00:00:00Z", "end_date": None, "objective": None, "tags": ["q1", "launch"],
    "targeting": {"geo": ["US", "CA"], "age": {"min": 18}}, "legacy_field": None,
    "created_at": "2025-12-01T09:30:00.123Z", "updated_at": "2025-12-02T10:00:00Z",
    "flights": [FLIGHT],
}

METRIC = {"_id": {"media_buy_id": 42, "metric_date": "2026-01-06T00:00:00Z"}, "media_buy_id": 42,
          "metric_date": "2026-01-06T00:00:00Z", "impressions": 120000, "clicks": 360, "conversions": 4,
          "spend": "1440.00", "video_completions": None, "viewability_rate": "0.7312",
          "ctr": "0.003000", "cpm": "12.00"}

SYNC_LOG = {"_id": "6b080d7432ad8039aa11bb22", "platform_id": 2, "synced_at": "2026-01-06T03:00:00Z",
            "status": "ok", "rows_synced": 1200, "message": None, "payload": [1, "two", {"three": 3}]}


def test_every_schema_is_valid_draft_2020_12(schemas):
    assert set(schemas) == {"agencies", "advertisers", "users", "platforms", "campaigns", "campaign_users",
                            "flights", "line_items", "creatives", "media_buys", "daily_metrics",
                            "platform_sync_log"}
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["x-collection"] == name
        assert schema["required"] == [p for p in schema["properties"] if not p.endswith(("__old", "__archived"))]


def test_every_property_says_its_bson_type(schemas):
    def walk(node: dict, where: str) -> None:
        for key, prop in (node.get("properties") or {}).items():
            if key.endswith(("__old", "__archived")):
                continue
            assert "x-bsonType" in prop, f"{where}.{key}"
            walk(prop, f"{where}.{key}")
            if isinstance(prop.get("items"), dict):
                walk(prop["items"], f"{where}.{key}[]")

    for name, schema in schemas.items():
        walk(schema, name)


@pytest.mark.parametrize("collection, document", [
    ("campaigns", CAMPAIGN), ("daily_metrics", METRIC), ("platform_sync_log", SYNC_LOG),
    ("flights", FLIGHT),
])
def test_sample_documents_validate(schemas, collection, document):
    errors = [e.message for e in _validator(schemas[collection]).iter_errors(document)]
    assert errors == []


@pytest.mark.parametrize("collection, base, change, why", [
    ("campaigns", CAMPAIGN, {"budget": 125000.5}, "money is a decimal string, not a float"),
    ("campaigns", CAMPAIGN, {"budget": "12,5"}, "not a decimal"),
    ("campaigns", CAMPAIGN, {"status": "deleted"}, "not a campaign_status label"),
    ("campaigns", CAMPAIGN, {"code": "X" * 25}, "varchar(24)"),
    ("campaigns", CAMPAIGN, {"currency": "usd"}, "rule pattern ^[A-Z]{3}$"),
    ("campaigns", CAMPAIGN, {"owner_id": "not-a-uuid"}, "uuid format"),
    ("campaigns", CAMPAIGN, {"created_at": "yesterday"}, "date-time format"),
    ("campaigns", CAMPAIGN, {"surprise": 1}, "unknown field"),
    ("campaigns", CAMPAIGN, {"name": None}, "NOT NULL column"),
    ("campaigns", CAMPAIGN, {"flights": [{**FLIGHT, "budget": None}]}, "embedded flight breaks its schema"),
    ("daily_metrics", METRIC, {"_id": {"media_buy_id": 42}}, "composite _id is incomplete"),
    ("platform_sync_log", SYNC_LOG, {"_id": "xyz"}, "not an ObjectId"),
])
def test_broken_documents_are_rejected(schemas, collection, base, change, why):
    document = {**copy.deepcopy(base), **change}
    assert not _validator(schemas[collection]).is_valid(document), why


def test_missing_field_is_rejected(schemas):
    document = {k: v for k, v in CAMPAIGN.items() if k != "tags"}
    assert not _validator(schemas["campaigns"]).is_valid(document)


def test_bounds_of_decimal_strings_travel_beside_them(schemas):
    budget = schemas["campaigns"]["properties"]["budget"]
    assert budget["x-bsonType"] == "decimal" and budget["x-bounds"] == {"minimum": 0}
    assert budget["pattern"] == DECIMAL_PATTERN and budget["x-round"] == {"places": 2, "mode": "half_even"}
    fee = schemas["platforms"]["properties"]["fee_rate"]
    assert fee["x-bounds"] == {"minimum": 0, "exclusiveMaximum": 1}
    impressions = schemas["daily_metrics"]["properties"]["impressions"]
    assert impressions["minimum"] == 0 and impressions["x-bsonType"] == ["long", "int"]


def test_serialization_rules_change_the_representation(sample_snapshot):
    rules = {"version": 1, "defaults": {"serialize": {"decimal": "double", "uuid": "binary", "date": "string"}}}
    schemas = canonical_schemas(build_mapping(sample_snapshot, rules))
    props = schemas["campaigns"]["properties"]
    assert props["budget"]["type"] == "number" and props["budget"]["x-bsonType"] == "double"
    assert props["budget"]["minimum"] == 0
    assert props["owner_id"]["x-bsonType"] == ["binData", "null"] and props["owner_id"]["format"] == "uuid"
    assert props["start_date"] == {"type": "string", "format": "date", "x-bsonType": "string", "x-pgType": "date"}
    assert props["created_at"]["format"] == "date-time" and props["created_at"]["x-bsonType"] == "string"


def test_write_canonical_rewrites_only_what_changed(sample_snapshot, tmp_path):
    out, mapping_file = tmp_path / "collections", tmp_path / "mapping.json"
    rules = load_rules(RULES)
    first = write_canonical(build_mapping(sample_snapshot, rules), out, mapping_file)
    assert len(first["written"]) == 12 and first["index_written"] and first["mapping_written"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    again = write_canonical(build_mapping(sample_snapshot, rules), out, mapping_file)
    assert again["written"] == [] and not again["index_written"] and not again["mapping_written"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    # A new optional column in one table: exactly that schema, the index and the mapping change.
    changed = copy.deepcopy(sample_snapshot)
    changed["tables"]["public.campaigns"]["columns"].append(
        {"name": "performance_score", "position": 99, "type": "numeric(5,2)", "type_kind": "base",
         "base_type": "numeric(5,2)", "element_type": None, "nullable": True})
    third = write_canonical(build_mapping(changed, rules), out, mapping_file)
    assert third["written"] == ["campaigns"] and third["index_written"] and third["mapping_written"]
    assert third["hash"] != first["hash"]
    index = json.loads((out / "index.json").read_text())
    assert index["hash"] == third["hash"]
    assert "performance_score" in json.loads((out / "campaigns.schema.json").read_text())["properties"]

    # A table removed: its schema goes.
    del changed["tables"]["public.platform_sync_log"]
    fourth = write_canonical(build_mapping(changed, rules), out, mapping_file)
    assert fourth["removed"] == ["platform_sync_log"] and not (out / "platform_sync_log.schema.json").exists()


def test_embedded_children_are_inlined(schemas):
    flights = schemas["campaigns"]["properties"]["flights"]
    assert flights["type"] == "array" and "$ref" not in json.dumps(flights)
    assert flights["items"]["properties"]["budget"]["x-bsonType"] == "decimal"
    assert flights["x-embed"]["sort"] == [["start_date", 1]]


def test_embedding_cycle_does_not_recurse_forever(sample_snapshot):
    mapping = build_mapping(sample_snapshot)
    colls = mapping["collections"]
    colls["campaigns"]["embed"] = [{"collection": "flights", "as": "flights", "foreign_key": ["campaign_id"],
                                    "sort": [], "limit": 5}]
    colls["flights"]["embed"] = [{"collection": "campaigns", "as": "campaigns", "foreign_key": ["id"],
                                  "sort": [], "limit": None}]
    schema = collection_schema("campaigns", colls["campaigns"], colls)
    assert schema["properties"]["flights"]["maxItems"] == 5
    assert "campaigns" not in schema["properties"]["flights"]["items"]["properties"]


# ---- the command ----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path, monkeypatch, sample_snapshot):
    root = tmp_path / "project"
    (root / "schemas").mkdir(parents=True)
    (root / "schemas" / "accepted.json").write_text(json.dumps(sample_snapshot), encoding="utf-8")
    shutil.copy(RULES, root / "schemas" / "rules.yaml")
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.delenv("ETL_DEBUG", raising=False)
    return root


def test_canonical_command_writes_then_reports_unchanged(root):
    runner = CliRunner()
    first = runner.invoke(cli, ["canonical"])
    assert first.exit_code == 0, first.output
    assert "12 collections" in first.output and "rewrote 12" in first.output
    assert (root / "schemas" / "mapping.json").is_file()
    assert (root / "schemas" / "collections" / "campaigns.schema.json").is_file()
    second = runner.invoke(cli, ["canonical"])
    assert second.exit_code == 0 and "unchanged" in second.output


def test_canonical_command_broken_rule_is_one_line_and_keeps_previous_schemas(root):
    runner = CliRunner()
    assert runner.invoke(cli, ["canonical"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in (root / "schemas" / "collections").iterdir()}
    rules = root / "schemas" / "rules.yaml"
    rules.write_text(rules.read_text().replace("fee_rate:", "fee_ratio:"), encoding="utf-8")
    result = runner.invoke(cli, ["canonical"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: rules: platforms.fields.fee_ratio: column 'fee_ratio'")
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in (root / "schemas" / "collections").iterdir()} == before


def test_canonical_command_without_accepted_schema(root):
    (root / "schemas" / "accepted.json").unlink()
    result = CliRunner().invoke(cli, ["canonical"])
    assert result.exit_code == 1
    assert "Error: no accepted schema" in result.output and "etl decide" in result.output


@pytest.mark.parametrize("text, ok", [
    ("1234.50", True), ("-0", True), ("1E+3", True), ("0E-10", True), (".5", True), ("NaN", True),
    ("-Infinity", True), ("12,5", False), ("1.2.3", False), ("", False), ("nan", False), ("+1", False),
])
def test_decimal_string_pattern(text, ok):
    from decimal import Decimal

    assert _validator({"type": "string", "pattern": DECIMAL_PATTERN}).is_valid(text) is ok
    if ok:  # what the pattern accepts, Decimal reads back
        Decimal(text)


def test_domain_regex_is_translated_for_json_schema(schemas):
    # The sample's email domain uses [:space:], which only PostgreSQL and PCRE understand.
    email = {"type": "string", "pattern": schemas["users"]["properties"]["email"]["pattern"]}
    assert _validator(email).is_valid("omar.rossi1@mediatool.example")
    assert not _validator(email).is_valid("omar rossi@mediatool.example")


def test_canonical_command_applies_recorded_decisions(root):
    (root / "schemas" / "decisions.yaml").write_text(
        "format_version: 1\n"
        "decisions:\n"
        "  c-0123456789ab:\n"
        "    kind: column_type_changed\n"
        "    table: public.line_items\n"
        "    column: rate\n"
        "    strategy: cast\n"
        "    on_failure: keep_old\n"
        "    decided_by: alice\n"
        "    decided_at: '2026-11-26T10:00:00Z'\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["canonical"])
    assert result.exit_code == 0, result.output
    mapping = json.loads((root / "schemas" / "mapping.json").read_text())
    rate = next(f for f in mapping["collections"]["line_items"]["fields"] if f["column"] == "rate")
    assert rate["cast"] == {"strategy": "cast", "on_failure": "keep_old"} and rate["archive_as"] == "rate__old"
    schema = json.loads((root / "schemas" / "collections" / "line_items.schema.json").read_text())
    assert "rate__old" in schema["properties"] and "rate__old" not in schema["required"]


def test_canonical_command_malformed_decisions_is_one_line(root):
    (root / "schemas" / "decisions.yaml").write_text("format_version: 1\ndecisions: [\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["canonical"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: decisions.yaml:") and len(result.output.strip().splitlines()) == 1


def test_committed_canonical_schemas_and_mapping_are_current(tmp_path):
    """schemas/collections/ and schemas/mapping.json are what the tracked accepted snapshot,
    rules and decisions make today: nobody edited them by hand, nobody forgot to rerun."""
    from etl.formats.decisions import decisions_data
    from etl.stages.canonical import load_accepted
    from etl.formats.canonical import write_canonical
    from etl.model.mapping import build_mapping
    from etl.core.paths import SOURCE_ROOT
    from etl.formats.rules import load_rules

    schemas = SOURCE_ROOT / "schemas"
    if not (schemas / "accepted.json").is_file():
        pytest.skip("no accepted snapshot is tracked")
    mapping = build_mapping(load_accepted(schemas / "accepted.json"), load_rules(schemas / "rules.yaml"),
                            decisions_data(schemas / "decisions.yaml"))
    fresh = tmp_path / "collections"
    write_canonical(mapping, fresh, tmp_path / "mapping.json")
    committed = {p.name: p.read_bytes() for p in (schemas / "collections").glob("*.json")}
    made = {p.name: p.read_bytes() for p in fresh.glob("*.json")}
    stale = sorted(n for n in committed.keys() | made.keys() if committed.get(n) != made.get(n))
    assert not stale, f"out of date (run `make canonical`): {', '.join(stale)}"
    assert (tmp_path / "mapping.json").read_bytes() == (schemas / "mapping.json").read_bytes()
