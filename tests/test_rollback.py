"""Backup versions: listing, refusing bad versions, and restoring collections with their
indexes and validators, verified by content checksums, against a MongoDB URI."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest
from bson import Decimal128, Int64
from click.testing import CliRunner
from pymongo.errors import DuplicateKeyError

from etl.adapters.mongodb.dumps import take_backup
from etl.cli import cli
from etl.core.config import load_config
from etl.core.errors import BackupError
from etl.core.hashing import content_hash
from etl.adapters.mongodb import connect
from etl.stages.rollback import rollback
from etl.formats.backups import check_version, list_versions
from etl.stages.validate import collection_digest, server_validator

VERSION = "2026-11-20-001"


def docs(n: int, tag: str = "v1"):
    return [{"_id": Int64(i), "name": f"{tag}-{i}", "budget": Decimal128(f"{i}.25"),
             "day": datetime(2026, 1, 1 + i % 28, tzinfo=timezone.utc), "tags": [tag, i]}
            for i in range(n)]


INDEXES = {"campaigns": [{"v": 2, "key": {"name": 1}, "name": "name_1", "unique": True},
                         {"v": 2, "key": {"day": -1, "budget": 1}, "name": "day_-1_budget_1"}]}
VALIDATOR = {"$jsonSchema": {"bsonType": "object", "required": ["name"],
                             "properties": {"name": {"bsonType": "string"}}}}


@pytest.fixture
def env(tmp_path, monkeypatch, mongo_db):
    uri, db = mongo_db
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", db)
    monkeypatch.setenv("ETL_BATCH_SIZE", "7")  # several batches per collection
    return tmp_path, uri, db


def make_backup(env, dump_folder, version=VERSION, data=None, **kw):
    root, _, db = env
    data = data if data is not None else {"campaigns": docs(20), "advertisers": docs(3, "adv")}
    return dump_folder(root / "backups" / db / version, data, indexes=INDEXES,
                       manifest={"version": version, "database": db,
                                 "created_at": "2026-11-20T02:00:00+00:00", "schema_hash": "ab" * 32,
                                 "source_dump": {"file": "media_tool-20261120.dump"}}, **kw)


def state(uri: str, db: str) -> dict:
    """What a rollback must reproduce: per collection, content checksum, indexes and validator."""
    mdb = connect(uri)[db]
    out = {}
    for name in sorted(n for n in mdb.list_collection_names() if not n.startswith("system.")):
        indexes = sorted((ix["name"], json.dumps(ix["key"], default=str), bool(ix.get("unique")))
                         for ix in mdb[name].list_indexes())
        out[name] = {"digest": collection_digest(mdb[name]).__dict__, "indexes": indexes,
                     "validator": content_hash(server_validator(mdb, name))}
    return out


@pytest.mark.parametrize("bad", ["../x", "a;b", "2025-06-28-1", "2025-06-28-001/..", "", "2025-06-28-001\n"])
def test_malformed_versions_are_refused_with_one_line(env, bad):
    result = CliRunner().invoke(cli, ["rollback", "--version", bad, "--yes"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: malformed backup version"), result.stderr
    with pytest.raises(BackupError):
        check_version(bad)


def test_unknown_version_is_refused(env, dump_folder):
    make_backup(env, dump_folder)
    result = CliRunner().invoke(cli, ["rollback", "--version", "2026-11-20-002", "--yes"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: no backup 2026-11-20-002 of {env[2]} "
                                      "(`make list-versions` lists them)")


def test_list_versions_shows_each_backup(env, dump_folder):
    make_backup(env, dump_folder)
    make_backup(env, dump_folder, "2026-11-21-001", data={"campaigns": docs(5)})
    (env[0] / "backups" / env[2] / "not-a-version").mkdir()
    result = CliRunner().invoke(cli, ["list-versions", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["version"] for r in rows] == [VERSION, "2026-11-21-001"]
    first = rows[0]
    assert first["database"] == env[2] and first["created_at"] == "2026-11-20T02:00:00+00:00"
    assert first["counts"] == {"advertisers": 3, "campaigns": 20} and first["documents"] == 23
    assert first["source_dump"] == "media_tool-20261120.dump" and first["schema_hash"] == "ab" * 32
    assert first["size"] > 0
    table = CliRunner().invoke(cli, ["list-versions", "--db", env[2]]).stdout.splitlines()
    assert table[0].split()[:3] == ["version", "database", "created"]
    assert table[1].split()[:5] == [VERSION, env[2], "2026-11-20T02:00:00", "2", "23"]


def test_rollback_needs_yes_without_a_terminal(env, dump_folder):
    make_backup(env, dump_folder)
    result = CliRunner().invoke(cli, ["rollback", "--version", VERSION])
    assert result.exit_code == 1
    assert "needs --yes when not run at a terminal" in result.stderr
    assert connect(env[1])[env[2]].list_collection_names() == []


def test_corrupt_backup_is_refused_before_mongodb_is_touched(env, dump_folder):
    folder = make_backup(env, dump_folder)
    data = bytearray((folder / "campaigns.bson").read_bytes())
    data[-3] ^= 0xFF
    (folder / "campaigns.bson").write_bytes(bytes(data))
    with pytest.raises(BackupError, match="campaigns.bson does not match the sha256 in its manifest"):
        rollback(load_config(), env[2], VERSION)
    assert connect(env[1])[env[2]].list_collection_names() == []


def test_restore_into_an_empty_database_reproduces_the_backup(env, dump_folder):
    make_backup(env, dump_folder)
    result = CliRunner().invoke(cli, ["rollback", "--version", VERSION, "--yes"])
    assert result.exit_code == 0, result.output
    assert "campaigns: 20 documents, 2 indexes, checksum verified" in result.stdout
    root, uri, db = env
    mdb = connect(uri)[db]
    assert sorted(mdb.list_collection_names()) == ["advertisers", "campaigns"], "no staging left behind"
    assert mdb["campaigns"].find_one({"_id": 3}) == docs(20)[3]
    with pytest.raises(DuplicateKeyError):  # the unique index came back
        mdb["campaigns"].insert_one({"_id": 99, "name": "v1-3"})


def test_backup_load_rollback_restores_collections_indexes_and_validators(env, dump_folder):
    root, uri, db = env
    cfg = load_config()
    mdb = connect(uri)[db]
    mdb.create_collection("campaigns", validator=VALIDATOR)
    mdb["campaigns"].insert_many(docs(20))
    mdb["campaigns"].create_index([("name", 1)], name="name_1", unique=True)
    mdb["advertisers"].insert_many(docs(3, "adv"))
    before = state(uri, db)
    version = take_backup(cfg, db, ["advertisers", "campaigns"])

    # The next load: other documents, another index set, one collection more.
    mdb["campaigns"].drop()
    mdb["campaigns"].insert_many(docs(30, "v2"))
    mdb["campaigns"].create_index([("day", 1)], name="day_1")
    mdb["advertisers"].delete_many({"_id": 1})
    mdb["platforms"].insert_one({"_id": 1})
    loaded = state(uri, db)
    assert loaded["campaigns"] != before["campaigns"]

    result = rollback(cfg, db, version)
    after = state(uri, db)
    assert after["campaigns"] == before["campaigns"] and after["advertisers"] == before["advertisers"]
    assert result.untouched == ["platforms"] and "platforms" in after

    # The rollback backed up what it replaced, so it can be undone.
    assert result.pre_rollback_backup and result.pre_rollback_backup != version
    assert result.pre_rollback_backup in [v["version"] for v in list_versions(db)]
    rollback(cfg, db, result.pre_rollback_backup)
    assert state(uri, db) == loaded


def test_retention_during_the_pre_rollback_backup_cannot_remove_the_version(env, dump_folder, monkeypatch):
    root, uri, db = env
    make_backup(env, dump_folder)
    connect(uri)[db]["campaigns"].insert_many(docs(4, "v2"))
    monkeypatch.setenv("MONGO_BACKUP_RETENTION", "1")
    result = rollback(load_config(), db, VERSION)
    assert not (root / "backups" / db / VERSION).exists(), "pruned by the pre-rollback backup"
    assert [v["version"] for v in list_versions(db)] == [result.pre_rollback_backup]
    assert result.collections["campaigns"]["count"] == 20
    assert connect(uri)[db]["campaigns"].count_documents({}) == 20
    assert not [p for p in (root / "backups" / db).iterdir() if p.name.startswith(".")], "pinned copy removed"


def test_load_then_validate_failure_rolls_back_to_the_pre_load_backup(env, dump_folder, monkeypatch):
    # The stages as `make` chains them: load v1, load v2 (backed up first), validate v2 finds a
    # broken document and restores what the second load replaced.
    from etl.core.errors import ValidationFailed
    from etl.stages.load import load
    from etl.stages.validate import validate_and_report

    root, uri, db = env
    folder = root / "data" / "transformed" / db
    v1 = {"campaigns": docs(20), "advertisers": docs(3, "adv")}
    dump_folder(folder, v1, indexes=INDEXES, manifest={"database": db})
    load(load_config())
    assert validate_and_report(load_config())[0]["ok"]
    after_v1 = state(uri, db)

    dump_folder(folder, {"campaigns": docs(25, "v2"), "advertisers": docs(4, "adv")}, indexes=INDEXES,
                manifest={"database": db})
    pre_load = load(load_config()).backup_version
    assert pre_load and json.loads((root / ".make" / db / "load.stamp").read_text())["backup_version"] == pre_load
    connect(uri)[db]["campaigns"].delete_one({"_id": 24})
    monkeypatch.setenv("ETL_ROLLBACK_ON_INVALID", "true")
    cfg = load_config()
    with pytest.raises(ValidationFailed, match=f"restored backup {pre_load}"):
        validate_and_report(cfg, restore=lambda version: rollback(cfg, db, version))
    assert state(uri, db) == after_v1


def test_rollback_refuses_while_a_run_holds_the_lock(env, dump_folder, monkeypatch):
    from etl.core import lock

    make_backup(env, dump_folder)
    monkeypatch.delenv("ETL_RUN_ID", raising=False)
    with lock.acquire("2026-11-26-10-00-00"):
        result = CliRunner().invoke(cli, ["rollback", "--version", VERSION, "--yes"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: another run holds the lock: pid {os.getpid()}")
    assert connect(env[1])[env[2]].list_collection_names() == []
    # A stage of that run (validate's rollback on invalid) runs under the run's lock.
    monkeypatch.setenv("ETL_RUN_ID", "2026-11-26-10-00-00")
    with lock.acquire("2026-11-26-10-00-00"):
        assert rollback(load_config(), env[2], VERSION).collections["campaigns"]["count"] == 20
