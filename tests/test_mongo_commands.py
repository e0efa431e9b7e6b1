"""What the pipeline sends to MongoDB, command by command (pymongo's CommandListener), checked
against MongoDB's documented command forms (tests/mongo_forms.py): the load, the swap,
validators and indexes, rollback and migrations. A change that only a real MongoDB would
refuse fails here, whatever the server under test accepts."""

from __future__ import annotations

import pytest
from bson import encode
from bson.raw_bson import RawBSONDocument

import mongo_forms
from conftest import FAILPOINT_MESSAGE, fail_command
from etl.adapters.mongodb.dumps import take_backup
from etl.core.config import load_config
from etl.core.errors import LoadError
from etl.stages.load import load
from etl.adapters.mongodb.migrations import apply_migration
from etl.formats.migration import write_script
from etl.adapters.mongodb import connect
from etl.adapters.mongodb.collections import Staging, apply_validators
from etl.model.plan import cast_steps
from etl.stages.rollback import rollback
from test_load import _all, make_transformed

WRITES = ("insert", "update", "create", "collMod", "createIndexes", "renameCollection")
VALIDATOR = {"$jsonSchema": {"bsonType": "object", "required": ["_id", "v"],
                             "properties": {"v": {"bsonType": "string", "maxLength": 10}}}}
PARTIAL = {"name": "code_1", "keys": [["code", 1]], "unique": True,
           "partialFilterExpression": {"code": {"$type": "string"}}}


@pytest.fixture
def target(project, mongo_db, monkeypatch):
    uri, name = mongo_db
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", name)
    monkeypatch.setenv("ETL_BATCH_SIZE", "10")
    client = connect(uri)
    yield load_config(), client[name]
    client.close()


def documented(recorder) -> list[tuple[str, str, dict]]:
    """The write commands sent, each checked against its documented form."""
    sent = [(db, name, cmd) for db, name, cmd in recorder.sent if name in WRITES]
    for _, name, cmd in sent:
        mongo_forms.check(name, cmd)
    return sent


def export(mdb, a: int = 25, b: int = 12) -> None:
    from etl.formats.dumpdir import metadata, read_metadata, write_metadata
    from etl.core.paths import paths

    make_transformed(mdb.name, {"alpha": [{"_id": i, "v": f"a{i}", "code": None if i % 2 else f"k{i}"}
                                          for i in range(a)],
                                "beta": [{"_id": i, "v": f"b{i}"} for i in range(b)]},
                     {"alpha": [PARTIAL]})
    # beta's metadata carries a validator, as the transform writes it from the canonical schema.
    folder = paths.transformed / mdb.name
    meta = read_metadata(folder / "beta.metadata.json")
    write_metadata(folder, "beta", metadata("beta", meta["indexes"], {"validator": VALIDATOR}))
    from etl.formats.dumpdir import read_manifest, sha256_file, write_manifest

    manifest = read_manifest(folder)
    manifest["collections"]["beta"]["metadata_sha256"] = sha256_file(folder / "beta.metadata.json")
    write_manifest(folder, manifest)


def test_a_full_load_sends_documented_commands_and_swaps_last(target, commands):
    cfg, mdb = target
    mdb.alpha.insert_one({"_id": 100, "v": "old"})
    export(mdb)
    commands.sent.clear()
    result = load(cfg, mdb.name, backup=False)
    assert result.counts == {"alpha": 25, "beta": 12}
    sent = documented(commands)
    names = [name for _, name, _ in sent]

    inserts = [cmd for _, name, cmd in sent if name == "insert"]
    staging = {cmd["insert"] for cmd in inserts}
    assert all("__staging_" in ns for ns in staging), "documents go to staging collections only"
    per_collection: dict[str, int] = {}
    for cmd in inserts:
        assert cmd["ordered"] is True and len(cmd["documents"]) <= 10  # ETL_BATCH_SIZE
        base = cmd["insert"].split("__staging_")[0]
        per_collection[base] = per_collection.get(base, 0) + len(cmd["documents"])
    assert per_collection == {"alpha": 25, "beta": 12}

    renames = [(db, cmd) for db, name, cmd in sent if name == "renameCollection"]
    assert [db for db, _ in renames] == ["admin", "admin"]
    assert sorted((cmd["renameCollection"].split(".", 1)[1].split("__staging_")[0], cmd["to"], cmd["dropTarget"])
                  for _, cmd in renames) == [("alpha", f"{mdb.name}.alpha", True), ("beta", f"{mdb.name}.beta", True)]
    # Every collection is complete before the first swap.
    assert max(i for i, n in enumerate(names) if n == "insert") < names.index("renameCollection")

    # Indexes are built on the staging collection once it holds all its documents.
    alpha_staging = next(ns for ns in staging if ns.startswith("alpha"))
    index_cmd = next(i for i, (_, n, c) in enumerate(sent) if n == "createIndexes" and c["createIndexes"] == alpha_staging)
    last_insert = max(i for i, (_, n, c) in enumerate(sent) if n == "insert" and c["insert"] == alpha_staging)
    assert last_insert < index_cmd < names.index("renameCollection")
    [index] = sent[index_cmd][2]["indexes"]
    assert index["unique"] is True and dict(index["partialFilterExpression"]) == {"code": {"$type": "string"}}
    # beta's validator (from its metadata) only warns outside strict mode: it is set by collMod
    # once the documents are in, before the swap.
    [create] = [c for _, n, c in sent if n == "create" and c["create"].startswith("beta__staging_")]
    assert "validator" not in create
    [mod] = [c for _, n, c in sent if n == "collMod" and c["collMod"].startswith("beta__staging_")]
    assert mod["validator"] == VALIDATOR and mod["validationAction"] == "warn"
    assert names.index("collMod") < names.index("renameCollection")
    # …and the live collection holds it after the swap, whatever the server does in a rename.
    options = {c["name"]: c["options"] for c in mdb.list_collections()}
    assert options["beta"]["validator"] == VALIDATOR


def test_a_validator_that_refuses_documents_is_there_before_them(target, commands, monkeypatch):
    _, mdb = target
    monkeypatch.setenv("ETL_SCHEMA_STRICT_MODE", "true")
    export(mdb)
    commands.sent.clear()
    load(load_config(), mdb.name, backup=False)
    sent = documented(commands)
    [(at, create)] = [(i, c) for i, (_, n, c) in enumerate(sent) if n == "create" and c["create"].startswith("beta__")]
    assert create["validator"] == VALIDATOR and create["validationAction"] == "error"
    beta_inserts = [i for i, (_, n, c) in enumerate(sent) if n == "insert" and c["insert"].startswith("beta__")]
    assert at < beta_inserts[0]
    assert not [c for _, n, c in sent if n == "collMod" and c["collMod"].startswith("beta__staging_")]


def test_the_count_checked_is_what_the_server_acknowledged(target):
    _, mdb = target
    raw = [RawBSONDocument(encode({"_id": i, "v": "x"})) for i in range(5)]
    # pymongo collects no ids for raw documents: insert_many's inserted_ids is empty even though
    # the server took all of them, which is why the load counts the server's `n`.
    assert mdb.other.insert_many(raw[:2]).inserted_ids == []
    staging = Staging(mdb, "t")
    staging.create("alpha", {})
    assert staging.insert("alpha", raw) == 5
    assert mdb["alpha__staging_t"].count_documents({}) == 5


def test_a_refused_insert_mid_load_leaves_every_collection_as_it_was(target):
    cfg, mdb = target
    old = [{"_id": i, "v": "old"} for i in range(3)]
    mdb.alpha.insert_many(old)
    mdb.beta.insert_many(old)
    export(mdb)
    with fail_command(mdb.client, "insert", code=2, skip=3):  # three batches go in, then refusals
        with pytest.raises(LoadError) as refused:
            load(cfg, mdb.name, backup=False)
    assert FAILPOINT_MESSAGE in refused.value.line() and "old collections untouched" in refused.value.line()
    assert _all(mdb.alpha) == old and _all(mdb.beta) == old
    assert sorted(mdb.list_collection_names()) == ["alpha", "beta"], "no staging left behind"


def test_a_connection_lost_mid_load_fails_the_load_before_any_swap(target):
    cfg, mdb = target
    old = [{"_id": i, "v": "old"} for i in range(3)]
    mdb.alpha.insert_many(old)
    export(mdb)
    # Twice in a row: pymongo retries a write once after a network error.
    with fail_command(mdb.client, "insert", close_connection=True, times=2):
        with pytest.raises(LoadError) as failed:
            load(cfg, mdb.name, backup=False)
    assert "the connection to MongoDB failed" in failed.value.line()
    assert _all(mdb.alpha) == old
    assert "beta" not in mdb.list_collection_names()
    assert not [n for n in mdb.list_collection_names() if "__staging_" in n]
    # A rerun converges to what an uninterrupted load gives.
    assert load(cfg, mdb.name, backup=False).counts == {"alpha": 25, "beta": 12}


def test_validators_and_indexes_for_an_existing_collection_use_collmod(target, commands, schemas):
    _, mdb = target
    mdb.create_collection("flights")
    commands.sent.clear()
    apply_validators(mdb, {"flights": schemas["flights"]}, strict=True)
    sent = documented(commands)
    [coll_mod] = [c for _, n, c in sent if n == "collMod"]
    assert coll_mod["collMod"] == "flights" and "$jsonSchema" in coll_mod["validator"]
    assert (coll_mod["validationLevel"], coll_mod["validationAction"]) == ("strict", "error")
    assert [c["indexes"][0]["name"] for _, n, c in sent if n == "createIndexes"] == ["campaign_id_1"]


def test_every_canonical_validator_is_in_mongodb_dialect(schemas):
    from etl.model.validators import validator_for

    for schema in schemas.values():
        mongo_forms.jsonschema(validator_for(schema)["$jsonSchema"])


def test_rollback_sends_documented_commands(target, commands):
    cfg, mdb = target
    mdb.create_collection("beta", validator=VALIDATOR)
    mdb.beta.insert_many([{"_id": i, "v": f"b{i}"} for i in range(15)])
    mdb.beta.insert_one({"_id": 99, "v": "far too long for the validator"}, bypass_document_validation=True)
    mdb.beta.create_index([("v", 1)], name="v_1")
    version = take_backup(cfg, mdb.name, ["beta"])
    mdb.beta.delete_many({})
    commands.sent.clear()
    rollback(cfg, mdb.name, version)
    sent = documented(commands)
    inserts = [c for _, n, c in sent if n == "insert" and c["insert"] == "beta__staging_rollback"]
    # What coexisted with the validator when backed up is restored as it was.
    assert inserts and all(c["bypassDocumentValidation"] is True for c in inserts)
    assert sum(len(c["documents"]) for c in inserts) == 16
    [rename] = [c for _, n, c in sent if n == "renameCollection" and c["to"] == f"{mdb.name}.beta"]
    assert rename["dropTarget"] is True
    assert mdb.beta.count_documents({}) == 16
    assert next(c for c in mdb.list_collections() if c["name"] == "beta")["options"]["validator"] == VALIDATOR


def test_a_migration_cast_runs_on_the_server_as_a_documented_pipeline_update(target, commands, tmp_path):
    _, mdb = target
    mdb.line_items.insert_many([{"_id": 1, "rate": "1.5"}, {"_id": 2, "rate": "n/a"}, {"_id": 3, "rate": None}])
    path = tmp_path / "2026-11-26-00-00-00.js"
    write_script(path, cast_steps("line_items", "rate", "double", "keep_old", "line_items.rate"), header=["cast"])
    commands.sent.clear()
    result = apply_migration(mdb, path, "2026-11-26-001")
    sent = documented(commands)
    [update] = [c for _, n, c in sent if n == "update" and c["update"] == "line_items"]
    [stmt] = update["updates"]
    assert isinstance(stmt["u"], list) and stmt["multi"] is True
    assert "$convert" in repr(stmt["u"])
    assert result["status"] == "applied"
    docs = _all(mdb.line_items)
    assert docs[0]["rate"] == 1.5 and docs[1] == {"_id": 2, "rate": None, "rate__old": "n/a"}
