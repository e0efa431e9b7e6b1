"""Validation: counts, content checksums, canonical schemas, references and validators, checked
against a MongoDB URI (the managed server, or MONGO_TEST_URI) and transformed files on disk."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from bson import Decimal128, Int64
from click.testing import CliRunner

from etl.cli import cli
from etl.core.config import load_config
from etl.core.errors import ValidationFailed
from etl.adapters.mongodb import connect
from etl.stages.rollback import rollback
from etl.stages.validate import content_digest, doc_digest, validate, validate_and_report
from etl.model.references import references_from


def advertisers():
    return [{"_id": i, "name": f"Advertiser {i}"} for i in range(1, 4)]


def campaigns():
    return [{"_id": Int64(100 + i), "name": f"Campaign {i}", "advertiser_id": 1 + i % 3,
             "budget": Decimal128(f"{1000 + i}.50"),
             "starts_at": datetime(2026, 1, 1 + i, tzinfo=timezone.utc),
             "tags": ["a", "b"], "settings": {"pacing": "even", "cap": i}}
            for i in range(10)]


MAPPING = {"format_version": 1, "collections": {
    "advertisers": {"table": "public.advertisers", "id": {"kind": "single", "columns": ["id"]},
                    "fields": [{"name": "_id", "column": "id"}, {"name": "name", "column": "name"}]},
    "campaigns": {"table": "public.campaigns", "id": {"kind": "single", "columns": ["id"]},
                  "fields": [{"name": "_id", "column": "id"}, {"name": "name", "column": "name"},
                             {"name": "advertiser_id", "column": "advertiser_id"}]},
}}
SNAPSHOT = {"format_version": 1, "tables": {
    "public.advertisers": {"foreign_keys": []},
    "public.campaigns": {"foreign_keys": [
        {"name": "campaigns_advertiser_id_fkey", "columns": ["advertiser_id"],
         "ref_table": "public.advertisers", "ref_columns": ["id"]}]},
}}
CAMPAIGN_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "required": ["_id", "name", "advertiser_id"],
    "properties": {"name": {"type": "string", "minLength": 1}, "advertiser_id": {"type": "integer"}},
}


def export_entries() -> dict:
    """What the transform writes into its manifest for these collections: the canonical schema
    and the references of each (from the mapping and the accepted snapshot)."""
    refs, _ = references_from(MAPPING, SNAPSHOT)
    entries = {name: {"references": [{"field": r.field, "target": r.target, "constraint": r.constraint}
                                     for r in refs if r.collection == name]} for name in MAPPING["collections"]}
    entries["campaigns"]["schema"] = CAMPAIGN_SCHEMA
    return entries


@pytest.fixture
def env(tmp_path, monkeypatch, mongo_db, dump_folder):
    """A scratch project with schemas and mapping, a database name, and a loader."""
    uri, db = mongo_db
    root = tmp_path / "root"
    (root / "schemas" / "collections").mkdir(parents=True)
    (root / "schemas" / "mapping.json").write_text(json.dumps(MAPPING))
    (root / "schemas" / "accepted.json").write_text(json.dumps(SNAPSHOT))
    (root / "schemas" / "collections" / "campaigns.schema.json").write_text(json.dumps(CAMPAIGN_SCHEMA))
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", db)
    for key in ("ETL_VALIDATE_SAMPLE", "ETL_ROLLBACK_ON_INVALID"):
        monkeypatch.delenv(key, raising=False)

    class Env:
        folder = root / "data" / "transformed" / db

        def __init__(self):
            self.root, self.uri, self.db = root, uri, db

        def export(self, data, **kwargs):
            dump_folder(self.folder, data, manifest={"database": db}, entries=export_entries(), **kwargs)

        def load(self, data):
            client = connect(uri)
            for name, docs in data.items():
                client[db][name].drop()
                client[db][name].insert_many([dict(d) for d in docs])

        def coll(self, name):
            return connect(uri)[db][name]

    return Env()


def good(env):
    data = {"advertisers": advertisers(), "campaigns": campaigns()}
    env.export(data)
    env.load(data)
    return data


def failing_report(env) -> dict:
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(load_config())
    assert info.value.exit_code == 4
    reports = sorted((env.root / "reports").glob("validation-*.json"))
    assert len(reports) == 1
    return json.loads(reports[0].read_text())


def test_good_data_passes_and_writes_both_reports(env):
    good(env)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert f"{env.db}: 2 collections, 13 documents valid" in result.output
    [report_path] = (env.root / "reports").glob(f"validation-{env.db}-*.json")
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["failures"] == []
    camp = report["collections"]["campaigns"]
    assert camp["count"] == {"expected": 10, "actual": 10, "in_file": 10, "skipped_at_transform": 0, "ok": True}
    assert camp["content"]["expected_sha256"] == camp["content"]["actual_sha256"]
    assert camp["schema"]["checked"] == 10 and camp["schema"]["invalid"] == 0
    assert report["collections"]["advertisers"]["schema"]["note"] == "no canonical schema"
    [ref] = report["references"]
    assert (ref["collection"], ref["field"], ref["references"], ref["checked"], ref["orphans"]) == \
        ("campaigns", "advertiser_id", "advertisers", 10, 0)
    md = report_path.with_suffix(".md").read_text()
    assert "passed" in md and "| campaigns | 10/10 | ok |" in md


def test_deleted_document_is_caught(env):
    good(env)
    env.coll("campaigns").delete_one({"_id": 104})
    report = failing_report(env)
    camp = report["collections"]["campaigns"]
    assert camp["count"]["actual"] == 9 and not camp["count"]["ok"]
    assert (camp["content"]["missing"], camp["content"]["extra"], camp["content"]["modified"]) == (1, 0, 0)
    assert camp["content"]["examples"] == ["missing _id 104"]
    assert report["collections"]["advertisers"]["ok"]


def test_modified_document_is_caught(env):
    good(env)
    env.coll("campaigns").update_one({"_id": 105}, {"$set": {"budget": Decimal128("1005.51")}})
    report = failing_report(env)
    camp = report["collections"]["campaigns"]
    assert camp["count"]["ok"], "a modification keeps the count"
    assert (camp["content"]["missing"], camp["content"]["extra"], camp["content"]["modified"]) == (0, 0, 1)
    assert camp["content"]["examples"] == ["modified _id 105"]
    assert report["failures"] == ["campaigns: content differs (0 missing, 0 extra, 1 modified)"]


def test_a_changed_type_is_a_modification(env):
    # int64 5 and int32 5 compare equal in a query, but the load must keep the type it was given.
    good(env)
    env.coll("advertisers").update_one({"_id": 2}, {"$set": {"name": 5.0}})
    env.coll("advertisers").update_one({"_id": 2}, {"$set": {"name": "Advertiser 2"}})
    assert validate(load_config())["ok"], "the same value again is not a change"
    doc = env.coll("campaigns").find_one({"_id": 103})
    doc["settings"]["cap"] = 3.0
    env.coll("campaigns").delete_one({"_id": 103})
    env.coll("campaigns").insert_one(doc)
    assert isinstance(env.coll("campaigns").find_one({"_id": 103})["settings"]["cap"], float)
    assert validate(load_config())["collections"]["campaigns"]["content"]["modified"] == 1


def test_orphan_reference_is_caught(env):
    data = good(env)
    # Consistent with its files, but pointing at an advertiser that does not exist.
    data["campaigns"][2]["advertiser_id"] = 99
    env.export(data)
    env.load(data)
    report = failing_report(env)
    [ref] = report["references"]
    assert ref["orphans"] == 1 and ref["checked"] == 10
    assert ref["examples"] == ["_id 102: advertiser_id=99"]
    assert report["failures"] == ["campaigns.advertiser_id: 1 orphan references to advertisers"]


def test_schema_violating_document_is_caught(env):
    data = good(env)
    # The transform wrote it and the load stored it faithfully: only the schema check objects.
    data["campaigns"][7]["name"] = ""
    env.export(data)
    env.load(data)
    report = failing_report(env)
    schema = report["collections"]["campaigns"]["schema"]
    assert (schema["checked"], schema["invalid"]) == (10, 1)
    assert schema["examples"][0].startswith("_id 107: name: ")
    assert report["failures"] == ["campaigns: 1 of 10 documents violate the canonical schema"]


def test_sample_limits_the_schema_check(env, monkeypatch):
    good(env)
    monkeypatch.setenv("ETL_VALIDATE_SAMPLE", "4")
    report = validate(load_config())
    assert report["collections"]["campaigns"]["schema"]["checked"] == 4
    assert report["collections"]["campaigns"]["count"]["actual"] == 10, "counts stay complete"


def test_manifest_count_is_what_mongodb_must_hold(env):
    good(env)
    manifest_path = env.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["collections"]["advertisers"].update(count=4, rows=5, skipped=1)
    manifest_path.write_text(json.dumps(manifest))
    report = validate(load_config())
    count = report["collections"]["advertisers"]["count"]
    assert not count["ok"] and count["expected"] == 4 and count["actual"] == 3


VALIDATOR = {"$jsonSchema": {"bsonType": "object", "required": ["name"],
                             "properties": {"name": {"bsonType": "string"}}}}


def test_validator_compliance_is_checked(env, dump_folder):
    data = good(env)
    env.export(data, options={"advertisers": {"validator": VALIDATOR}})
    client = connect(env.uri)
    client[env.db].command({"collMod": "advertisers", "validator": VALIDATOR})
    client.close()
    res = validate(load_config())["collections"]["advertisers"]["validator"]
    assert res == {"status": "ok", "ok": True, "non_compliant": 0}


def test_a_validator_missing_from_the_server_fails(env, dump_folder):
    data = good(env)  # loaded without the validator its metadata names
    env.export(data, options={"advertisers": {"validator": VALIDATOR}})
    report = validate(load_config())
    assert report["collections"]["advertisers"]["validator"]["status"] == "missing"
    assert report["failures"] == ["advertisers: the collection has no validator, its transformed metadata has one"]


def test_cli_failure_is_one_line_with_exit_4(env):
    good(env)
    env.coll("advertisers").delete_many({})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: validation of {env.db} failed: advertisers: 0 documents")
    assert "Traceback" not in result.output


def test_missing_export_is_an_error_not_a_pass(env):
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "manifest.json not found" in result.stderr


def test_digest_ignores_order_but_not_content():
    docs = campaigns()
    reordered = [dict(reversed(list(d.items()))) for d in reversed(docs)]
    assert content_digest(docs) == content_digest(reordered)
    changed = [dict(d) for d in docs]
    changed[0]["budget"] = Decimal128("1000.5")  # same number, other representation
    assert content_digest(docs) != content_digest(changed)
    assert doc_digest({"_id": 1, "n": Int64(5)}) != doc_digest({"_id": 1, "n": 5})


def test_references_skip_what_cannot_be_checked():
    mapping = json.loads(json.dumps(MAPPING))
    mapping["collections"]["advertisers"]["id"] = {"kind": "composite", "columns": ["id", "region"]}
    refs, notes = references_from(mapping, SNAPSHOT)
    assert refs == [] and notes == ["campaigns.advertiser_id -> public.advertisers: not checked, composite reference"]
    del mapping["collections"]["advertisers"]
    refs, notes = references_from(mapping, SNAPSHOT)
    assert refs == [] and "public.advertisers is not loaded" in notes[0]


def test_rollback_on_invalid_restores_the_pre_load_backup(env, dump_folder, monkeypatch):
    data = good(env)
    backup = env.root / "backups" / env.db / "2026-11-26-001"
    dump_folder(backup, data, manifest={"version": "2026-11-26-001", "database": env.db})
    stamp = env.root / ".make" / env.db / "load.stamp"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(json.dumps({"backup_version": "2026-11-26-001"}))
    env.coll("campaigns").delete_many({"_id": {"$in": [100, 101]}})
    monkeypatch.setenv("ETL_ROLLBACK_ON_INVALID", "true")
    cfg = load_config()
    with pytest.raises(ValidationFailed, match="restored backup 2026-11-26-001"):
        validate_and_report(cfg, restore=lambda version: rollback(cfg, env.db, version))
    assert env.coll("campaigns").count_documents({}) == 10
    assert validate(load_config())["ok"]


def test_documents_that_fail_the_validator_are_counted(env):
    data = {"advertisers": advertisers()}
    data["advertisers"][1]["name"] = 2  # loaded past the validator, and faithfully so
    env.export(data)
    client = connect(env.uri)
    try:
        client[env.db].create_collection("advertisers", validator=VALIDATOR)
        coll = client[env.db]["advertisers"]
        coll.insert_many([data["advertisers"][0], data["advertisers"][2]])
        coll.insert_one(data["advertisers"][1], bypass_document_validation=True)
    finally:
        client.close()
    report = validate(load_config(), references=[])
    res = report["collections"]["advertisers"]
    assert res["validator"] == {"status": "failed", "ok": False, "non_compliant": 1}
    assert res["content"]["ok"] and res["count"]["ok"]
    assert report["failures"] == ["advertisers: 1 documents fail the validator"]


def test_unreachable_mongodb_is_one_line_without_the_password(env, monkeypatch):
    from etl.adapters.services import free_port

    good(env)
    monkeypatch.setenv("MONGO_URI", f"mongodb://etl:s3cr3t-pw@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: MongoDB at mongodb://etl:***@127.0.0.1:") and "s3cr3t-pw" not in result.output
    logs = list((env.root / "logs" / "etl").glob("*.log"))
    assert logs and not any("s3cr3t-pw" in p.read_text() for p in logs)


def test_after_load_respects_validate_after_load(env, monkeypatch):
    good(env)
    env.coll("advertisers").delete_many({})
    monkeypatch.setenv("ETL_VALIDATE_AFTER_LOAD", "false")
    result = CliRunner().invoke(cli, ["validate", "--after-load"])
    assert result.exit_code == 0 and "skipped" in result.stdout
    assert not (env.root / "reports").exists()
    assert CliRunner().invoke(cli, ["validate"]).exit_code == 4, "an explicit validate still runs"
    monkeypatch.setenv("ETL_VALIDATE_AFTER_LOAD", "true")
    assert CliRunner().invoke(cli, ["validate", "--after-load"]).exit_code == 4


def test_no_rollback_when_the_load_took_no_backup(env, dump_folder, monkeypatch):
    # The load found nothing to back up (a first load): an older backup is not the state
    # before this load, so it must not be restored.
    good(env)
    dump_folder(env.root / "backups" / env.db / "2026-11-01-001", {"advertisers": advertisers()[:1]})
    stamp = env.root / ".make" / env.db / "load.stamp"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(json.dumps({"backup_version": None}))
    env.coll("advertisers").delete_one({"_id": 3})
    cfg = load_config()
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(cfg, rollback_on_invalid=True, restore=lambda version: rollback(cfg, env.db, version))
    assert "restored" not in str(info.value)
    assert env.coll("advertisers").count_documents({}) == 2
    [report] = (env.root / "reports").glob("validation-*.json")
    assert json.loads(report.read_text())["notes"][-1] == \
        "rollback on invalid: no backup to restore (the load stamp names none)"


def test_documents_without_id_are_matched_by_content(env):
    # A table without a primary key: the file has no _id, the server assigns ObjectIds.
    data = good(env)
    data["sync_log"] = [{"platform": "p", "n": i} for i in range(6)] + [{"platform": "p", "n": 0}]
    env.export(data)
    env.load({"sync_log": data["sync_log"]})
    report = validate(load_config())
    res = report["collections"]["sync_log"]
    assert report["ok"] and res["count"]["in_file"] == 7
    assert res["content"]["note"] == "7 documents without _id in the file, matched by content"
    env.coll("sync_log").delete_one({"n": 0})
    res = validate(load_config())["collections"]["sync_log"]
    assert (res["content"]["missing"], res["content"]["extra"]) == (1, 0)
    assert res["content"]["examples"] == ["1 documents without _id missing"]


def with_source(env, pg, monkeypatch, restored_sha="d" * 64, campaigns_rows=10):
    """A restored PostgreSQL database holding the source tables, recorded as data/restored.json."""
    values = ", ".join(f"({i})" for i in range(campaigns_rows))
    name = pg.create_db(sql="CREATE TABLE advertisers (id int PRIMARY KEY);"
                            "INSERT INTO advertisers VALUES (1), (2), (3);"
                            'CREATE SCHEMA "sales"; CREATE TABLE sales.campaigns (id int PRIMARY KEY);'
                            f"INSERT INTO sales.campaigns VALUES {values};")
    for key, value in pg.env(name).items():
        monkeypatch.setenv(key, value)
    (env.root / "data" / "restored.json").write_text(json.dumps({"database": name, "sha256": restored_sha}))
    manifest_path = env.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source_dump"] = {"file": "data/dumps/x.dump", "sha256": "d" * 64}
    manifest["collections"]["advertisers"]["table"] = "public.advertisers"
    manifest["collections"]["campaigns"]["table"] = "sales.campaigns"
    manifest_path.write_text(json.dumps(manifest))


def test_counts_are_compared_with_the_source_tables(env, pg, monkeypatch):
    good(env)
    with_source(env, pg, monkeypatch)
    report = validate(load_config())
    assert report["ok"], report["failures"]
    assert report["collections"]["campaigns"]["count"]["source_rows"] == 10
    assert not [n for n in report["notes"] if n.startswith("source counts")]


def test_a_row_the_transform_dropped_is_caught_at_the_source(env, pg, monkeypatch):
    good(env)  # files and MongoDB agree with each other…
    with_source(env, pg, monkeypatch, campaigns_rows=11)  # …but the source has one row more
    report = validate(load_config())
    assert report["failures"] == ["campaigns: 10 documents in MongoDB, 11 rows in sales.campaigns"]


def test_source_counts_are_skipped_when_the_restored_dump_moved_on(env, pg, monkeypatch):
    good(env)
    with_source(env, pg, monkeypatch, restored_sha="e" * 64, campaigns_rows=11)
    report = validate(load_config())
    assert report["ok"]
    assert "source counts not checked: the restored dump is not the one the export was made from" in report["notes"]
