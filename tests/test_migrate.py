"""Migration scripts: the strict format (written, parsed back, valid JavaScript for mongosh) and
their application to MongoDB through a URI, once per database, with the backup version."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from bson import Decimal128, Int64
from click.testing import CliRunner

from etl.cli import cli
from etl.core.errors import MigrationError
from etl.adapters.mongodb.migrations import RECORDS, apply_migration, apply_pending
from etl.formats.migration import parse_script, render_script, write_script
from etl.model.migration import Step
from etl.adapters.mongodb import connect
from etl.model.plan import cast_steps

REPO = Path(__file__).resolve().parents[1]
WHEN = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)

ALL_FORMS = [
    Step("updateMany", "campaigns", filter={"name": {"$exists": True}}, update={"$rename": {"name": "title"}},
         comment="campaigns.name: renamed to title"),
    Step("updateMany", "campaigns", filter={"budget": {"$exists": False}},
         update={"$set": {"budget": Decimal128("12.50"), "views": Int64(2**40), "starts": WHEN, "note": 'say "hi"'}}),
    Step("updateMany", "line_items", filter={}, update=[{"$set": {"rate": {"$multiply": ["$rate", 2]}}}]),
    Step("count", "line_items", filter={"rate": None}, message="rates missing"),
    Step("assert_none", "line_items", filter={"rate": "n/a"}, message="rates that are not numbers"),
    Step("rename", "old_reports", target="old_reports__archived"),
    Step("drop", "scratch"),
]


@pytest.fixture
def db(mongo_db):
    uri, name = mongo_db
    return connect(uri)[name]


def _write(tmp_path: Path, steps: list[Step], name: str = "2026-11-26-10-00-00.js") -> Path:
    path = tmp_path / name
    write_script(path, steps, ["schema aaaaaaaaaaaa -> bbbbbbbbbbbb"])
    return path


def test_every_statement_form_reads_back_as_written(tmp_path):
    text = render_script(ALL_FORMS, ["header line"])
    script = parse_script(text)
    assert script.header == ["header line"]
    assert [(s.op, s.collection, s.filter, s.update, s.target, s.message) for s in script.steps] == \
        [(s.op, s.collection, s.filter, s.update, s.target, s.message) for s in ALL_FORMS]
    decoded = script.steps[1].update["$set"]
    assert isinstance(decoded["budget"], Decimal128) and isinstance(decoded["views"], Int64)
    assert decoded["starts"] == WHEN
    assert script.steps[0].comment == "campaigns.name: renamed to title"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_script_is_valid_javascript_for_mongosh(tmp_path):
    path = _write(tmp_path, ALL_FORMS)
    proc = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("line, error", [
    ('db.getCollection("c").updateMany(EJSON.deserialize({}, {"relaxed": false}), '
     'EJSON.deserialize({}, {"relaxed": false}))',
     "x.js:3: expected ');'"),
    ('db.getCollection("c").deleteMany(EJSON.deserialize({}, {"relaxed": false}));', "x.js:3: expected '.drop();'"),
    ('db.getCollection("c").updateMany(EJSON.deserialize({"a": }, {"relaxed": false}), EJSON.deserialize({}));',
     "x.js:3: expected Extended JSON"),
    ('db.getCollection("c").updateMany({"a": 1}, EJSON.deserialize({}));', "x.js:3: expected 'EJSON.deserialize('"),
    ('db.getCollection("c").drop(); db.dropDatabase();', "x.js:3: expected the end of the line"),
    ('db.getCollection(c).drop();', "x.js:3: expected Extended JSON"),
])
def test_anything_outside_the_format_is_refused_with_its_line(line, error):
    with pytest.raises(MigrationError) as info:
        parse_script(f"// etl migration format 1\n// header\n{line}\n", "x.js")
    assert str(info.value).startswith(error)


def test_a_file_without_the_format_line_is_refused():
    with pytest.raises(MigrationError, match="x.js:1: not an etl migration"):
        parse_script('db.getCollection("c").drop();\n', "x.js")


def test_apply_runs_once_and_records_the_backup_version(db, tmp_path):
    db.campaigns.insert_many([{"_id": 1, "name": "Spring", "legacy": "x"}, {"_id": 2, "name": "Fall"},
                              {"_id": 3, "title": "Local only"}])
    db.old_reports.insert_one({"_id": 1})
    db.scratch.insert_one({"_id": 1})
    path = _write(tmp_path, [
        Step("updateMany", "campaigns", filter={"name": {"$exists": True}}, update={"$rename": {"name": "title"}}),
        Step("updateMany", "campaigns", filter={"budget": {"$exists": False}},
             update={"$set": {"budget": Decimal128("0.00")}}),
        Step("updateMany", "campaigns", filter={"legacy": {"$exists": True}}, update={"$unset": {"legacy": ""}}),
        Step("rename", "old_reports", target="old_reports__archived"),
        Step("drop", "scratch"),
    ])

    result = apply_migration(db, path, "2026-11-26-001")

    assert result["status"] == "applied" and result["backup_version"] == "2026-11-26-001"
    assert [(s["op"], s.get("matched"), s.get("modified")) for s in result["steps"]][:3] == \
        [("updateMany", 2, 2), ("updateMany", 3, 3), ("updateMany", 1, 1)]
    assert list(db.campaigns.find({}, sort=[("_id", 1)])) == [
        {"_id": 1, "title": "Spring", "budget": Decimal128("0.00")},
        {"_id": 2, "title": "Fall", "budget": Decimal128("0.00")},
        {"_id": 3, "title": "Local only", "budget": Decimal128("0.00")},
    ]
    names = set(db.list_collection_names())
    assert "old_reports__archived" in names and "old_reports" not in names and "scratch" not in names
    record = db[RECORDS].find_one({"_id": path.name})
    assert record["backup_version"] == "2026-11-26-001" and record["sha256"] == result["sha256"]

    db.campaigns.insert_one({"_id": 4, "name": "Loaded later"})
    again = apply_migration(db, path, "2026-11-27-001")
    assert again["status"] == "already-applied" and again["backup_version"] == "2026-11-26-001"
    assert db.campaigns.find_one({"_id": 4}) == {"_id": 4, "name": "Loaded later"}


def test_a_script_changed_after_it_ran_is_refused(db, tmp_path):
    path = _write(tmp_path, [Step("drop", "scratch")])
    apply_migration(db, path, None)
    path.write_text(path.read_text() + 'db.getCollection("other").drop();\n')
    with pytest.raises(MigrationError, match="was applied to .* before and has changed since"):
        apply_migration(db, path, None)


def test_pending_scripts_apply_in_order(db, tmp_path):
    db.c.insert_one({"_id": 1, "a": 1})
    _write(tmp_path, [Step("updateMany", "c", filter={}, update={"$rename": {"b": "c"}})], "2026-11-27-00-00-00.js")
    _write(tmp_path, [Step("updateMany", "c", filter={}, update={"$rename": {"a": "b"}})], "2026-11-26-00-00-00.js")
    results = apply_pending(db, "v1", tmp_path)
    assert [r["script"] for r in results] == ["2026-11-26-00-00-00.js", "2026-11-27-00-00-00.js"]
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "c": 1}
    assert apply_pending(db, "v2", tmp_path) == []


@pytest.mark.parametrize("on_failure", ["set_null", "keep_old", "fail"])
def test_cast_follows_its_failure_policy(db, tmp_path, on_failure):
    rows = [{"_id": 1, "rate": "1.5"}, {"_id": 2, "rate": "n/a"}, {"_id": 3, "rate": None}]
    db.line_items.insert_many(rows)
    path = _write(tmp_path, cast_steps("line_items", "rate", "double", on_failure, "line_items.rate"))
    if on_failure == "fail":
        with pytest.raises(MigrationError, match="cannot become double"):
            apply_migration(db, path, "v1")
        assert list(db.line_items.find({}, sort=[("_id", 1)])) == rows
        return
    result = apply_migration(db, path, "v1")
    assert result["steps"][0]["count"] == 1  # the one value that cannot be cast, reported
    docs = list(db.line_items.find({}, sort=[("_id", 1)]))
    assert docs[0] == {"_id": 1, "rate": 1.5}
    assert docs[2] == {"_id": 3, "rate": None}
    if on_failure == "set_null":
        assert docs[1] == {"_id": 2, "rate": None}
    else:
        assert docs[1] == {"_id": 2, "rate": None, "rate__old": "n/a"}


def test_migrate_command(db, tmp_path, monkeypatch, mongo_db):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "pipeline.env", root / "pipeline.env")
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("MONGO_URI", mongo_db[0])
    monkeypatch.setenv("MONGO_DB_NAME", mongo_db[1])
    monkeypatch.delenv("ETL_DEBUG", raising=False)
    db.campaigns.insert_one({"_id": 1, "name": "Spring"})
    _write(root / "data" / "migrations",
           [Step("updateMany", "campaigns", filter={"name": {"$exists": True}}, update={"$rename": {"name": "title"}})])
    runner = CliRunner()

    checked = runner.invoke(cli, ["migrate", "--check"])
    assert checked.exit_code == 0, checked.output
    assert "2026-11-26-10-00-00.js: 1 statements, format ok" in checked.output
    assert db.campaigns.find_one({"_id": 1}) == {"_id": 1, "name": "Spring"}

    applied = runner.invoke(cli, ["migrate", "--backup-version", "2026-11-26-001"])
    assert applied.exit_code == 0, applied.output
    assert "2026-11-26-10-00-00.js: applied on" in applied.output and "backup 2026-11-26-001" in applied.output
    assert db.campaigns.find_one({"_id": 1}) == {"_id": 1, "title": "Spring"}

    again = runner.invoke(cli, ["migrate"])
    assert again.exit_code == 0 and "no pending migrations" in again.output

    (root / "data" / "migrations" / "2026-11-28-00-00-00.js").write_text("// etl migration format 1\nnope\n")
    broken = runner.invoke(cli, ["migrate"])
    assert broken.exit_code == 1
    assert broken.output.strip().splitlines()[-1].startswith("Error: 2026-11-28-00-00-00.js:2: expected")


@pytest.mark.parametrize("text", ["a / b", "a / c", "a / 10 * 3", "(a + b) * 2 - c", "coalesce(n, a) / 4", "abs(-a) % b",
                                  "round(a / 3, 2)"])
def test_a_backfill_computes_on_the_server_what_the_transform_computes(db, text):
    """One expression language, two places it runs: the transform in Python (etl.model.expr)
    and a migration's backfill on the server (expr.to_aggregation). Same row, same value."""
    from decimal import Decimal

    from etl.model import expr

    row = {"a": 7, "b": 2, "c": 0, "n": None}
    db.rows.insert_one({"_id": 1, **row})
    pipeline = expr.to_aggregation(text, {k: k for k in row})
    assert pipeline is not None
    db.rows.update_many({}, [{"$set": {"out": pipeline}}])
    got = db.rows.find_one({"_id": 1})["out"]
    try:
        want = expr.evaluate(text, row)
    except expr.DivisionByZero:
        want = None  # the calculated fields' default on_error: null
    got = got.to_decimal() if isinstance(got, Decimal128) else got
    assert (got is None and want is None) or Decimal(str(got)) == Decimal(str(want)), (text, got, want)
