"""The schema diff and its classification.

Golden folders (tests/golden/<case>/before.sql, after.sql, expected.json) run on a throwaway
real PostgreSQL, one database per side; the pure rules are also tested on hand-built
snapshots. A folder whose options.json says `"evidence": true` also loads its `before` data
into MongoDB through the real transform (with the folder's rules.yaml, if any), so that rename
candidates are settled by data evidence exactly as `etl detect` does it. After an intended
change of output, regenerate the goldens with `ETL_UPDATE_GOLDEN=1 pytest tests/test_diff.py`
and review the diff of expected.json.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.model.diff import (IMPACT_ROWS, KINDS, change_id, classify, detect_changes, diff_snapshots, parse_type,
                      precision, type_change_direction, type_family, unknown_types)
from etl.core.hashing import content_hash
from etl.stages.snapshot import take_snapshot

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "before.sql").is_file())
SEED_MATRIX = {  # the seed's change impact matrix, transcribed
    "New Optional Field": ("auto", "auto", "auto", "review", "update"),
    "New Required Field": ("review", "review", "breaking", "breaking", "update"),
    "Type Change": ("review", "migration", "review", "review", "update"),
    "Field Rename": ("review", "migration", "breaking", "breaking", "update"),
    "New Relationship": ("auto", "index", "review", "review", "update"),
}


# --- golden folders on a real PostgreSQL --------------------------------------------------
@contextmanager
def _previous_load(pg, before: str, after: str, old: dict, new: dict, folder: Path, mongo_uri: str):
    """Data evidence as `etl detect` gathers it: the `before` database transformed with the
    mapping of its snapshot (and the folder's rules.yaml, if any) and loaded into MongoDB,
    the way the previous night left it; `after` is the restored database it is looked up in."""
    import bson
    import psycopg
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    from etl.stages.transform import fastpath
    from etl.stages.detect import DataEvidence
    from etl.model.mapping import build_mapping
    from etl.adapters.mongodb import connect
    from etl.formats.rules import load_rules
    from etl.stages.transform import plan_collection, run_plan

    mapping = build_mapping(old, load_rules(folder / "rules.yaml"))
    client = connect(mongo_uri)
    target = client[f"golden-{uuid.uuid4().hex[:8]}"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in mapping["collections"].items():
            out = Path(tmp) / f"{name}.bson"
            run_plan(pg.dsn(before), plan_collection(name, spec, mapping, fast=fastpath.available()), out,
                     fast=fastpath.available())
            docs = bson.decode_all(out.read_bytes(), CodecOptions(document_class=RawBSONDocument))
            if docs:
                target[name].insert_many(docs)
    conn = psycopg.connect(pg.dsn(after), autocommit=True)
    try:
        yield DataEvidence(None, old, new, mapping, db=target, conn=conn)
    finally:
        conn.close()
        client.drop_database(target.name)
        client.close()


def _golden_result(pg, case: str, request=None) -> dict:
    folder = GOLDEN / case
    options = json.loads((folder / "options.json").read_text()) if (folder / "options.json").exists() else {}
    before = pg.create_db(f"g_{case}_before", (folder / "before.sql").read_text(encoding="utf-8"))
    after = pg.create_db(f"g_{case}_after", (folder / "after.sql").read_text(encoding="utf-8"))
    old, new = take_snapshot(pg.dsn(before)), take_snapshot(pg.dsn(after))
    if options.get("evidence"):
        with _previous_load(pg, before, after, old, new, folder, request.getfixturevalue("mongo_base_uri")) as ev:
            changes = detect_changes(old, new, strict=options.get("strict", False), evidence=ev)
    else:
        changes = detect_changes(old, new, strict=options.get("strict", False))
    return {"changes": changes, "precision": precision(changes),
            "warnings": [u["message"] for u in unknown_types(new)]}


@pytest.mark.parametrize("case", CASES)
def test_golden(pg, case, request):
    result = _golden_result(pg, case, request)
    expected_file = GOLDEN / case / "expected.json"
    if os.environ.get("ETL_UPDATE_GOLDEN"):
        expected_file.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(expected_file.read_text(encoding="utf-8"))
    assert [c["summary"] for c in result["changes"]] == [c["summary"] for c in expected["changes"]]
    assert result == expected


def test_goldens_cover_every_kind_and_both_classes():
    seen_kinds, seen_classes, directions = set(), set(), set()
    for case in CASES:
        expected = json.loads((GOLDEN / case / "expected.json").read_text(encoding="utf-8"))
        for change in expected["changes"]:
            seen_kinds.add(change["kind"])
            seen_classes.add(change["classification"])
            directions.add(change["details"].get("direction"))
    design_vocabulary = {
        "table_added", "table_removed", "column_added", "column_removed", "column_type_changed",
        "column_nullability_changed", "column_default_changed", "column_renamed", "primary_key_changed",
        "foreign_key_added", "foreign_key_removed", "index_added", "index_removed", "unique_added",
        "unique_removed", "check_added", "check_removed", "enum_value_added", "enum_value_removed"}
    assert design_vocabulary <= set(KINDS)
    assert set(KINDS) - seen_kinds == set()
    assert seen_classes == {"safe", "review"}
    assert {"widening", "narrowing", "lossy", "unknown"} <= directions


# --- hand-built snapshots ----------------------------------------------------------------
def col(name, type_, position=1, nullable=True, kind="base", **extra):
    return {"name": name, "position": position, "type": type_, "type_kind": kind,
            "base_type": type_, "element_type": None, "element_kind": None, "nullable": nullable,
            "default": None, "identity": None, "generated": None, "comment": None, **extra}


def table(qname, *columns, pk=("id",)):
    schema, name = qname.split(".", 1)
    return {"schema": schema, "name": name, "kind": "table", "comment": None, "columns": list(columns),
            "primary_key": {"name": f"{name}_pkey", "columns": list(pk)} if pk else None,
            "foreign_keys": [], "unique": [], "checks": [], "exclusions": [], "indexes": [], "partitions": []}


def snap(*tables, enums=None, domains=None):
    body = {"tables": {f"{t['schema']}.{t['name']}": t for t in tables}, "enums": enums or {},
            "domains": domains or {}, "views": {}}
    return {"format_version": 1, "hash": content_hash(body), "database": "t", **body}


@pytest.fixture
def seed_example():
    old = snap(table("public.campaigns", col("id", "bigint", 1, False), col("legacy_field", "text", 2)),
               table("public.line_items", col("id", "bigint", 1, False), col("rate", "text", 2)))
    new = snap(table("public.campaigns", col("id", "bigint", 1, False),
                     col("performance_score", "numeric(5,2)", 3)),
               table("public.line_items", col("id", "bigint", 1, False), col("rate", "numeric(12,4)", 2)))
    return old, new


def test_seed_words_and_matrix(seed_example):
    changes = {c["summary"]: c for c in detect_changes(*seed_example)}
    assert set(changes) == {"New field: campaigns.performance_score (number)",
                            "Type change: line_items.rate (string → number)",
                            "Dropped: campaigns.legacy_field"}
    new_field = changes["New field: campaigns.performance_score (number)"]
    assert new_field["classification"] == "safe" and new_field["table"] == "public.campaigns"
    assert new_field["impact"] == dict(zip(("zod", "mongodb", "api", "ui", "tests"), SEED_MATRIX["New Optional Field"]))
    rate = changes["Type change: line_items.rate (string → number)"]
    assert rate["classification"] == "review" and rate["details"]["direction"] == "lossy"
    assert rate["impact"] == dict(zip(("zod", "mongodb", "api", "ui", "tests"), SEED_MATRIX["Type Change"]))
    assert changes["Dropped: campaigns.legacy_field"]["classification"] == "review"


def test_matrix_rows_match_the_seed():
    for label, impact in IMPACT_ROWS.values():
        if label in SEED_MATRIX:
            assert tuple(impact[k] for k in ("zod", "mongodb", "api", "ui", "tests")) == SEED_MATRIX[label]
    assert set(SEED_MATRIX) <= {label for label, _ in IMPACT_ROWS.values()}


def test_identical_snapshots_have_no_changes(seed_example):
    old, _ = seed_example
    assert diff_snapshots(old, copy.deepcopy(old)) == []


def test_ids_are_stable_and_ignore_evidence(seed_example):
    first = detect_changes(*seed_example)
    second = detect_changes(*copy.deepcopy(seed_example))
    assert [c["id"] for c in first] == [c["id"] for c in second]
    assert len({c["id"] for c in first}) == len(first)
    rename = {"kind": "column_renamed", "table": "public.t", "column": "a", "from": {"name": "a", "type": "text"},
              "to": {"name": "b", "type": "text"}, "details": {"evidence": {"data": None}}}
    with_data = copy.deepcopy(rename)
    with_data["details"]["evidence"]["data"] = {"available": True, "equal": 5}
    assert change_id(rename) == change_id(with_data)
    assert change_id(rename) != change_id(dict(rename, to={"name": "c", "type": "text"}))


def test_strict_mode_makes_everything_review(seed_example):
    changes = detect_changes(*seed_example, strict=True)
    assert {c["classification"] for c in changes} == {"review"}
    new_field = next(c for c in changes if c["kind"] == "column_added")
    assert new_field["reason"].startswith("strict mode") and "new optional field" in new_field["reason"]


def test_rename_needs_a_compatible_type():
    old = snap(table("public.t", col("id", "integer", 1, False), col("a", "text", 2)))
    renamed = snap(table("public.t", col("id", "integer", 1, False), col("b", "text", 2)))
    retyped = snap(table("public.t", col("id", "integer", 1, False), col("b", "integer", 2)))
    [rename] = diff_snapshots(old, renamed)
    assert rename["kind"] == "column_renamed" and rename["to"]["name"] == "b"
    assert rename["details"]["evidence"]["position"]["same"] is True
    assert sorted(c["kind"] for c in diff_snapshots(old, retyped)) == ["column_added", "column_removed"]


@pytest.mark.parametrize("old_type,new_type,direction", [
    ("smallint", "integer", "widening"), ("integer", "bigint", "widening"), ("bigint", "integer", "narrowing"),
    ("integer", "numeric(10,0)", "widening"), ("integer", "numeric(9,0)", "lossy"),
    ("character varying(10)", "character varying(20)", "widening"),
    ("character varying(20)", "character varying(10)", "narrowing"),
    ("character varying(10)", "text", "widening"), ("text", "character varying(10)", "narrowing"),
    ("character varying", "text", "widening"), ("character(5)", "character varying(5)", "widening"),
    ("character varying(5)", "character(10)", "lossy"), ("character(5)", "character(8)", "widening"),
    ("numeric(10,2)", "numeric(12,2)", "widening"), ("numeric(10,2)", "numeric(12,4)", "widening"),
    ("numeric(10,2)", "numeric(10,4)", "lossy"), ("numeric(12,2)", "numeric(10,2)", "narrowing"),
    ("numeric(10,2)", "numeric", "widening"), ("numeric", "numeric(10,2)", "narrowing"),
    ("timestamp without time zone", "timestamp with time zone", "widening"),
    ("timestamp with time zone", "timestamp without time zone", "narrowing"),
    ("timestamp(6) without time zone", "timestamp(3) without time zone", "narrowing"),
    ("date", "timestamp with time zone", "widening"),
    ("real", "double precision", "widening"), ("bigint", "double precision", "lossy"),
    ("text", "numeric", "lossy"), ("text", "integer", "lossy"), ("boolean", "text", "lossy"),
    ("integer[]", "bigint[]", "widening"), ("integer[]", "integer", "lossy"),
    ("text", "tsvector", "unknown"), ("public.geometry", "text", "unknown"),
])
def test_type_change_direction(old_type, new_type, direction):
    empty = snap()
    assert type_change_direction(col("c", old_type), col("c", new_type), empty, empty) == direction


def test_domain_and_enum_types_resolve():
    s = snap(enums={"public.status": ["a", "b"]},
             domains={"public.money": {"base_type": "numeric(14,2)", "nullable": True, "default": None,
                                       "checks": ["CHECK ((VALUE >= (0)::numeric))"]}})
    assert type_family(col("c", "public.money", kind="domain"), s) == "number"
    assert type_family(col("c", "public.status", kind="enum"), s) == "enum"
    assert type_family(col("c", "public.status[]", kind="array"), s) == "enum[]"
    assert type_family(col("c", "public.geometry"), s) == "unknown type public.geometry"
    # moving a column onto a domain with a CHECK may reject values it held before
    assert type_change_direction(col("c", "numeric(14,2)"), col("c", "public.money"), s, s) == "narrowing"
    assert type_change_direction(col("c", "public.money"), col("c", "numeric(14,2)"), s, s) == "widening"


def test_unknown_type_is_reported_by_name_not_a_crash():
    old = snap(table("public.t", col("id", "integer", 1, False)))
    new = snap(table("public.t", col("id", "integer", 1, False), col("shape", "public.geometry", 2)))
    [change] = classify(diff_snapshots(old, new), old, new)
    assert change["classification"] == "review"
    assert "public.geometry" in change["reason"] and "public.geometry" in change["summary"]
    [warning] = unknown_types(new)
    assert warning["type"] == "public.geometry" and "t.shape" in warning["message"]


def test_parse_type():
    assert parse_type("character varying(20)[]") == ("character varying", (20,), 1)
    assert parse_type("timestamp(3) with time zone") == ("timestamp with time zone", (3,), 0)
    assert parse_type("numeric(12,2)") == ("numeric", (12, 2), 0)
    assert parse_type('"Sales Ops"."Größe"') == ('"Sales Ops"."Größe"', (), 0)


# --- any pair of schemas: no crash, known kinds, unique ids ---------------------------------
TYPE_NAMES = st.sampled_from(["integer", "bigint", "smallint", "text", "character varying(20)", "numeric(10,2)",
                              "numeric", "boolean", "date", "timestamp with time zone", "jsonb", "bytea",
                              "text[]", "public.status", "public.money", "tsvector", "public.geometry", "xml"])
COLUMN_NAMES = st.sampled_from(["id", "a", "b", "c", "d", "Größe", "with space"])


@st.composite
def snapshots(draw):
    tables = []
    for name in draw(st.lists(st.sampled_from(["public.t1", "public.t2", "other.t3", "public.Ü"]),
                              unique=True, max_size=3)):
        names = draw(st.lists(COLUMN_NAMES, unique=True, min_size=1, max_size=5))
        cols = [col(n, draw(TYPE_NAMES), i + 1, draw(st.booleans())) for i, n in enumerate(names)]
        t = table(name, *cols, pk=draw(st.sampled_from([None, names[:1], names[:2]])))
        if draw(st.booleans()):
            t["indexes"].append({"name": "ix", "columns": names[-1:], "include": [], "unique": draw(st.booleans()),
                                 "predicate": None, "method": "btree", "definition": ""})
        tables.append(t)
    statuses = draw(st.lists(st.sampled_from(["draft", "active", "paused"]), unique=True, min_size=1))
    return snap(*tables, enums={"public.status": statuses},
                domains={"public.money": {"base_type": draw(st.sampled_from(["numeric(14,2)", "numeric(10,2)"])),
                                          "nullable": True, "default": None, "checks": []}})


@settings(max_examples=150, deadline=None)
@given(snapshots(), snapshots(), st.booleans())
def test_any_two_snapshots_classify_cleanly(old, new, strict):
    assert diff_snapshots(old, copy.deepcopy(old)) == []
    changes = detect_changes(old, new, strict=strict)
    assert len({c["id"] for c in changes}) == len(changes)
    for c in changes:
        assert c["kind"] in KINDS and c["classification"] in ("safe", "review") and c["summary"]
        assert set(c["impact"]) == {"zod", "mongodb", "api", "ui", "tests"}
        assert not (strict and c["classification"] == "safe")
    json.dumps(changes)  # the document must serialise as it is written


# --- renames: structure, data evidence, what follows them ------------------------------------
class FixedEvidence:
    """Data evidence that answers the same for every candidate (what DataEvidence returns)."""

    def __init__(self, found: int, equal: int):
        self.data = {"available": True, "source": "mongodb", "collection": "t", "sampled": found,
                     "found_in_postgres": found, "equal": equal}
        self.asked: list[tuple] = []

    def column(self, *args):
        self.asked.append(("column", *args))
        return dict(self.data)

    def table(self, *args):
        self.asked.append(("table", *args))
        return dict(self.data)


def test_data_evidence_refutes_or_supports_a_candidate():
    old = snap(table("public.t", col("id", "integer", 1, False), col("a", "integer", 2)))
    same_shape = snap(table("public.t", col("id", "integer", 1, False), col("b", "integer", 2)))
    refuting = FixedEvidence(found=60, equal=0)
    kinds = [c["kind"] for c in diff_snapshots(old, same_shape, refuting)]
    assert kinds == ["column_removed", "column_added"]
    assert refuting.asked == [("column", "public.t", "public.t", "a", "b")]
    [removed] = [c for c in diff_snapshots(old, same_shape, refuting) if c["kind"] == "column_removed"]
    [why] = removed["details"]["not_a_rename"]
    assert why["column"] == "b" and why["ruled_out_by"] == "data evidence" and "0 of 60" in why["reason"]
    assert [c["kind"] for c in diff_snapshots(old, same_shape, FixedEvidence(found=60, equal=58))] == ["column_renamed"]
    # too few documents found to tell: the structure decides
    assert [c["kind"] for c in diff_snapshots(old, same_shape, FixedEvidence(found=2, equal=0))] == ["column_renamed"]

    # now NOT NULL with a default: two differences, a rename only when the data says so
    moved = snap(table("public.t", col("id", "integer", 1, False), col("b", "integer", 2, False, default="0")))
    assert "column_renamed" not in [c["kind"] for c in diff_snapshots(old, moved)]
    assert "column_renamed" not in [c["kind"] for c in diff_snapshots(old, moved, FixedEvidence(found=40, equal=10))]
    renamed = diff_snapshots(old, moved, FixedEvidence(found=40, equal=40))
    assert [c["kind"] for c in renamed][:1] == ["column_renamed"]
    assert {(c["kind"], c["column"]) for c in renamed[1:]} == {("column_nullability_changed", "b"),
                                                                ("column_default_changed", "b")}


def test_precision_counts_what_was_folded_and_suppressed():
    old = snap(table("public.t", col("id", "integer", 1, False), col("ref", "integer", 2), col("flag", "boolean", 3)))
    old["tables"]["public.t"]["indexes"].append({"name": "t_ref_idx", "columns": ["ref"], "include": [],
                                                 "unique": False, "predicate": "(ref > 0)", "method": "btree",
                                                 "definition": ""})
    new = snap(table("public.t", col("id", "integer", 1, False), col("ref_id", "integer", 2),
                     col("hidden", "boolean", 3, False, default="false")))
    new["tables"]["public.t"]["columns"][2]["position"] = 4
    new["tables"]["public.t"]["indexes"].append({"name": "t_ref_idx", "columns": ["ref_id"], "include": [],
                                                 "unique": False, "predicate": "(ref_id > 0)", "method": "btree",
                                                 "definition": ""})
    changes = detect_changes(old, new)
    assert [c["kind"] for c in changes] == ["column_renamed", "column_removed", "column_added"]
    assert changes[0]["details"]["folded"][0]["instead_of"] == ["index_removed", "index_added"]
    assert precision(changes) == {
        "reported": 3, "folded": 2, "suppressed": 1,
        "folded_by_reason": {"follows a column rename": 2},
        "suppressed_by_reason": {"rename ruled out: nullability, default, position or references differ": 1}}


def test_renamed_names_inside_expressions():
    from etl.model.diff import _rename_idents, _without_casts

    renames = {"email": "mail", "Größe": "size"}
    assert _rename_idents("(lower((email)::text) = 'email'::text)", renames) == "(lower((mail)::text) = 'email'::text)"
    assert _rename_idents('("Größe" > 0)', renames) == "(size > 0)"
    assert _rename_idents("email(x)", renames) == "email(x)"  # a function of that name stays
    assert _rename_idents("(emails IS NULL)", renames) == "(emails IS NULL)"
    assert _rename_idents("(mail > 1)", {"mail": "Mail Box"}) == '("Mail Box" > 1)'
    assert _without_casts("(score <> (0)::double precision)") == _without_casts("(score <> 0)") == "(score <> 0)"
    assert _without_casts("(at > ('2026-01-01'::date)::timestamp with time zone)") == "(at > '2026-01-01')"
    assert _without_casts("(n >= (5)::numeric(10,2))") != _without_casts("(n >= 6)")
