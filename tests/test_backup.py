"""Backups: mongodump layout with indexes and options, verified manifests, retention."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128
from click.testing import CliRunner

from etl.adapters.mongodb.dumps import take_backup
from etl.formats.backups import read_backup, versions
from etl.formats.dumpdir import iter_docs, read_metadata
from etl.cli import cli
from etl.core.config import load_config
from etl.core.errors import BackupError
from etl.core.fsutil import sha256_file
from etl.adapters.mongodb import connect
from etl.core.paths import paths


@pytest.fixture
def target(project, mongo_db, monkeypatch):
    uri, name = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", name)
    client = connect(uri)
    yield load_config(), client[name]
    client.close()


def test_backup_holds_documents_indexes_and_a_verifiable_manifest(target):
    cfg, mdb = target
    docs = [{"_id": i, "amount": Decimal128(Decimal(f"{i}.10")), "at": dt.datetime(2024, 1, i + 1, tzinfo=dt.timezone.utc),
             "tags": ["a", "b"], "nested": {"k": [1, {"x": None}]}} for i in range(5)]
    mdb.campaigns.insert_many(docs)
    mdb.campaigns.create_index([("amount", 1)], name="amount_1", unique=True)
    mdb.other.insert_one({"_id": "x"})
    version = take_backup(cfg, mdb.name, ["campaigns", "missing"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-001", version)
    backup = read_backup(mdb.name, version)
    assert backup.collections == ["campaigns"]
    assert list(backup.documents("campaigns")) == docs
    meta = read_metadata(backup.folder / "campaigns.metadata.json")
    assert {ix["name"] for ix in meta["indexes"]} == {"_id_", "amount_1"}
    assert next(ix for ix in meta["indexes"] if ix["name"] == "amount_1")["unique"] is True
    manifest = backup.manifest
    assert manifest["database"] == mdb.name and manifest["version"] == version
    entry = manifest["collections"]["campaigns"]
    assert entry["count"] == 5
    assert entry["sha256"] == sha256_file(backup.folder / "campaigns.bson")
    assert manifest["size"] == (backup.folder / "campaigns.bson").stat().st_size

    with open(backup.folder / "campaigns.bson", "r+b") as fh:
        fh.seek(20)
        fh.write(b"\xff")
    with pytest.raises(BackupError, match="sha256"):
        read_backup(mdb.name, version)


def test_nothing_to_back_up_is_no_version(target):
    cfg, mdb = target
    assert take_backup(cfg, mdb.name, ["nothing"]) is None
    assert versions(mdb.name) == []


def test_retention_keeps_the_newest_versions(target, monkeypatch):
    monkeypatch.setenv("MONGO_BACKUP_RETENTION", "2")
    cfg, mdb = target
    cfg = load_config()
    mdb.a.insert_one({"_id": 1})
    made = [take_backup(cfg, mdb.name) for _ in range(4)]
    assert [v[-3:] for v in made] == ["001", "002", "003", "004"]
    assert versions(mdb.name) == made[-2:]
    assert not [p for p in (paths.backups / mdb.name).iterdir() if p.name.startswith(".")]


def test_cli_and_malformed_versions(target):
    cfg, mdb = target
    mdb.a.insert_one({"_id": 1, "v": "x"})
    res = CliRunner().invoke(cli, ["backup", "--db", mdb.name])
    assert res.exit_code == 0, res.output
    version = versions(mdb.name)[-1]
    assert version in res.output
    assert list(iter_docs(paths.backups / mdb.name / version / "a.bson")) == [{"_id": 1, "v": "x"}]
    with pytest.raises(BackupError, match="malformed"):
        read_backup(mdb.name, "../../etc")
