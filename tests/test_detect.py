"""`etl detect` end to end: real PostgreSQL, the CLI, the files other stages read, and rename
evidence from data already in MongoDB (the managed server, or any server MONGO_TEST_URI names)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.adapters.services import free_port

REQUIRED_KEYS = {"id", "kind", "table", "column", "from", "to", "classification", "reason", "impact",
                 "summary", "details"}

SEED_BEFORE = """
CREATE TABLE campaigns (id bigint PRIMARY KEY, name text NOT NULL, legacy_field text);
CREATE TABLE line_items (id bigint PRIMARY KEY, campaign_id bigint REFERENCES campaigns(id), rate text);
"""
SEED_CHANGES = """
ALTER TABLE campaigns ADD COLUMN performance_score numeric(5,2);
ALTER TABLE campaigns DROP COLUMN legacy_field;
ALTER TABLE line_items ALTER COLUMN rate TYPE numeric(12,4) USING rate::numeric;
"""


def run(*args: str, expect: int | None = 0):
    result = CliRunner().invoke(cli, list(args))
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


def accept(project) -> None:
    """What `decide` does once everything is decided: the current snapshot becomes accepted."""
    shutil.copy(project / "schemas" / "snapshots" / "current.json", project / "schemas" / "accepted.json")


def latest(project) -> dict:
    return json.loads((project / "data" / "changes" / "latest.json").read_text(encoding="utf-8"))


@pytest.fixture
def seed_db(pg, project, monkeypatch):
    db = pg.create_db(sql=SEED_BEFORE)
    monkeypatch.setenv("LOCAL_PG_DB", db)
    return db


def test_first_run_reports_the_initial_state(project, seed_db):
    # `project` copies the working tree's schemas/, which holds an accepted snapshot once the demo ran
    (project / "schemas" / "accepted.json").unlink(missing_ok=True)
    run("snapshot")
    result = run("detect", "--exit-code", expect=2)
    assert "Initial schema" in result.output and "2 tables, 6 fields" in result.output
    doc = latest(project)
    assert doc["initial"] is True and doc["changes"] == [] and doc["from_hash"] is None
    assert set(doc["initial_state"]["tables"]) == {"public.campaigns", "public.line_items"}
    records = sorted((project / "data" / "changes").glob("*.md"))
    assert len(records) == 1 and "Initial schema" in records[0].read_text()


def test_changes_in_the_seed_words_with_files_for_decide(pg, project, seed_db):
    run("snapshot")
    accept(project)
    assert "No schema changes" in run("detect", "--exit-code").output
    pg.execute(seed_db, SEED_CHANGES)
    run("snapshot")
    result = run("detect", "--exit-code", expect=2)
    for line in ("New field: campaigns.performance_score (number)",
                 "Type change: line_items.rate (string → number)",
                 "Dropped: campaigns.legacy_field"):
        assert f"- {line}" in result.output
    assert "Change Impact:" in result.output and "New Optional Field" in result.output

    doc = latest(project)
    assert doc["initial"] is False and doc["to_hash"] != doc["from_hash"]
    assert {c["kind"] for c in doc["changes"]} == {"column_added", "column_removed", "column_type_changed"}
    for change in doc["changes"]:
        assert REQUIRED_KEYS <= set(change) and change["table"].startswith("public.")
        assert change["classification"] in ("safe", "review")
    assert doc["counts"] == {"safe": 1, "review": 2}

    # the same changes a second time: latest.json untouched, a second dated record
    latest_file = project / "data" / "changes" / "latest.json"
    mtime = latest_file.stat().st_mtime_ns
    run("detect")
    assert latest_file.stat().st_mtime_ns == mtime
    records = sorted((project / "data" / "changes").glob("2*.json"))
    assert len(records) == 3
    assert json.loads(records[-1].read_text())["detected_at"].endswith("Z")
    assert "| Type change: line_items.rate (string → number) | review |" in records[-1].with_suffix(".md").read_text()


def test_json_output_is_the_latest_document(pg, project, seed_db):
    run("snapshot")
    accept(project)
    pg.execute(seed_db, SEED_CHANGES)
    run("snapshot")
    result = run("detect", "--json", "--exit-code", expect=2)
    assert json.loads(result.stdout) == latest(project)


def test_strict_mode_makes_every_change_need_review(pg, project, seed_db, monkeypatch):
    run("snapshot")
    accept(project)
    pg.execute(seed_db, "ALTER TABLE campaigns ADD COLUMN performance_score numeric(5,2)")
    run("snapshot")
    monkeypatch.setenv("ETL_SCHEMA_STRICT_MODE", "true")
    run("detect")
    doc = latest(project)
    assert doc["strict_mode"] is True
    assert [c["classification"] for c in doc["changes"]] == ["review"]
    run("detect", "--no-strict")
    assert [c["classification"] for c in latest(project)["changes"]] == ["safe"]


@pytest.mark.parametrize("content,message", [
    ("{\"format_version\": 1, \"tab", "is corrupt"),
    (json.dumps({"format_version": 7, "tables": {}, "hash": "h"}), "format_version 7"),
])
def test_bad_accepted_snapshot_is_one_line(project, seed_db, content, message):
    run("snapshot")
    (project / "schemas" / "accepted.json").write_text(content)
    result = run("detect", expect=1)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: snapshot ") and message in lines[0]


def test_detect_without_a_snapshot_says_what_to_run(project, seed_db):
    result = run("detect", expect=1)
    assert "run `etl snapshot` first" in result.output and "Traceback" not in result.output


EVIDENCE_SCHEMA = """
CREATE TABLE advertisers (id integer PRIMARY KEY, legacy_name text NOT NULL, budget numeric(12,2));
INSERT INTO advertisers SELECT i, 'adv ' || i, i * 10.5 FROM generate_series(1, 5) i;
CREATE TABLE flights (campaign_id integer, flight_no integer, label text, PRIMARY KEY (campaign_id, flight_no));
INSERT INTO flights VALUES (1, 1, 'spring'), (1, 2, 'summer'), (2, 1, 'autumn');
CREATE TABLE notes (id integer PRIMARY KEY, body text);
CREATE TABLE media_buys (id integer PRIMARY KEY, amount numeric(12,2), channel text);
INSERT INTO media_buys VALUES (1, 100.00, 'tv'), (2, 250.50, 'radio');
"""
EVIDENCE_RENAMES = """
ALTER TABLE advertisers RENAME COLUMN legacy_name TO display_name;
ALTER TABLE flights RENAME COLUMN label TO title;
ALTER TABLE notes RENAME COLUMN body TO text;
ALTER TABLE media_buys RENAME TO purchases;
"""


def test_rename_candidates_carry_data_evidence_from_mongodb(pg, project, monkeypatch, mongo_db):
    from bson import Decimal128

    from etl.adapters.mongodb import connect

    uri, dbname = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", dbname)
    db = pg.create_db(sql=EVIDENCE_SCHEMA)
    monkeypatch.setenv("LOCAL_PG_DB", db)
    run("snapshot")
    accept(project)
    pg.execute(db, EVIDENCE_RENAMES)
    run("snapshot")

    # What the previous load left in MongoDB; advertiser 3 has since been renamed in PostgreSQL.
    client = connect(uri)
    target = client[dbname]
    target["advertisers"].insert_many([{"_id": i, "legacy_name": "old name" if i == 3 else f"adv {i}",
                                        "budget": Decimal128(str(i * 10.5))} for i in range(1, 6)])
    target["flights"].insert_many([
        {"_id": {"campaign_id": 1, "flight_no": 1}, "label": "spring"},
        {"_id": {"campaign_id": 1, "flight_no": 2}, "label": "summer"},
        {"_id": {"campaign_id": 2, "flight_no": 1}, "label": "autumn"}])
    target["media_buys"].insert_many([{"_id": 1, "amount": Decimal128("100.00"), "channel": "tv"},
                                      {"_id": 2, "amount": Decimal128("250.50"), "channel": "radio"},
                                      {"_id": 9, "amount": Decimal128("1.00"), "channel": "gone"}])

    result = run("detect", expect=0)
    renames = {(c["table"], c["column"]): c for c in latest(project)["changes"]
               if c["kind"] in ("column_renamed", "table_renamed")}
    assert set(renames) == {("public.advertisers", "legacy_name"), ("public.flights", "label"),
                            ("public.notes", "body"), ("public.media_buys", None)}
    assert all(c["classification"] == "review" for c in renames.values())

    adv = renames[("public.advertisers", "legacy_name")]["details"]["evidence"]
    assert adv["type"]["match"] == "same" and adv["position"]["same"] is True
    assert adv["data"] == {"available": True, "source": "mongodb", "collection": "advertisers",
                           "sampled": 5, "found_in_postgres": 5, "equal": 4}
    flights = renames[("public.flights", "label")]["details"]["evidence"]["data"]
    assert (flights["sampled"], flights["equal"]) == (3, 3)
    notes = renames[("public.notes", "body")]["details"]["evidence"]["data"]
    assert notes["available"] is False and "'notes'" in notes["reason"]
    table = renames[("public.media_buys", None)]["details"]["evidence"]
    assert table["column_similarity"] == 1.0
    assert (table["data"]["sampled"], table["data"]["found_in_postgres"], table["data"]["equal"]) == (3, 2, 2)
    assert "4/5 sampled values equal in MongoDB advertisers" in result.output
    assert "no data evidence: no documents with field 'body'" in result.output


def test_rename_evidence_when_mongodb_is_unreachable(pg, project, monkeypatch):
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{free_port()}/")
    db = pg.create_db(sql="CREATE TABLE notes (id integer PRIMARY KEY, body text);")
    monkeypatch.setenv("LOCAL_PG_DB", db)
    run("snapshot")
    accept(project)
    pg.execute(db, "ALTER TABLE notes RENAME COLUMN body TO text")
    run("snapshot")
    run("detect", "--exit-code", expect=2)
    [change] = latest(project)["changes"]
    data = change["details"]["evidence"]["data"]
    assert change["kind"] == "column_renamed" and data["available"] is False
    assert "not reachable" in data["reason"]


def test_a_renamed_index_changes_the_hash_but_nothing_documents_depend_on(pg, project, seed_db):
    pg.execute(seed_db, "CREATE INDEX ix_one ON campaigns (name)")
    run("snapshot")
    accept(project)
    pg.execute(seed_db, "ALTER INDEX ix_one RENAME TO ix_two")
    run("snapshot")
    result = run("detect", "--exit-code")
    doc = latest(project)
    assert doc["from_hash"] != doc["to_hash"] and doc["changes"] == []
    assert "No schema changes that documents depend on" in result.output
    [record] = sorted((project / "data" / "changes").glob("*.md"))[-1:]
    assert "No schema changes that documents depend on" in record.read_text()


def test_values_compare_alike_from_postgresql_and_mongodb():
    import datetime as dt
    import uuid
    from decimal import Decimal

    from bson import Binary, Decimal128

    from etl.stages.detect import _comparable

    uid = uuid.uuid4()
    utc = dt.timezone.utc
    pairs = [(Decimal("10.50"), Decimal128("10.5")), (3, 3.0),
             (dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, tzinfo=utc)),
             (dt.datetime(2026, 1, 2, 3, 4), dt.datetime(2026, 1, 2, 3, 4, tzinfo=utc)),
             (uid, Binary(uid.bytes, 4)), ([Decimal("1.0"), None], [Decimal128("1"), None]),
             ({"a": Decimal("2")}, {"a": 2})]
    # PostgreSQL keeps microseconds, a BSON date milliseconds (the transform truncates)
    pairs += [(dt.datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=utc), dt.datetime(2026, 1, 2, 3, 4, 5, 678000)),
              (dt.datetime(2026, 1, 2, 4, 4, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
               dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc))]
    for pg_value, mongo_value in pairs:
        assert _comparable(pg_value) == _comparable(mongo_value), (pg_value, mongo_value)
    assert _comparable(Decimal("10.5")) != _comparable("10.5")
    assert _comparable(dt.datetime(2026, 1, 2, 3, 4, 5, 679000)) != _comparable(dt.datetime(2026, 1, 2, 3, 4, 5, 678000))


PRECISION_SCHEMA = """
CREATE TABLE orgs (id integer PRIMARY KEY, name text);
INSERT INTO orgs SELECT i, 'org ' || i FROM generate_series(1, 3) i;
CREATE TABLE teams (id integer PRIMARY KEY, org_ref integer REFERENCES orgs(id), legacy_size integer);
CREATE INDEX teams_org_idx ON teams (org_ref);
INSERT INTO teams SELECT i, 1 + i % 3, i * 10 FROM generate_series(1, 6) i;
"""
PRECISION_RELEASE = """
ALTER TABLE teams RENAME COLUMN org_ref TO org_id;
ALTER TABLE teams DROP COLUMN legacy_size;
ALTER TABLE teams ADD COLUMN head_count integer;
UPDATE teams SET head_count = id + 100;
"""


def test_detect_reports_what_it_folded_and_suppressed(pg, project, monkeypatch, mongo_db):
    from etl.adapters.mongodb import connect

    uri, dbname = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", dbname)
    db = pg.create_db(sql=PRECISION_SCHEMA)
    monkeypatch.setenv("LOCAL_PG_DB", db)
    run("snapshot")
    accept(project)
    pg.execute(db, PRECISION_RELEASE)
    run("snapshot")
    # The previous load: teams as the default mapping writes them.
    connect(uri)[dbname]["teams"].insert_many(
        [{"_id": i, "org_ref": 1 + i % 3, "legacy_size": i * 10} for i in range(1, 7)])

    result = run("detect", expect=0)
    doc = latest(project)
    assert [(c["kind"], c["column"]) for c in doc["changes"]] == [
        ("column_renamed", "org_ref"), ("column_removed", "legacy_size"), ("column_added", "head_count")]
    assert doc["precision"] == {
        "reported": 3, "folded": 4, "suppressed": 1,
        "folded_by_reason": {"follows a column rename": 4},
        "suppressed_by_reason": {"rename refuted by the data in MongoDB": 1}}
    rename = doc["changes"][0]["details"]
    assert rename["evidence"]["data"]["equal"] == 6
    assert sorted(f["name"] for f in rename["folded"]) == ["teams_org_idx", "teams_org_ref_fkey"]
    [refuted] = doc["changes"][1]["details"]["not_a_rename"]
    assert refuted["column"] == "head_count" and refuted["evidence"]["data"]["equal"] == 0
    assert ("Precision: 3 changes reported; 4 changes folded into the change they follow (follows a column "
            "rename: 4); 1 rename candidate not proposed (rename refuted by the data in MongoDB: 1).") in result.output
    assert "folded in (2, not reported again): foreign key teams_org_ref_fkey, index teams_org_idx" in result.output
    assert "not a rename: head_count (refuted by the data: 0 of 6 values equal in MongoDB teams)" in result.output
    [record] = sorted((project / "data" / "changes").glob("*.md"))[-1:]
    assert "Precision: 3 changes reported; 4 changes folded" in record.read_text()
