"""`etl test-data`: the generated contract tests, run against a MongoDB database.

The example canonical schemas of test_generate.py are generated once; each test loads the
example documents (with the validators and indexes etl.mongo_schema derives, where the
server accepts them) into a fresh database and runs the contract tests through the CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import uuid
from decimal import Decimal

import pytest
from bson import Binary, Decimal128, ObjectId
from bson.int64 import Int64
from click.testing import CliRunner

from etl.model.jsonview import to_json_doc
from etl.stages import contract
from etl.stages import generate as gen
from etl.cli import cli
from etl.adapters.mongodb import connect
from etl.model.indexes import expected_indexes
from etl.model.validators import validation_options, validator_for
from test_generate import EXAMPLES, GOOD_DOCS, NODE_MODULES, write_examples

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def generated_examples(tmp_path_factory):
    if not (NODE_MODULES / ".bin" / "tsc").exists():
        pytest.skip("Node packages not installed: run `npm ci`")
    root = tmp_path_factory.mktemp("contract-gen")
    gen.generate(write_examples(root), root / "generated")
    return root


def load_collection(db, name: str, schema: dict, docs: list[dict]) -> None:
    """What mongo-schema and load leave behind: validator, documents, indexes."""
    db.create_collection(name, validator=validator_for(schema), **validation_options(strict=False))
    if docs:
        db[name].insert_many([dict(d) for d in docs])
    for ix in expected_indexes(schema):
        db[name].create_index([tuple(k) for k in ix["keys"]], name=ix["name"], unique=ix["unique"])


@pytest.fixture
def target(tmp_path, generated_examples, mongo_db, monkeypatch):
    """A project (ETL_ROOT) with the examples' schemas and generated tests, and a database
    holding conforming documents. Returns (root, mongo database)."""
    uri, name = mongo_db
    root = tmp_path / "project"
    shutil.copytree(generated_examples, root)
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", name)
    db = connect(uri)[name]
    for coll, schema in EXAMPLES.items():
        load_collection(db, coll, schema, GOOD_DOCS[coll])
    return root, db


def run_test_data(*args: str):
    return CliRunner().invoke(cli, ["test-data", *args])


def test_conforming_data_passes(target):
    result = run_test_data()
    assert result.exit_code == 0, result.output
    # 3 collections × (exists, JSON Schema, Pydantic, Zod, TypeScript, validator, indexes)
    assert re.search(r"^21 passed in ", result.output, re.M), result.output
    assert result.output.rstrip().endswith("Contract tests passed for database " + target[1].name + ".")


def test_a_document_that_breaks_the_schema_fails_with_exit_4(target):
    _, db = target
    db["campaigns"].insert_one({"_id": Int64(99), "name": "Bad", "status": "deleted", "budget": None,
                                "start_date": dt.datetime(2026, 1, 1, tzinfo=UTC), "tags": [], "flights": []})
    result = run_test_data()
    assert result.exit_code == 4, result.output
    assert "_id=99: status:" in result.output
    for test in ("canonical_schema", "model", "zod", "compile_as_typescript"):
        assert f"test_campaigns.py::test_documents_{'match_' if test != 'compile_as_typescript' else ''}{test}" \
            in result.output, test
    assert "1 Zod validation errors:" in result.output and "_id=99: status: Invalid option" in result.output
    assert "1 TypeScript errors (tsc --noEmit --strict):" in result.output
    assert "_id=99: TS2322: Type '\"deleted\"' is not assignable" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith(
        f"Error: contract tests failed for database {db.name}: 4 failed")


def test_a_missing_or_extra_index_fails(target):
    _, db = target
    db["campaigns"].drop_index("status_1")
    db["advertisers"].create_index([("name", 1)])
    result = run_test_data("-k", "indexes")
    assert result.exit_code == 4, result.output
    assert "missing index {status: 1}" in result.output
    assert "unexpected index {name: 1}" in result.output


def test_a_missing_collection_fails(target):
    _, db = target
    db["advertisers"].drop()
    result = run_test_data("-k", "advertisers and exists")
    assert result.exit_code == 4, result.output
    assert "collection advertisers does not exist" in result.output


def test_validators_are_checked(target):
    _, db = target
    result = run_test_data("-k", "validator")
    assert result.exit_code == 0, result.output
    assert re.search(r"^3 passed, 18 deselected in ", result.output, re.M), result.output


def test_a_validator_that_drifted_from_the_schema_fails(target):
    _, db = target
    db["advertisers"].drop()
    drifted = json.loads(json.dumps(EXAMPLES["advertisers"]))
    del drifted["properties"]["logo"]
    drifted["required"].remove("logo")
    db.create_collection("advertisers", validator=validator_for(drifted))
    result = run_test_data("-k", "advertisers and validator")
    assert result.exit_code == 4, result.output
    assert "validator lacks properties: logo" in result.output


def test_db_flag_selects_the_database(target, mongo_base_uri):
    other = f"etltest-{uuid.uuid4().hex[:8]}"
    try:
        result = run_test_data("--db", other, "-k", "exists")
        assert result.exit_code == 4, result.output
        assert f"failed for database {other}" in result.output
    finally:
        connect(mongo_base_uri).drop_database(other)


def test_tests_older_than_the_schemas_do_not_run(target):
    root, _ = target
    path = root / "schemas" / "collections" / "advertisers.schema.json"
    schema = json.loads(path.read_text())
    schema["properties"]["website"] = {"type": ["string", "null"], "x-bsonType": ["string", "null"]}
    path.write_text(json.dumps(schema))
    result = run_test_data()
    assert result.exit_code == 1
    assert result.output == ("Error: the contract tests are older than the canonical schemas "
                             "(run `etl generate` (make generate))\n")


def test_no_generated_tests_is_one_line(tmp_path, monkeypatch, mongo_db):
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    monkeypatch.setenv("MONGO_URI", mongo_db[0])
    result = run_test_data()
    assert result.exit_code == 1
    assert result.output.startswith("Error: no contract tests in ")
    assert len(result.output.splitlines()) == 1


def test_sample_is_bounded(target):
    root, db = target
    target_ = contract.Target(collection="campaigns", slug="campaigns", type_name="Campaigns",
                              generated=root / "generated", db=db, sample_size=1)
    docs = target_.sample()
    assert len(docs) == 1
    assert docs[0]["_id"] in (1, 2)
    assert isinstance(docs[0]["start_date"], str)


# ---------------------------------------------------------------- pure parts


def test_to_json_doc_follows_the_canonical_representation():
    oid = ObjectId("65a1b2c3d4e5f60718293a4b")
    some_uuid = uuid.UUID("3f2b8c1e-5d7a-4e9b-8c2d-1a2b3c4d5e6f")
    doc = {"_id": oid, "money": Decimal128("1234.50"), "big": Decimal128("1E+3"), "plain": Decimal("2.5"),
           "at": dt.datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
           "at_ms": dt.datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC),
           "naive": dt.datetime(2026, 1, 1), "u1": some_uuid, "u2": Binary(some_uuid.bytes, 4),
           "blob": Binary(b"\x00\xff", 0), "raw": b"ab", "n": Int64(5), "nested": [{"d": Decimal128("0.10")}],
           "s": "x", "b": True, "none": None, "f": 1.5}
    assert to_json_doc(doc) == {
        "_id": "65a1b2c3d4e5f60718293a4b", "money": "1234.50", "big": "1E+3", "plain": "2.5",
        "at": "2026-11-26T10:00:00Z", "at_ms": "2026-11-26T10:00:00.123Z", "naive": "2026-01-01T00:00:00Z",
        "u1": str(some_uuid), "u2": str(some_uuid), "blob": "AP8=", "raw": "YWI=", "n": 5,
        "nested": [{"d": "0.10"}], "s": "x", "b": True, "none": None, "f": 1.5}
    assert type(to_json_doc({"n": Int64(5)})["n"]) is int
    # PostgreSQL numeric allows NaN and ±Infinity; the canonical decimal pattern accepts them.
    special = to_json_doc({"a": Decimal128("NaN"), "b": Decimal128("-Infinity")})
    assert special == {"a": "NaN", "b": "-Infinity"}
    as_number = to_json_doc({"b": Decimal128("Infinity")},
                                     {"type": "object", "properties": {"b": {"type": ["integer", "number"]}}})
    assert as_number == {"b": float("inf")}


def test_to_json_doc_gives_a_number_where_the_schema_wants_one():
    schema = EXAMPLES["reporting.daily_metrics"]
    doc = {"_id": {"campaign_id": 1, "day": dt.datetime(2026, 3, 1, tzinfo=UTC)}, "cost": Decimal128("12.5"),
           "impressions": 3, "ctr": 0.5}
    out = to_json_doc(doc, schema)
    assert out["cost"] == 12.5 and out["_id"]["day"] == "2026-03-01T00:00:00Z"
    flight = to_json_doc({"flights": [{"starts_on": dt.datetime(2026, 3, 2, tzinfo=UTC),
                                                "spend": Decimal128("1.00")}]}, EXAMPLES["campaigns"])
    assert flight == {"flights": [{"starts_on": "2026-03-02", "spend": "1.00"}]}


def test_validator_differences_are_named():
    schema = EXAMPLES["advertisers"]
    right = validator_for(schema)
    assert contract.validator_problems(schema, right) == []
    assert contract.validator_problems(schema, None) == ["the collection has no $jsonSchema validator"]
    drifted = json.loads(json.dumps(right))
    del drifted["$jsonSchema"]["properties"]["logo"]
    drifted["$jsonSchema"]["properties"]["fax"] = {"bsonType": "string"}
    drifted["$jsonSchema"]["properties"]["name"]["bsonType"] = "int"
    problems = contract.validator_problems(schema, drifted)
    assert problems[0] == "validator lacks properties: logo"
    assert problems[1] == "validator has properties the canonical schema does not: fax"
    assert any(p.startswith("validator of name is") for p in problems)


def test_index_differences_are_named():
    expected = [{"name": "a_1", "keys": [["a", 1]], "unique": True},
                {"name": "b_1", "keys": [["b", 1]], "unique": False,
                 "partialFilterExpression": {"b": {"$type": "string"}}}]
    actual = {"_id_": {"key": [("_id", 1)]}, "a_1": {"key": [("a", 1)]},
              "c_-1": {"key": [("c", -1)], "unique": True}}
    assert contract.index_problems(expected, actual) == [
        "index {a: 1} is not unique, expected unique", "missing index {b: 1}", "unexpected index {c: -1}"]
    actual["a_1"]["unique"] = True
    actual["other"] = {"key": [("b", 1)], "partialFilterExpression": {"b": {"$type": "string"}}}
    del actual["c_-1"]
    assert contract.index_problems(expected, actual) == []


def test_an_unreachable_server_is_one_line_without_the_password(target, monkeypatch):
    from etl.adapters.services import free_port

    monkeypatch.setenv("MONGO_URI", f"mongodb://etl:s3cret-pw@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=200")
    result = run_test_data()
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: MongoDB at mongodb://etl:***@127.0.0.1:")
    assert "s3cret-pw" not in result.output


def test_errors_without_failures_are_not_a_verdict_on_the_data(tmp_path):
    errors = contract.ContractRun(returncode=1, output="E   boom\n== 2 errors in 0.5s ==\n", database="d",
                                  tests_dir=tmp_path)
    with pytest.raises(contract.EtlError, match="could not run for database d: 2 errors in 0.5s") as info:
        errors.raise_for_status()
    assert info.value.exit_code == 1
    failed = contract.ContractRun(returncode=1, output="== 1 failed, 1 error in 0.5s ==\n", database="d",
                                  tests_dir=tmp_path)
    with pytest.raises(contract.ValidationFailed, match="failed for database d: 1 failed, 1 error"):
        failed.raise_for_status()


# ---------------------------------------------------------------- the pipeline's own documents


@pytest.fixture
def loaded(project, pg):
    """Every PostgreSQL type the transform knows (test_transform's tables) through snapshot →
    mapping → canonical → generate → transform → load. Its rows with dates outside years
    1-9999 stay out: JSON Schema's date-time format has no year 0 or 10000."""
    from etl.stages import canonical
    from etl.core.config import load_config
    from etl.stages.load import load
    from etl.model.mapping import build_mapping
    from etl.stages.snapshot import take_snapshot
    from etl.stages.transform import transform
    from test_transform import SCHEMA

    if not (NODE_MODULES / ".bin" / "tsc").exists():
        pytest.skip("Node packages not installed: run `npm ci`")
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], SCHEMA + "\nDELETE FROM kinds WHERE id <> 1;")
    canonical.write_canonical(build_mapping(take_snapshot(cfg.pg_conninfo)))
    gen.generate()
    transform(cfg)
    load(cfg, backup=False)
    yield cfg
    connect(cfg["MONGO_URI"]).drop_database(cfg["MONGO_DB_NAME"])


def test_loaded_documents_pass_their_contract_tests(loaded):
    run = contract.run_contract_tests(loaded)
    assert run.returncode == 0, run.output
    assert re.search(r"^\d+ passed", run.output, re.M), run.output
    assert " failed" not in run.summary and " error" not in run.summary


def test_zod_accepts_exported_documents_and_rejects_a_broken_one(loaded, project):
    """The issue's check: a document exported from the load, through the compiled Zod schema."""
    import subprocess

    from etl.formats.dumpdir import iter_docs
    from etl.core.paths import paths
    from test_generate import SOURCE_ROOT, TSC

    generated = paths.generated
    (project / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    (project / "package.json").write_text('{"type": "module"}')
    js = project / "js"
    proc = subprocess.run([str(TSC), "--strict", "--target", "es2022", "--module", "nodenext",
                           "--moduleResolution", "nodenext", "--skipLibCheck", "--outDir", str(js),
                           "--rootDir", str(generated), *map(str, generated.glob("zod/*.ts"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    schema = json.loads((generated / "jsonschema" / "kinds.schema.json").read_text())
    docs = [to_json_doc(d, schema)
            for d in iter_docs(paths.transformed / loaded["MONGO_DB_NAME"] / "kinds.bson")]
    assert len(docs) == 1 and docs[0]["big_num"] == "NaN"
    broken = dict(docs[0], m="angry")
    job = {"checks": [{"module": str(js / "zod" / "kinds.js"), "export": "kindsSchema",
                       "documents": [*docs, broken]}]}
    out = subprocess.run(["node", str(SOURCE_ROOT / "scripts/etl/stages/node/validate.mjs")], input=json.dumps(job),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"][0]
    assert [r["ok"] for r in results] == [True, False], results
    assert any(issue.startswith("m:") for issue in results[1]["issues"])


# ---------------------------------------------------------------- Zod and TypeScript on documents


class SampledTarget(contract.Target):
    """A Target whose sample is given (no MongoDB): what NodeChecks reads from a real one."""

    def __init__(self, generated, name, docs, db_name):
        c = gen.Collection(name, {}, "")
        super().__init__(name, c.slug, c.type_name, generated, type("Db", (), {"name": db_name})(), len(docs))
        self._sample = docs


def test_zod_and_typescript_accept_what_the_pipeline_stores(tmp_path):
    """UUIDs without RFC version bits (md5-derived, as the sample's), an archived column's
    string values and json values of every shape: the canonical schema accepts them, so must
    the generated Zod schema and TypeScript type (the Zod/TypeScript contract tests)."""
    from etl.formats.canonical import write_canonical
    from etl.model.mapping import build_mapping
    from test_diff import col, snap, table

    snapshot = snap(table("public.members", col("id", "uuid", 1, False), col("email", "text", 2, False),
                          col("prefs", "jsonb", 3), col("referrer", "uuid", 4)))
    decisions = {"decisions": {"c-000000000001": {"kind": "column_removed", "table": "public.members",
                                                  "column": "legacy_code", "action": "archive"}}}
    write_canonical(build_mapping(snapshot, None, decisions), tmp_path / "schemas" / "collections",
                    tmp_path / "schemas" / "mapping.json")
    generated = tmp_path / "generated"
    gen.generate(tmp_path / "schemas" / "collections", generated)
    assert "z.guid()" in (generated / "zod" / "members.ts").read_text()

    md5_uuid = "0cc175b9-c0f1-b6a8-31c3-99e269772661"  # md5('a'): version nibble b, no RFC variant
    good = [{"_id": md5_uuid, "email": "a@example.org", "prefs": {"news": True}, "referrer": None,
             "legacy_code__archived": "A-17"},
            {"_id": str(uuid.uuid4()), "email": "b@example.org", "prefs": [1, "two"], "referrer": md5_uuid},
            {"_id": "00000000-0000-0000-0000-000000000000", "email": "c@example.org", "prefs": "plain",
             "referrer": None, "legacy_code__archived": 42}]
    assert contract.schema_failures(json.loads((generated / "jsonschema" / "members.schema.json").read_text()),
                                    good) == []
    accepted = SampledTarget(generated, "members", good, "good")
    assert contract.zod_failures(accepted) == []
    assert contract.typescript_failures(accepted) == []

    other = "11111111-2222-3333-4444-555555555555"
    bad = [{"_id": "not-a-uuid", "email": "d@example.org", "prefs": None, "referrer": None},
           {"_id": md5_uuid, "email": None, "prefs": None, "referrer": None},
           {"_id": other, "email": "e@example.org", "prefs": None, "referrer": None, "extra": 1}]
    rejected = SampledTarget(generated, "members", bad, "bad")
    zod = contract.zod_failures(rejected)
    assert [f.split(":")[0] for f in zod] == ["_id=not-a-uuid", f"_id={md5_uuid}", f"_id={other}"], zod
    ts = contract.typescript_failures(rejected)
    assert [f.split(":")[0] for f in ts] == [f"_id={md5_uuid}", f"_id={other}"], ts  # a string is a string to tsc
    assert "TS2322: Type 'null' is not assignable to type 'string'" in ts[0] and "'\"extra\"' does not exist" in ts[1]
