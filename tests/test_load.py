"""Load: staging + swap (atomic), incremental upserts, prune, parallel databases, full refresh."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from etl.stages import load as load_mod
from etl.formats.dumpdir import MANIFEST_FORMAT, BsonWriter, metadata, write_manifest, write_metadata
from etl.cli import cli
from etl.core.config import load_config
from etl.core.errors import LoadError
from etl.core.fsutil import read_json
from etl.stages.load import load
from etl.adapters.mongodb import connect
from etl.core.paths import paths


def make_transformed(db: str, collections: dict[str, list[dict]], indexes: dict[str, list] | None = None,
                     id_kind: str = "single", entries: dict[str, dict] | None = None) -> None:
    """A transform output folder as the transform writes it (`entries`: more of a collection's
    manifest entry, such as its archived fields)."""
    folder = paths.transformed / db
    listed = {}
    for name, docs in collections.items():
        with BsonWriter(folder / f"{name}.bson") as writer:
            for doc in docs:
                writer.write(doc)
            count, sha, size = writer.commit()
        meta_sha = write_metadata(folder, name, metadata(name, (indexes or {}).get(name, [])))
        listed[name] = {"name": name, "count": count, "sha256": sha, "metadata_sha256": meta_sha,
                        "bytes": size, "id": id_kind, **(entries or {}).get(name, {})}
    write_manifest(folder, {"format_version": MANIFEST_FORMAT, "version": "v1", "database": db, "collections": listed})


@pytest.fixture
def target(project, mongo_db, monkeypatch):
    uri, name = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", name)
    monkeypatch.setenv("ETL_BATCH_SIZE", "10")
    client = connect(uri)
    yield load_config(), client[name]
    client.close()


def _all(coll):
    return sorted(coll.find({}), key=lambda d: d["_id"])


def test_full_load_swaps_in_complete_collections_with_indexes(target):
    cfg, mdb = target
    mdb.campaigns.insert_many([{"_id": 1, "name": "old"}, {"_id": 99, "name": "local only"}])
    make_transformed(mdb.name, {"campaigns": [{"_id": i, "name": f"c{i}", "code": f"k{i}"} for i in range(25)]},
                     {"campaigns": [{"name": "code_1", "keys": [["code", 1]], "unique": True}]})
    result = load(cfg, mdb.name)
    assert result.counts == {"campaigns": 25}
    docs = _all(mdb.campaigns)
    assert [d["_id"] for d in docs] == list(range(25)) and docs[1]["name"] == "c1"
    assert "code_1" in mdb.campaigns.index_information()
    assert not [n for n in mdb.list_collection_names() if "__staging_" in n]
    stamp = read_json(paths.make_stamps / mdb.name / "load.stamp")
    assert stamp["backup_version"] == result.backup_version and result.backup_version
    assert stamp["counts"] == {"campaigns": 25}


def test_partial_unique_index_allows_many_nulls_and_still_refuses_duplicates(target):
    # PostgreSQL's UNIQUE (platform_id, external_id) allows any number of NULL external_ids;
    # the mapping expresses that as a partial index, which the load must create as such.
    cfg, mdb = target
    partial = {"name": "platform_id_1_external_id_1", "keys": [["platform_id", 1], ["external_id", 1]],
               "unique": True, "partialFilterExpression": {"external_id": {"$type": "string"}}}
    docs = [{"_id": i, "platform_id": 1, "external_id": None} for i in range(5)]
    docs += [{"_id": 10, "platform_id": 1, "external_id": "x-1"}]
    make_transformed(mdb.name, {"media_buys": docs}, {"media_buys": [partial]})
    assert load(cfg, mdb.name).counts == {"media_buys": 6}
    info = mdb.media_buys.index_information()["platform_id_1_external_id_1"]
    assert info.get("partialFilterExpression") == {"external_id": {"$type": "string"}}

    make_transformed(mdb.name, {"media_buys": docs + [{"_id": 11, "platform_id": 1, "external_id": "x-1"}]},
                     {"media_buys": [partial]})
    with pytest.raises(LoadError) as duplicate:
        load(cfg, mdb.name)
    line = duplicate.value.line()
    assert line.startswith("media_buys: building its indexes failed: the server said: E11000 duplicate key")
    assert "x-1" in line and line.endswith("(old collections untouched, staging dropped)")
    assert mdb.media_buys.count_documents({}) == 6


def test_a_load_killed_between_batches_leaves_the_previous_collections_complete(target, monkeypatch):
    cfg, mdb = target
    old_a = [{"_id": i, "v": "old"} for i in range(7)]
    old_b = [{"_id": i, "w": "old"} for i in range(3)]
    mdb.a.insert_many(old_a)
    mdb.b.insert_many(old_b)
    make_transformed(mdb.name, {"a": [{"_id": i, "v": "new"} for i in range(30)],
                                "b": [{"_id": i, "w": "new"} for i in range(30)]})
    calls = {"n": 0}
    real = load_mod.insert_batch

    def dying(staging, name, docs):
        calls["n"] += 1
        if calls["n"] == 5:  # a's three batches went in, b's second one dies
            raise KeyboardInterrupt("killed")
        return real(staging, name, docs)

    monkeypatch.setattr(load_mod, "insert_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        load(cfg, mdb.name, backup=False)
    assert _all(mdb.a) == old_a and _all(mdb.b) == old_b
    assert sorted(mdb.list_collection_names()) == ["a", "b"]

    # A failure the code expects (the server refusing a batch) is one line, same guarantee.
    calls["n"] = 0

    def refusing(staging, name, docs):
        calls["n"] += 1
        if calls["n"] == 2:
            from pymongo.errors import BulkWriteError

            raise BulkWriteError({"writeErrors": [{"errmsg": "E11000 duplicate key"}]})
        return real(staging, name, docs)

    monkeypatch.setattr(load_mod, "insert_batch", refusing)
    with pytest.raises(LoadError) as info:
        load(cfg, mdb.name, backup=False)
    assert "old collections untouched" in str(info.value)
    assert _all(mdb.a) == old_a and _all(mdb.b) == old_b

    # A server that acknowledges fewer documents than were sent: no swap either.
    def short(staging, name, docs):
        return real(staging, name, docs) - (1 if name == "b" else 0)

    monkeypatch.setattr(load_mod, "insert_batch", short)
    with pytest.raises(LoadError, match="b: the server acknowledged 27 documents into staging, the manifest says 30"):
        load(cfg, mdb.name, backup=False)
    assert _all(mdb.a) == old_a and _all(mdb.b) == old_b


def test_incremental_keeps_local_documents_and_prune_removes_them(target):
    cfg, mdb = target
    mdb.items.insert_many([{"_id": 1, "v": "old"}, {"_id": 500, "v": "local test data"}])
    make_transformed(mdb.name, {"items": [{"_id": i, "v": f"new{i}"} for i in range(1, 21)]})
    result = load(cfg, mdb.name, mode="incremental")
    assert result.counts == {"items": 20}
    docs = {d["_id"]: d["v"] for d in mdb.items.find({})}
    assert docs[1] == "new1" and docs[500] == "local test data" and len(docs) == 21

    result = load(cfg, mdb.name, mode="incremental", prune=True, backup=False)
    assert result.pruned == {"items": 1}
    assert sorted(d["_id"] for d in mdb.items.find({})) == list(range(1, 21))


def test_incremental_loads_tables_without_a_key_in_full(target):
    cfg, mdb = target
    mdb.loose.insert_many([{"x": 1}, {"x": 2}, {"x": 3}])
    make_transformed(mdb.name, {"loose": [{"x": 1}, {"x": 1}]}, id_kind="none")
    result = load(cfg, mdb.name, mode="incremental", backup=False)
    assert mdb.loose.count_documents({}) == 2
    assert any("no primary key" in n for n in result.notes)


def test_incremental_load_migrates_local_only_documents_once(target):
    # decide accepted a rename (name -> title): the transform already writes `title`, and the
    # incremental load's migration brings the documents that exist only here along.
    from etl.adapters.mongodb.migrations import RECORDS
    from etl.formats.migration import migrations_dir, write_script
    from etl.model.migration import Step

    cfg, mdb = target
    mdb.campaigns.insert_many([{"_id": 1, "name": "old"}, {"_id": 99, "name": "local only"}])
    write_script(migrations_dir() / "2026-11-26-000000.js",
                 [Step("updateMany", "campaigns", filter={"name": {"$exists": True}},
                       update={"$rename": {"name": "title"}})], ["schema aaaa -> bbbb"])
    make_transformed(mdb.name, {"campaigns": [{"_id": 1, "title": "new"}]})

    result = load(cfg, mdb.name, mode="incremental")

    assert mdb.campaigns.find_one({"_id": 99}) == {"_id": 99, "title": "local only"}
    assert mdb.campaigns.find_one({"_id": 1}) == {"_id": 1, "title": "new"}
    assert [m["status"] for m in result.migrations] == ["applied"]
    record = mdb[RECORDS].find_one({"_id": "2026-11-26-000000.js"})
    assert record["backup_version"] == result.backup_version is not None
    # The next incremental load does not run it again.
    assert load(cfg, mdb.name, mode="incremental").migrations == []


def test_parallel_database_leaves_the_main_one_alone(target):
    cfg, mdb = target
    mdb.campaigns.insert_many([{"_id": 1, "name": "main"}])
    make_transformed(mdb.name, {"campaigns": [{"_id": 1, "name": "new"}, {"_id": 2, "name": "new"}]})
    parallel = f"{mdb.name}-p"
    client = mdb.client
    try:
        result = load(cfg, parallel, source=mdb.name)
        assert result.database == parallel
        assert client[parallel].campaigns.count_documents({}) == 2
        assert _all(mdb.campaigns) == [{"_id": 1, "name": "main"}]
    finally:
        client.drop_database(parallel)
    res = CliRunner().invoke(cli, ["load", "--db", "bad.name", "--from", mdb.name])
    assert res.exit_code == 1 and "forbids" in res.output


def test_drop_database_needs_yes_and_drops_the_rest(target):
    cfg, mdb = target
    mdb.stale.insert_one({"_id": 1})
    mdb.campaigns.insert_one({"_id": 1})
    make_transformed(mdb.name, {"campaigns": [{"_id": 2}]})
    runner = CliRunner()
    res = runner.invoke(cli, ["load", "--drop-database"])
    assert res.exit_code == 1 and "add --yes" in res.output and "Traceback" not in res.output
    assert sorted(mdb.list_collection_names()) == ["campaigns", "stale"]
    res = runner.invoke(cli, ["load", "--drop-database", "--yes"])
    assert res.exit_code == 0, res.output
    assert mdb.list_collection_names() == ["campaigns"]
    assert _all(mdb.campaigns) == [{"_id": 2}]
    stamp = read_json(paths.make_stamps / mdb.name / "load.stamp")
    assert stamp["dropped"] == ["stale"]
    # the dropped collection is in the backup taken first
    from etl.formats.backups import read_backup

    backup = read_backup(mdb.name, stamp["backup_version"])
    assert list(backup.documents("stale")) == [{"_id": 1}]


def test_a_corrupt_transform_output_is_refused_before_mongodb_is_touched(target):
    cfg, mdb = target
    mdb.campaigns.insert_one({"_id": 1})
    make_transformed(mdb.name, {"campaigns": [{"_id": 2}]})
    with open(paths.transformed / mdb.name / "campaigns.bson", "ab") as fh:
        fh.write(b"\x00")
    res = CliRunner().invoke(cli, ["load"])
    assert res.exit_code == 1 and "sha256" in res.output
    assert _all(mdb.campaigns) == [{"_id": 1}]


def test_nothing_transformed_is_one_clear_error(target):
    cfg, mdb = target
    res = CliRunner().invoke(cli, ["load"])
    assert res.exit_code == 1
    assert "manifest.json not found" in res.output and "make transform" in res.output
    assert "Traceback" not in res.output


def test_staging_left_by_a_killed_load_is_cleared_by_the_next(target):
    cfg, mdb = target
    mdb.a.insert_one({"_id": 1, "v": "old"})
    mdb["a__staging_deadbeef"].insert_many([{"_id": i} for i in range(3)])  # what a SIGKILL leaves
    make_transformed(mdb.name, {"a": [{"_id": 1, "v": "new"}]})
    result = load(cfg, mdb.name, backup=False)
    assert mdb.list_collection_names() == ["a"]
    assert _all(mdb.a) == [{"_id": 1, "v": "new"}]
    assert any("interrupted load" in n for n in result.notes)


def test_archived_fields_survive_full_and_incremental_loads_and_validation(target, tmp_path):
    """A removed column archived by decision lives only in MongoDB (`<column>__archived`):
    neither kind of load may drop it, and validation compares everything else."""

    from etl.formats.dumpdir import read_manifest
    from etl.stages.validate import check_collection
    from etl.formats.dumpdir import manifest_collections

    cfg, mdb = target
    archived = {"campaigns": {"archived": [["legacy", "legacy__archived"]]}}
    # _id 3 was loaded before the decision and its migration ran: the value is still `legacy`.
    mdb.campaigns.insert_many([{"_id": 1, "name": "old", "legacy__archived": "L1"}, {"_id": 2, "name": "old"},
                               {"_id": 3, "name": "old", "legacy": "L3"},
                               {"_id": 50, "name": "row gone", "legacy__archived": "L50"}])
    make_transformed(mdb.name, {"campaigns": [{"_id": i, "name": f"c{i}"} for i in range(25)]
                                + [{"_id": 30, "name": "c30", "legacy": "a new column of the old name"}]},
                     entries=archived)
    mdb.campaigns.insert_one({"_id": 30, "name": "old", "legacy": "new"})
    result = load(cfg, mdb.name)
    docs = {d["_id"]: d for d in mdb.campaigns.find()}
    assert sorted(docs) == list(range(25)) + [30]  # a full load still replaces the collection
    assert docs[1] == {"_id": 1, "name": "c1", "legacy__archived": "L1"}
    assert docs[3] == {"_id": 3, "name": "c3", "legacy__archived": "L3"}
    assert "legacy__archived" not in docs[2] and "legacy__archived" not in docs[30]
    assert any("carried over on 2 documents" in n for n in result.notes)

    make_transformed(mdb.name, {"campaigns": [{"_id": i, "name": f"v2-{i}"} for i in range(25)]
                                + [{"_id": 30, "name": "c30", "legacy": "a new column of the old name"}]},
                     entries=archived)
    load(cfg, mdb.name, mode="incremental")
    assert mdb.campaigns.find_one({"_id": 1}) == {"_id": 1, "name": "v2-1", "legacy__archived": "L1"}

    folder = paths.transformed / mdb.name
    entry = manifest_collections(read_manifest(folder))["campaigns"]
    kept = check_collection(mdb, "campaigns", folder, entry, 0, archived=["legacy__archived"])
    assert kept["content"]["ok"] and kept["count"]["ok"]
    naive = check_collection(mdb, "campaigns", folder, entry, 0)
    assert not naive["content"]["ok"] and naive["content"]["modified"] == 2
