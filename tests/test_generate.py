"""`etl generate`: the artifacts are checked, not just written.

Hand-written canonical schemas (three collections: a $defs reference, money as a decimal
string, money as a number, a uuid _id, a composite _id, a non-public collection name) are
generated once per module into a scratch folder; the TypeScript/Zod files are compiled with
the project's pinned tsc and run with Node; the Pydantic models, JSON Schemas and OpenAPI
document are checked in-process.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from bson import Binary, Decimal128
from bson.int64 import Int64
from click.testing import CliRunner

from etl.stages import generate as gen
from etl.cli import cli
from etl.stages.contract import model_failures, schema_failures
from etl.model.jsonview import to_json_doc
from etl.core.hashing import content_hash
from etl.core.paths import SOURCE_ROOT

NODE_MODULES = SOURCE_ROOT / "node_modules"
TSC = NODE_MODULES / ".bin" / "tsc"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
DECIMAL_2 = {"type": "string", "format": "decimal", "pattern": r"^-?[0-9]+(\.[0-9]{1,2})?$",
             "x-bsonType": "decimal"}
# etl.canonical's pattern: PostgreSQL numeric also holds NaN and ±Infinity.
DECIMAL_ANY = {"type": "string", "format": "decimal",
               "pattern": r"^(-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|NaN|-?Infinity)$", "x-bsonType": "decimal"}


def nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"], "x-bsonType": [schema["x-bsonType"], "null"]}


# Written the way etl.canonical writes them (docs/mapping-and-rules.md): JSON representation,
# x-bsonType, every field required, nullable ones allow null, x-indexes. Beyond that they use
# what a canonical schema may: a $defs reference, money as a number, a composite _id, a
# collection outside public.
EXAMPLES: dict[str, dict] = {
    "campaigns": {
        "$schema": DRAFT,
        "$id": "https://schemas.media-tool.local/collections/campaigns.schema.json",
        "title": "campaigns",
        "type": "object",
        "x-bsonType": "object",
        "properties": {
            "_id": {"type": "integer", "x-bsonType": ["long", "int"]},
            "name": {"type": "string", "maxLength": 255, "x-bsonType": "string"},
            "status": {"type": "string", "enum": ["draft", "active", "paused", "completed"],
                       "x-bsonType": "string"},
            "budget": nullable(DECIMAL_2),
            "start_date": {"type": "string", "format": "date-time", "x-bsonType": "date"},
            "tags": {"type": "array", "items": {"type": "string", "x-bsonType": "string"}, "x-bsonType": "array"},
            "flights": {"type": "array", "items": {"$ref": "#/$defs/flight"}, "x-bsonType": "array"},
        },
        "required": ["_id", "name", "status", "budget", "start_date", "tags", "flights"],
        "additionalProperties": False,
        "x-indexes": [{"name": "status_1", "keys": [["status", 1]], "unique": False, "source": "index"},
                      {"name": "name_1", "keys": [["name", 1]], "unique": True, "source": "unique"}],
        "$defs": {
            "flight": {"type": "object", "x-bsonType": "object",
                       "properties": {"_id": {"type": "integer", "x-bsonType": "int"}, "spend": DECIMAL_ANY,
                                      "starts_on": {"type": "string", "format": "date", "x-bsonType": "string"}},
                       "required": ["_id", "spend"], "additionalProperties": False},
        },
    },
    "advertisers": {
        "$schema": DRAFT,
        "title": "advertisers",
        "type": "object",
        "x-bsonType": "object",
        "properties": {
            "_id": {"type": "string", "format": "uuid", "x-bsonType": "binData"},
            "name": {"type": "string", "minLength": 1, "x-bsonType": "string"},
            "logo": {"type": ["string", "null"], "contentEncoding": "base64", "x-bsonType": ["binData", "null"]},
            "created_at": {"type": "string", "format": "date-time", "x-bsonType": "date"},
        },
        "required": ["_id", "name", "logo", "created_at"],
        "additionalProperties": False,
        "x-indexes": [],
    },
    "reporting.daily_metrics": {
        "$schema": DRAFT,
        "title": "reporting.daily_metrics",
        "type": "object",
        "x-bsonType": "object",
        "properties": {
            "_id": {"type": "object", "x-bsonType": "object",
                    "properties": {"campaign_id": {"type": "integer", "x-bsonType": "int"},
                                   "day": {"type": "string", "format": "date-time", "x-bsonType": "date"}},
                    "required": ["campaign_id", "day"], "additionalProperties": False},
            "impressions": {"type": "integer", "minimum": 0, "x-bsonType": "int"},
            "ctr": {"type": "number", "x-bsonType": "double"},
            "cost": {"type": "number", "x-bsonType": "decimal"},
        },
        "required": ["_id", "impressions", "ctr", "cost"],
        "additionalProperties": False,
        "x-indexes": [{"name": "_id.campaign_id_1__id.day_-1", "keys": [["_id.campaign_id", 1], ["_id.day", -1]],
                       "unique": False, "source": "index"}],
    },
}

UTC = dt.timezone.utc
# Documents as pymongo returns them from a load, per collection: (good, broken).
GOOD_DOCS = {
    "campaigns": [
        {"_id": Int64(1), "name": "Spring", "status": "active", "budget": Decimal128("1500.50"),
         "start_date": dt.datetime(2026, 3, 1, tzinfo=UTC), "tags": ["tv"],
         "flights": [{"_id": 10, "spend": Decimal128("99.90"), "starts_on": dt.datetime(2026, 3, 2, tzinfo=UTC)},
                     {"_id": 11, "spend": Decimal128("NaN")}, {"_id": 12, "spend": Decimal128("-Infinity")}]},
        {"_id": Int64(2), "name": "Autumn", "status": "draft", "budget": None,
         "start_date": dt.datetime(2026, 9, 1, 12, 30, 15, 250000, tzinfo=UTC), "tags": [], "flights": []},
    ],
    "advertisers": [
        {"_id": Binary(uuid.UUID("3f2b8c1e-5d7a-4e9b-8c2d-1a2b3c4d5e6f").bytes, 4), "name": "Acme", "logo": Binary(b"\x89PNG", 0),
         "created_at": dt.datetime(2025, 1, 1, tzinfo=UTC)},
    ],
    "reporting.daily_metrics": [
        {"_id": {"campaign_id": 1, "day": dt.datetime(2026, 3, 1, tzinfo=UTC)}, "impressions": 1200,
         "ctr": 0.012, "cost": Decimal128("12.5")},
    ],
}
BROKEN_DOCS = {
    "campaigns": [
        {"_id": Int64(3), "name": "No status", "budget": None, "start_date": dt.datetime(2026, 1, 1, tzinfo=UTC),
         "tags": [], "flights": []},
        {"_id": Int64(4), "name": "Bad", "status": "deleted", "budget": None,
         "start_date": dt.datetime(2026, 1, 1, tzinfo=UTC), "tags": [], "flights": []},
        {"_id": Int64(5), "name": "Money", "status": "draft", "budget": "lots",
         "start_date": dt.datetime(2026, 1, 1, tzinfo=UTC), "tags": [], "flights": []},
    ],
    "advertisers": [{"_id": "not-a-uuid", "name": "", "created_at": "yesterday", "extra": 1}],
    "reporting.daily_metrics": [{"_id": {"campaign_id": "one", "day": "2026-03-01"}, "impressions": -1,
                                 "ctr": 0.1, "cost": Decimal128("1")}],
}


def write_examples(root: Path, schemas: dict[str, dict] | None = None) -> Path:
    """schemas/collections/*.schema.json under `root`; returns the folder."""
    folder = root / "schemas" / "collections"
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in (schemas or EXAMPLES).items():
        (folder / f"{name}.schema.json").write_text(json.dumps(schema, indent=2))
    return folder


def json_docs(collection: str, docs: list[dict]) -> list:
    return [to_json_doc(d, EXAMPLES[collection]) for d in docs]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (mtime_ns, sha256) of every file under `folder`."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, content_hash(p.read_text()))
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def node_ready():
    if not TSC.exists():
        pytest.skip(f"Node packages not installed: run `npm ci` in {SOURCE_ROOT}")


@pytest.fixture(scope="module")
def built(tmp_path_factory, node_ready):
    """The examples generated once: (project root, generated folder, GenerateResult)."""
    root = tmp_path_factory.mktemp("gen")
    schemas = write_examples(root)
    result = gen.generate(schemas, root / "generated")
    return root, root / "generated", result


@pytest.fixture(scope="module")
def compiled(built, tmp_path_factory):
    """tsc over every generated .ts file (strict); the emitted JS, for Node to run."""
    root, out, _ = built
    js = tmp_path_factory.mktemp("js")
    # Module resolution walks up from the sources and from the emitted files: both find the
    # pinned packages through these links.
    for where in (root, js):
        (where / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
        (where / "package.json").write_text('{"type": "module"}')
    sources = sorted(str(p) for p in out.glob("typescript/*.ts")) + sorted(str(p) for p in out.glob("zod/*.ts"))
    proc = subprocess.run([str(TSC), "--strict", "--target", "es2022", "--module", "nodenext",
                           "--moduleResolution", "nodenext", "--skipLibCheck", "--outDir", str(js),
                           "--rootDir", str(out), *sources], capture_output=True, text=True, timeout=300)
    return proc, js


def run_zod(js: Path, checks: list[tuple[str, str, list]]) -> list[list[dict]]:
    job = {"checks": [{"module": str(js / "zod" / f"{slug}.js"), "export": export, "documents": docs}
                      for slug, export, docs in checks]}
    proc = subprocess.run(["node", str(SOURCE_ROOT / "scripts/etl/stages/node/validate.mjs")], input=json.dumps(job),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr or proc.stdout
    return json.loads(proc.stdout)["results"]


def load_model(out: Path, collection: str, schema: dict | None = None):
    import importlib.util

    c = gen.Collection(collection, schema or EXAMPLES[collection], "")
    spec = importlib.util.spec_from_file_location(f"gen_test_models_{c.slug}", out / "models" / f"{c.slug}.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, c.type_name)


# ---------------------------------------------------------------- what gets written


def test_every_artifact_is_written_with_its_schema_hash(built):
    _, out, result = built
    canonical = gen.load_canonical(built[0] / "schemas" / "collections")
    assert result.regenerated and not result.removed
    assert sorted(result.written) == sorted(gen.expected_files(canonical))
    for c in canonical.collections:
        for rel in (f"jsonschema/{c.name}.schema.json", f"typescript/{c.slug}.ts", f"zod/{c.slug}.ts",
                    f"models/{c.slug}.py", f"tests/test_{c.slug}.py"):
            head = (out / rel).read_text()[:600]
            assert f"canonical schema hash {c.hash}" in head, rel
            assert "Do not edit" in head, rel
    for rel in ("openapi.yaml", "jsonschema/bundle.json"):
        assert f"canonical schema hash {canonical.hash}" in (out / rel).read_text()[:600]
    marker = json.loads((out / gen.MARKER).read_text())
    assert marker["inputs_hash"] == canonical.inputs_hash


def test_openapi_document_validates(built):
    from openapi_spec_validator import validate

    spec = yaml.safe_load((built[1] / "openapi.yaml").read_text())
    validate(spec)
    assert set(spec["components"]["schemas"]) >= {"Campaigns", "Campaigns_flight", "Advertisers",
                                                  "ReportingDailyMetrics"}
    assert spec["components"]["schemas"]["Campaigns"]["properties"]["flights"]["items"] == \
        {"$ref": "#/components/schemas/Campaigns_flight"}
    for name in EXAMPLES:
        assert spec["paths"][f"/{name}"]["get"]["responses"]["200"]
        assert spec["paths"][f"/{name}/{{id}}"]["get"]["responses"]["404"]
    id_param = spec["paths"]["/advertisers/{id}"]["get"]["parameters"][0]
    assert id_param["schema"] == {"type": "string", "format": "uuid"}


def test_openapi_validator_rejects_a_broken_document(built):
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    spec = yaml.safe_load((built[1] / "openapi.yaml").read_text())
    del spec["paths"]["/campaigns/{id}"]["get"]["parameters"][0]["in"]
    with pytest.raises(OpenAPIValidationError):
        validate(spec)


def test_typescript_and_zod_compile(compiled):
    proc, js = compiled
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (js / "zod" / "campaigns.js").is_file()


def test_zod_accepts_loaded_documents_and_rejects_broken_ones(compiled):
    proc, js = compiled
    assert proc.returncode == 0, proc.stdout
    checks, expect = [], []
    for name in EXAMPLES:
        c = gen.Collection(name, EXAMPLES[name], "")
        good, bad = json_docs(name, GOOD_DOCS[name]), json_docs(name, BROKEN_DOCS[name])
        checks.append((c.slug, c.schema_name, good + bad))
        expect.append([True] * len(good) + [False] * len(bad))
    results = run_zod(js, checks)
    assert [[r["ok"] for r in per] for per in results] == expect
    broken_status = results[0][len(GOOD_DOCS["campaigns"]) + 1]
    assert any(issue.startswith("status:") for issue in broken_status["issues"])


def test_pydantic_models_validate_the_same_documents(built):
    out = built[1]
    for name in EXAMPLES:
        model = load_model(out, name)
        assert model_failures(model, json_docs(name, GOOD_DOCS[name])) == [], name
        failures = model_failures(model, json_docs(name, BROKEN_DOCS[name]))
        ids = {f.split(":")[0] for f in failures}
        assert len(ids) == len(BROKEN_DOCS[name]), (name, failures)


def test_json_schemas_and_bundle_validate_the_same_documents(built):
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    out = built[1]
    bundle = json.loads((out / "jsonschema" / "bundle.json").read_text())
    registry = Registry().with_resource(bundle["$id"], DRAFT202012.create_resource(bundle)).crawl()
    for name in EXAMPLES:
        schema = json.loads((out / "jsonschema" / f"{name}.schema.json").read_text())
        good, bad = json_docs(name, GOOD_DOCS[name]), json_docs(name, BROKEN_DOCS[name])
        assert schema_failures(schema, good) == [], name
        failed_ids = {f.split(":")[0] for f in schema_failures(schema, bad)}
        assert len(failed_ids) == len(bad), name
        via_bundle = Draft202012Validator({"$ref": bundle["$defs"][name]["$id"]}, registry=registry,
                                          format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert all(via_bundle.is_valid(d) for d in good), name
        assert not any(via_bundle.is_valid(d) for d in bad), name


def test_contract_test_modules_embed_the_expected_indexes(built):
    text = (built[1] / "tests" / "test_reporting_daily_metrics.py").read_text()
    compile(text, "test_reporting_daily_metrics.py", "exec")
    assert "COLLECTION = 'reporting.daily_metrics'" in text
    assert "'keys': [['_id.campaign_id', 1], ['_id.day', -1]]" in text


# ---------------------------------------------------------------- regenerating


def test_a_second_run_changes_nothing(built):
    root, out, _ = built
    before = snapshot(out)
    result = gen.generate(root / "schemas" / "collections", out)
    assert not result.regenerated
    assert snapshot(out) == before
    forced = gen.generate(root / "schemas" / "collections", out, force=True)
    assert forced.regenerated and forced.written == []
    assert snapshot(out) == before


def test_one_new_optional_column_rewrites_that_collection_and_the_bundles(tmp_path, node_ready):
    schemas = write_examples(tmp_path)
    out = tmp_path / "generated"
    gen.generate(schemas, out)
    before = snapshot(out)

    changed = copy.deepcopy(EXAMPLES["advertisers"])
    changed["properties"]["website"] = {"type": ["string", "null"]}
    write_examples(tmp_path, {"advertisers": changed})
    result = gen.generate(schemas, out)

    advertisers = {"jsonschema/advertisers.schema.json", "typescript/advertisers.ts", "zod/advertisers.ts",
                   "models/advertisers.py", "tests/test_advertisers.py"}
    bundles = {"jsonschema/bundle.json", "openapi.yaml", gen.MARKER}
    assert set(result.written) == advertisers | bundles
    after = snapshot(out)
    rewritten = {rel for rel in after if after[rel] != before.get(rel)}
    assert rewritten == advertisers | bundles
    assert "website" in (out / "typescript" / "advertisers.ts").read_text()
    assert "website" in (out / "models" / "advertisers.py").read_text()


def test_a_removed_collection_loses_its_artifacts(tmp_path, node_ready):
    schemas = write_examples(tmp_path)
    out = tmp_path / "generated"
    gen.generate(schemas, out)
    (schemas / "advertisers.schema.json").unlink()
    result = gen.generate(schemas, out)
    assert sorted(result.removed) == ["jsonschema/advertisers.schema.json", "models/advertisers.py",
                                      "tests/test_advertisers.py", "typescript/advertisers.ts",
                                      "zod/advertisers.ts"]
    assert not list(out.rglob("*advertisers*"))


# ---------------------------------------------------------------- bad input


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, env=env)


def test_node_absent_is_one_line_and_keeps_the_artifacts(built, tmp_path):
    root, _, _ = built
    out = tmp_path / "generated"
    shutil.copytree(built[1], out)
    changed = copy.deepcopy(EXAMPLES)
    changed["campaigns"]["properties"]["notes"] = {"type": "string"}
    schemas = write_examples(tmp_path, changed)
    before = snapshot(out)
    result = invoke(["generate", "--schemas", str(schemas), "--out", str(out)],
                    env={"ETL_NODE": str(tmp_path / "no-such-node"), "ETL_ROOT": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.startswith("Error: Node.js is not installed")
    assert len(result.output.strip().splitlines()) == 1
    assert snapshot(out) == before


def test_current_artifacts_need_no_node(built, tmp_path):
    root, out, _ = built
    before = snapshot(out)
    result = invoke(["generate", "--schemas", str(root / "schemas" / "collections"), "--out", str(out)],
                    env={"ETL_NODE": str(tmp_path / "no-such-node"), "ETL_ROOT": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Generated artifacts are current")
    assert snapshot(out) == before


def test_missing_node_package_names_it(tmp_path, monkeypatch, node_ready):
    # The driver outside the project cannot find node_modules, as on a machine without `npm ci`.
    driver = tmp_path / "generate.mjs"
    shutil.copy(gen.NODE_DRIVER, driver)
    monkeypatch.setattr(gen, "NODE_DRIVER", driver)
    schemas = write_examples(tmp_path)
    with pytest.raises(gen.GenerateError, match="Node package json-schema-to-typescript is not installed"):
        gen.generate(schemas, tmp_path / "generated")
    assert not (tmp_path / "generated").exists()


def test_unreadable_schema_is_one_line(tmp_path):
    schemas = write_examples(tmp_path)
    (schemas / "broken.schema.json").write_text("{not json")
    result = invoke(["generate", "--schemas", str(schemas), "--out", str(tmp_path / "g")],
                    env={"ETL_ROOT": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.startswith("Error: broken.schema.json: not readable JSON")
    assert not (tmp_path / "g").exists()


def test_recursive_reference_cannot_become_zod(tmp_path):
    schema = {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}},
              "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}}
    with pytest.raises(gen.GenerateError, match="recursive"):
        gen.inline_refs(schema, collection="tree")


def test_inline_refs_keeps_sibling_keywords():
    schema = EXAMPLES["campaigns"]
    flat = gen.inline_refs(schema)
    assert "$defs" not in flat
    assert flat["properties"]["flights"]["items"]["required"] == ["_id", "spend"]


# ---------------------------------------------------------------- the committed artifacts


def test_generated_artifacts_are_current(tmp_path, node_ready):
    """generated/ in the project is exactly what its schemas/collections/ generates today."""
    committed = SOURCE_ROOT / "generated"
    schemas = SOURCE_ROOT / "schemas" / "collections"
    owned = [p for sub in gen.OWNED_DIRS for p in (committed / sub).glob("*") if p.is_file()]
    if not schemas.is_dir() or not list(schemas.glob("*.schema.json")):
        assert owned == [], "generated/ holds artifacts but schemas/collections/ has no schemas"
        return
    fresh = tmp_path / "generated"
    gen.generate(schemas, fresh)
    want = {rel: h for rel, (_, h) in snapshot(fresh).items()}
    have = {rel: h for rel, (_, h) in snapshot(committed).items()}
    stale = sorted(rel for rel in want.keys() | have.keys() if want.get(rel) != have.get(rel))
    assert not stale, f"out of date (run `make generate`): {', '.join(stale)}"


# ---------------------------------------------------------------- what etl.canonical writes

SAMPLE_RULES = """
version: 1
collections:
  line_items:
    fields:
      rate: {round: {places: 4, mode: half_even}, minimum: 0}
    calculated:
      total_cost: {expression: "rate * units / 1000", bson: decimal, round: 2}
  campaigns:
    embed:
      - {collection: flights, as: flights, foreign_key: [campaign_id], sort: [[start_date, 1]], limit: 50}
"""


@pytest.fixture(scope="module")
def sample_generated(pg, tmp_path_factory, node_ready):
    """The sample media_tool schema through snapshot → mapping (with rules) → canonical →
    generate: the generators fed exactly what the pipeline feeds them."""
    from etl.formats.rules import validate_rules
    from etl.model import mapping
    from etl.model.canonical import canonical_schemas
    from etl.stages import snapshot

    db = pg.create_db(sql=(SOURCE_ROOT / "scripts" / "etl" / "stages" / "sql" / "sample_schema.sql").read_text())
    snap = snapshot.take_snapshot(pg.dsn(db))
    plan = mapping.build_mapping(snap, validate_rules(yaml.safe_load(SAMPLE_RULES)))
    schemas = canonical_schemas(plan)
    root = tmp_path_factory.mktemp("sample")
    folder = write_examples(root, schemas)
    gen.generate(folder, root / "generated")
    return root, root / "generated", schemas


def test_sample_canonical_schemas_generate_valid_artifacts(sample_generated):
    from openapi_spec_validator import validate

    root, out, schemas = sample_generated
    assert {"campaigns", "line_items", "users"} <= set(schemas)
    validate(yaml.safe_load((out / "openapi.yaml").read_text()))
    for name in schemas:
        c = gen.Collection(name, schemas[name], "")
        for rel in (f"typescript/{c.slug}.ts", f"zod/{c.slug}.ts", f"models/{c.slug}.py", f"tests/test_{c.slug}.py"):
            assert (out / rel).is_file(), rel

    (root / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    (root / "package.json").write_text('{"type": "module"}')
    sources = sorted(str(p) for p in out.glob("typescript/*.ts")) + sorted(str(p) for p in out.glob("zod/*.ts"))
    proc = subprocess.run([str(TSC), "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
                           "--moduleResolution", "nodenext", "--skipLibCheck", *sources],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_sample_models_accept_a_transformed_campaign(sample_generated):
    root, out, schemas = sample_generated
    model = load_model(out, "campaigns", schemas["campaigns"])
    props = schemas["campaigns"]["properties"]
    assert "flights" in props and props["flights"]["items"]["type"] == "object"
    # Every field present, the nullable ones null, as the transform writes a row.
    doc = {name: None for name in props}
    doc.update(_id=Int64(7), flights=[], tags=["tv"])
    for name, spec in props.items():
        if doc[name] is None and "null" not in (spec.get("type") or []) and spec.get("type"):
            doc[name] = {"string": "x", "integer": 1, "number": 1.5, "boolean": True,
                         "array": [], "object": {}}[spec["type"] if isinstance(spec["type"], str) else spec["type"][0]]
            if spec.get("enum"):
                doc[name] = spec["enum"][0]
            if spec.get("format") == "date-time":
                doc[name] = dt.datetime(2026, 1, 1, tzinfo=UTC)
            if spec.get("format") == "decimal":
                doc[name] = Decimal128("10.00")
    jdoc = to_json_doc(doc, schemas["campaigns"])
    assert schema_failures(schemas["campaigns"], [jdoc]) == []
    assert model_failures(model, [jdoc]) == []


def test_index_hash_names_the_bundles_and_a_mapping_only_change_regenerates_nothing(tmp_path, node_ready):
    schemas = write_examples(tmp_path)
    index = schemas / "index.json"
    index.write_text(json.dumps({"format_version": 1, "hash": "f" * 64, "mapping_hash": "1" * 64}))
    out = tmp_path / "generated"
    gen.generate(schemas, out)
    assert f"canonical schema hash {'f' * 64}" in (out / "openapi.yaml").read_text()
    before = snapshot(out)

    index.write_text(json.dumps({"format_version": 1, "hash": "f" * 64, "mapping_hash": "2" * 64}))
    stale = index.stat().st_mtime_ns - 10 * 10**9  # as if the marker were written long before
    os.utime(out / gen.MARKER, ns=(stale, stale))
    result = gen.generate(schemas, out)
    assert not result.regenerated
    after = snapshot(out)
    assert {rel: h for rel, (_, h) in after.items()} == {rel: h for rel, (_, h) in before.items()}
    # Make compares mtimes: the marker (its target) must not look older than index.json.
    assert (out / gen.MARKER).stat().st_mtime_ns >= index.stat().st_mtime_ns
    assert {rel: m for rel, (m, _) in after.items() if rel != gen.MARKER} == \
        {rel: m for rel, (m, _) in before.items() if rel != gen.MARKER}
