"""`etl status` and `etl compare` against MongoDB (the managed server, or MONGO_TEST_URI)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128
from click.testing import CliRunner

from etl.cli import cli
from etl.core.fsutil import write_json_if_changed
from etl.adapters.mongodb import connect
from etl.run.runlog import AUDIT_COLLECTION


@pytest.fixture
def env(tmp_path, monkeypatch, mongo_db):
    uri, db = mongo_db
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", db)
    client = connect(uri)
    yield tmp_path, client, db
    client.close()


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_status_shows_counts_schema_last_run_and_backup(env):
    root, client, db = env
    client[db]["campaigns"].insert_many([{"_id": i, "name": f"c{i}"} for i in range(7)])
    client[db]["users"].insert_one({"_id": 1})
    for run_id, status, code in (("2026-11-25-02-00-00", "ok", 0), ("2026-11-26-02-00-00", "invalid", 4)):
        day = int(run_id[8:10])
        client[db][AUDIT_COLLECTION].insert_one({
            "_id": run_id, "run_id": run_id, "status": status, "exit_code": code,
            "started_at": datetime(2026, 11, day, 2, tzinfo=timezone.utc),
            "ended_at": datetime(2026, 11, day, 2, 5, tzinfo=timezone.utc),
            "log_file": f"logs/etl/{run_id}.log", "report_file": f"reports/run-{run_id}.html",
            "error": "stage validate: 1 orphan" if code else None})
    write_json_if_changed(root / "schemas" / "accepted.json",
                          {"hash": "f" * 64, "taken_at": "2026-11-26T02:00:00Z", "tables": {"public.a": {}}})
    for version in ("2026-11-25-001", "2026-11-26-001", "2026-11-26-002", "not-a-version"):
        (root / "backups" / db / version).mkdir(parents=True)

    result = invoke("status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split() == ["campaigns", "7"] for line in lines), result.output
    assert any(line.split() == ["users", "1"] for line in lines), result.output
    assert f"accepted schema  {'f' * 64}  (1 tables" in result.output
    assert "last run  2026-11-26-02-00-00  invalid (exit 4)" in result.output
    assert "error: stage validate: 1 orphan" in result.output
    assert "latest backup  2026-11-26-002  (3 kept" in result.output

    data = json.loads(invoke("status", "--db", db, "--json").output)
    assert data["database"] == db
    assert data["collections"]["campaigns"] == 7 and data["collections"][AUDIT_COLLECTION] == 2
    assert data["accepted_schema"]["hash"] == "f" * 64
    assert data["last_run"]["run_id"] == "2026-11-26-02-00-00" and data["last_run"]["exit_code"] == 4
    assert data["latest_backup"]["version"] == "2026-11-26-002"


def test_status_on_a_fresh_project_says_none(env):
    _, client, db = env
    client[db].campaigns.insert_one({"_id": 1})
    result = invoke("status", "--db", f"{db}-fresh", "--json")  # the flag wins over MONGO_DB_NAME
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["database"] == f"{db}-fresh"
    assert data["collections"] == {} and data["accepted_schema"] is None
    assert data["last_run"] is None and data["latest_backup"] is None


def test_status_falls_back_to_the_local_audit_copy_and_fails_when_mongo_is_down(env, monkeypatch):
    root, _, db = env
    from etl.adapters.services import free_port

    run_dir = root / ".run" / "runs" / "2026-11-26-03-00-00"
    run_dir.mkdir(parents=True)
    (run_dir / "audit.json").write_text(json.dumps({"run_id": "2026-11-26-03-00-00", "database": db,
                                                    "status": "failed", "exit_code": 1}))
    monkeypatch.setenv("MONGO_URI", f"mongodb://etl:pw-9f8e7d@127.0.0.1:{free_port()}/")
    import etl.adapters.mongodb

    real = etl.adapters.mongodb.connect  # a shorter wait for the server that is not there
    monkeypatch.setattr(etl.adapters.mongodb, "connect", lambda uri, **kw: real(uri, timeout_ms=300, **kw))
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 1
    assert "collections: unknown" in result.output
    assert "last run  2026-11-26-03-00-00  failed (exit 1)" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: MongoDB at mongodb://etl:***@")
    assert "pw-9f8e7d" not in result.output


@pytest.fixture
def two_dbs(env):
    root, client, db = env
    other = f"{db}-b"
    a, b = client[db], client[other]
    docs = [{"_id": i, "name": f"c{i}", "budget": Decimal128(Decimal("10.50")),
             "flight": {"start": datetime(2026, 1, i + 1, tzinfo=timezone.utc), "days": i}} for i in range(6)]
    a.campaigns.insert_many(docs)
    changed = [dict(d) for d in docs[:5]]
    changed[2] = dict(changed[2], name="renamed", flight={"start": docs[2]["flight"]["start"], "days": 99})
    changed[3] = {k: v for k, v in changed[3].items() if k != "budget"}
    b.campaigns.insert_many(changed + [{"_id": 100, "name": "new"}])
    for coll in (a.campaigns, b.campaigns):
        coll.create_index("name")
    b.campaigns.create_index("budget")
    a.users.insert_one({"_id": 1})
    b.platforms.insert_one({"_id": 1})
    yield db, other
    client.drop_database(other)


def test_compare_shows_counts_indexes_and_document_differences(two_dbs):
    a, b = two_dbs
    result = invoke("compare", a, b)
    assert result.exit_code == 0, result.output
    out = result.output
    row = next(line for line in out.splitlines() if line.startswith("campaigns"))
    assert row.split()[:3] == ["campaigns", "6", "6"]
    assert "differ: +budget_1" in row
    assert next(line for line in out.splitlines() if line.startswith("users")).endswith(f"only in {a}")
    assert next(line for line in out.splitlines() if line.startswith("platforms")).endswith(f"only in {b}")
    assert "campaigns _id 2: flight.days, name" in out
    assert "campaigns _id 3: -budget" in out
    assert f"campaigns _id 5: only in {a}" in out
    assert f"campaigns _id 100: only in {b}" in out
    assert "campaigns _id 0" not in out and "campaigns _id 1:" not in out
    assert out.strip().endswith("databases differ")

    data = json.loads(invoke("compare", a, b, "--json").output)
    assert data["identical"] is False
    assert {d["_id"] for d in data["differences"]} == {2, 3, 5, 100}
    assert invoke("compare", a, b, "--exit-code").exit_code == 2


def test_compare_of_identical_copies_says_identical(env):
    _, client, db = env
    other = f"{db}-c"
    try:
        for name in (db, other):
            client[name].campaigns.insert_many([{"_id": i, "v": Decimal128("1.10")} for i in range(3)])
            client[name].campaigns.create_index("v")
        result = invoke("compare", db, other, "--exit-code")
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith("identical")
        assert "documents: no difference among the first 20 _ids" in result.output
    finally:
        client.drop_database(other)


def test_compare_validators_when_the_server_lists_them(env):
    _, client, db = env
    other = f"{db}-v"
    schema_a = {"$jsonSchema": {"bsonType": "object", "required": ["name"]}}
    schema_b = {"$jsonSchema": {"bsonType": "object", "required": ["name", "budget"]}}
    try:
        client[db].create_collection("campaigns", validator=schema_a)
        client[other].create_collection("campaigns", validator=schema_b)
        result = invoke("compare", db, other, "--json")
        row = json.loads(result.output)["collections"][0]
        assert row["validator"] == "differ"
    finally:
        client.drop_database(other)


@pytest.mark.parametrize("args, message", [
    (["bravo-1", "bravo-1"], "name two different databases"),
    (["bravo/1", "bravo-2"], "forbids"),
])
def test_compare_refuses_bad_arguments_in_one_line(env, args, message):
    result = invoke("compare", *args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1
