"""Transform: real PostgreSQL -> BSON files in the mongodump layout, with every policy counted."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from click.testing import CliRunner

from etl.formats.dumpdir import iter_docs, read_manifest, read_metadata, verify
from etl.cli import cli
from etl.core.config import load_config
from etl.model.mapping import build_mapping
from etl.formats.mapping import write_mapping
from etl.core.paths import paths
from etl.stages.snapshot import take_snapshot
from etl.stages.transform.policies import parse_pg_timestamp
from etl.stages.transform import transform

SCHEMA = r"""
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN money2 AS numeric(12,2) CHECK (VALUE >= 0);
CREATE TABLE kinds (
  id bigint PRIMARY KEY, small smallint, num numeric(14,2), big_num numeric, price money2,
  ratio double precision, flag boolean, day date, at timestamptz, plain_ts timestamp,
  t time, iv interval, u uuid, doc jsonb, raw_json json, tags text[], grid int[][], blob bytea,
  m mood, addr inet, note varchar(20), cash money, pt point, days date[], amounts numeric[]
);
CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
CREATE TABLE loose (x int, y text);
CREATE TABLE events (id int, at date NOT NULL, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO kinds VALUES
 (1, 7, 1234.50, 'NaN', 10.00, 1.5, true, '2024-02-29', '2024-03-01 12:34:56.789123+02', '1999-12-31 23:59:59',
  '13:45:00', '1 day 2 hours', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": {"b": [1, 2.5, "x"]}, "ok": true}',
  '{"k": 1}', '{"x","y z"}', '{{1,2},{3,4}}', '\x000102ff', 'happy', '192.168.0.1/32', 'hello', 12.34,
  '(1,2)', '{2024-01-01,NULL}', '{1.10,2.25}'),
 (2, NULL, -0.00, 'Infinity', NULL, 'NaN', false, 'infinity', '-infinity', '0044-03-15 10:00:00 BC',
  NULL, NULL, NULL, '{"a.b": 1, "$set": {"c.d": 2}, "fine": "x.y"}', '{"a\u0000b": "c"}', '{}', '{}', NULL,
  NULL, NULL, NULL, NULL, NULL, '{}', NULL),
 (3, -32768, 99999999999.99, '12345678901234567890.123456789012345678', 0, '-Infinity', NULL,
  '0001-01-01', '9999-12-31 23:59:59.999+00', '10000-01-01 00:00:00', NULL, NULL, NULL, '[1, {"$date": 5}]',
  NULL, '{"ünï", "emoji 🎉", "q\"uote\\"}', NULL, '\x', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO pairs VALUES (1, 'x', 10), (1, 'y', 11);
INSERT INTO loose VALUES (1, 'a'), (1, 'a');
INSERT INTO events VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b');
"""


@pytest.fixture
def source(project, pg):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], SCHEMA)
    snapshot = take_snapshot(cfg.pg_conninfo)
    mapping = build_mapping(snapshot)
    write_mapping(mapping)
    return cfg, mapping


def _docs(cfg, name):
    return {repr(d.get("_id")): d for d in iter_docs(paths.transformed / cfg["MONGO_DB_NAME"] / f"{name}.bson")}


def test_every_type_lands_as_documented(source):
    cfg, mapping = source
    result = transform(cfg, mapping=mapping, workers=1)
    assert sorted(result.transformed) == ["events", "kinds", "loose", "pairs"]
    docs = _docs(cfg, "kinds")
    one, two, three = docs["Int64(1)"] if "Int64(1)" in docs else docs["1"], docs["2"], docs["3"]
    assert isinstance(one["_id"], int) and one["_id"] == 1
    assert one["small"] == 7
    assert one["num"] == Decimal128("1234.50")
    assert one["price"] == Decimal128("10.00")
    assert one["ratio"] == 1.5 and isinstance(one["ratio"], float)
    assert one["flag"] is True
    assert one["day"] == dt.datetime(2024, 2, 29, tzinfo=dt.timezone.utc)
    assert one["at"] == dt.datetime(2024, 3, 1, 10, 34, 56, 789000, tzinfo=dt.timezone.utc)
    assert one["plain_ts"] == dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    assert one["t"] == "13:45:00"
    assert one["iv"] == "P1DT2H"
    assert one["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert one["doc"] == {"a": {"b": [1, 2.5, "x"]}, "ok": True}
    assert one["raw_json"] == {"k": 1}
    assert one["tags"] == ["x", "y z"]
    assert one["grid"] == [[1, 2], [3, 4]]
    assert one["blob"] == b"\x00\x01\x02\xff"
    assert one["m"] == "happy" and one["addr"] == "192.168.0.1/32" and one["note"] == "hello"
    assert one["cash"] == Decimal128("12.34")
    assert one["pt"] == "(1,2)"  # unlisted type: its text, by the stated policy
    assert one["days"] == [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), None]
    assert one["amounts"] == [Decimal128("1.10"), Decimal128("2.25")]
    assert one["big_num"].to_decimal().is_nan()

    assert str(two["num"]) == "0.00"  # PostgreSQL's numeric has no negative zero
    assert str(two["big_num"]) == "Infinity"
    assert two["ratio"] != two["ratio"]  # NaN kept
    assert two["day"] is None and two["at"] is None  # infinity -> null
    assert two["plain_ts"] == DatetimeMS(parse_pg_timestamp("0044-03-15 10:00:00 BC"))
    assert two["doc"] == {"a\uff0eb": 1, "\uff04set": {"c\uff0ed": 2}, "fine": "x.y"}
    assert two["raw_json"] == {"a\ufffdb": "c"}
    assert two["tags"] == [] and two["grid"] == [] and two["days"] == []
    assert "pt" in two and two["pt"] is None

    assert three["small"] == -32768
    assert three["big_num"] == Decimal128("12345678901234567890.12345678901235")
    assert three["at"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc)
    assert isinstance(three["plain_ts"], DatetimeMS)  # year 10000: exact, outside Python's range
    assert three["doc"] == [1, {"\uff04date": 5}]
    assert three["tags"] == ["ünï", "emoji 🎉", 'q"uote\\']
    assert three["blob"] == b""

    entry = read_manifest(result.folder)["collections"]["kinds"]
    assert entry["count"] == 3
    assert entry["policies"] == {
        "numeric_nan_kept": 1, "numeric_infinity_kept": 1, "numeric_rounded_to_34_digits": 1,
        "double_nan_kept": 1, "double_infinity_kept": 1, "date_infinity_nulled": 2,
        "date_out_of_range_kept": 2, "json_key_renamed": 5}


def test_keys_partitions_and_manifest(source):
    cfg, mapping = source
    result = transform(cfg, mapping=mapping, workers=2)
    pairs = sorted(iter_docs(result.folder / "pairs.bson"), key=lambda d: d["b"])
    assert [d["_id"] for d in pairs] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}]
    assert [d["v"] for d in pairs] == [10, 11]
    loose = list(iter_docs(result.folder / "loose.bson"))
    assert len(loose) == 2 and all("_id" not in d for d in loose)
    events = sorted(d["what"] for d in iter_docs(result.folder / "events.bson"))
    assert events == ["a", "b"]  # both partitions, one collection

    manifest = read_manifest(result.folder)
    verify(result.folder, manifest)
    assert manifest["mapping_hash"] == mapping["hash"]
    assert manifest["collections"]["loose"]["refresh"] == "full"
    assert "no primary key" in manifest["collections"]["loose"]["notes"][0]
    meta = read_metadata(result.folder / "kinds.metadata.json")
    assert meta["collectionName"] == "kinds" and meta["indexes"][0]["name"] == "_id_"


def test_unchanged_tables_are_skipped_and_changed_ones_redone(source, pg):
    cfg, mapping = source
    first = transform(cfg, mapping=mapping, workers=1)
    before = (first.folder / "manifest.json").stat().st_mtime_ns
    second = transform(cfg, mapping=mapping, workers=1)
    assert second.transformed == []
    assert not second.manifest_written
    assert (first.folder / "manifest.json").stat().st_mtime_ns == before

    with psycopg.connect(pg.dsn(cfg["LOCAL_PG_DB"]), autocommit=True) as conn:
        conn.execute("UPDATE pairs SET v = 12 WHERE b = 'y'")
    third = transform(cfg, mapping=mapping, workers=1)
    assert third.transformed == ["pairs"]
    assert sorted(d["v"] for d in iter_docs(first.folder / "pairs.bson")) == [10, 12]
    assert third.manifest_written


def test_rules_and_cast_decisions_are_applied(project, pg):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], """
        CREATE TABLE items (id int PRIMARY KEY, rate numeric(10,4), units int, code text);
        INSERT INTO items VALUES (1, 2.125, 3000, '42'), (2, 2.135, NULL, 'abc'), (3, NULL, 10, NULL);
    """)
    snapshot = take_snapshot(cfg.pg_conninfo)
    rules = {"version": 1, "collections": {"items": {
        "fields": {"rate": {"round": {"places": 2, "mode": "half_even"}}},
        "calculated": {"cost": {"expression": "rate * units / 1000", "bson": "decimal", "round": 3}}}}}
    mapping = build_mapping(snapshot, rules)
    code = next(f for f in mapping["collections"]["items"]["fields"] if f["column"] == "code")
    code.update(bson="int", cast={"strategy": "cast", "on_failure": "keep_old"}, archive_as="code__old")
    result = transform(cfg, mapping=mapping, workers=1)
    docs = {d["_id"]: d for d in iter_docs(result.folder / "items.bson")}
    assert docs[1]["rate"] == Decimal128("2.12") and docs[2]["rate"] == Decimal128("2.14")
    assert docs[1]["cost"] == Decimal128("6.375")
    assert docs[2]["cost"] is None and docs[3]["cost"] is None
    assert docs[1]["code"] == 42 and "code__old" not in docs[1]
    assert docs[2]["code"] is None and docs[2]["code__old"] == "abc"
    assert docs[3]["code"] is None
    entry = read_manifest(result.folder)["collections"]["items"]
    assert entry["cast_failures"] == {"code": 1}

    code["cast"]["on_failure"] = "fail"
    runner_cfg = cfg
    with pytest.raises(Exception) as info:
        transform(runner_cfg, mapping=mapping, workers=1, force=True)
    assert "does not cast to int" in str(info.value)
    assert (result.folder / "items.bson").is_file()  # the previous output stays


def test_cli_reports_one_line_errors(project, pg):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], "CREATE TABLE a (id int PRIMARY KEY)")
    (project / "schemas" / "mapping.json").unlink(missing_ok=True)  # the tracked sample's
    runner = CliRunner()
    res = runner.invoke(cli, ["transform"])
    assert res.exit_code == 1
    assert "mapping.json not found" in res.output and "Traceback" not in res.output

    write_mapping(build_mapping(take_snapshot(cfg.pg_conninfo)))
    res = runner.invoke(cli, ["transform"])
    assert res.exit_code == 0, res.output
    assert "transformed 1 of 1 collections" in res.output
    res = runner.invoke(cli, ["transform", "--db", "bad/name"])
    assert res.exit_code == 1 and "forbids" in res.output


def test_unreachable_database_is_one_clear_error(project, monkeypatch):
    from etl.core.errors import DatabaseError

    monkeypatch.setenv("LOCAL_PG_PORT", "1")
    monkeypatch.setenv("LOCAL_PG_PASSWORD", "s3cret-pw")
    cfg = load_config()
    mapping = {"format_version": 1, "hash": "x", "collections": {
        "a": {"table": "public.a", "id": {"kind": "single", "columns": ["id"]}, "refresh": "incremental-capable",
              "fields": [{"name": "_id", "column": "id", "pg_type": "integer", "bson": "int"}]}}}
    with pytest.raises(DatabaseError) as info:
        transform(cfg, mapping=mapping, workers=1)
    assert "s3cret-pw" not in str(info.value)


def test_uuid_binary_and_double_serialization(project, pg):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], """
        CREATE TABLE b (id uuid PRIMARY KEY, amount numeric(8,3), big bigint);
        INSERT INTO b VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.005, 5);
    """)
    rules = {"version": 1, "collections": {"b": {"fields": {
        "id": {"serialize": "binary"}, "amount": {"serialize": "double"}}}}}
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo), rules)
    result = transform(cfg, mapping=mapping, workers=1)
    (doc,) = iter_docs(result.folder / "b.bson")
    assert doc["_id"] == Binary(uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").bytes, 4) or \
        doc["_id"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert doc["amount"] == 1.005 and isinstance(doc["amount"], float)
    assert doc["big"] == 5 and isinstance(doc["big"], Int64)


def test_timestamp_parser_matches_python_for_ordinary_dates():
    for text, want in [("2024-02-29", dt.datetime(2024, 2, 29)),
                       ("1969-12-31 23:59:59.9995", dt.datetime(1969, 12, 31, 23, 59, 59, 999500)),
                       ("0001-01-01 00:00:00+00", dt.datetime(1, 1, 1)),
                       ("2024-03-01 12:00:00+02", dt.datetime(2024, 3, 1, 10))]:
        epoch = dt.datetime(1970, 1, 1)
        delta = want - epoch
        expected = (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
        assert parse_pg_timestamp(text) == expected
    assert parse_pg_timestamp("infinity") is None
    day = 86400000
    assert parse_pg_timestamp("0001-12-31 BC") == parse_pg_timestamp("0001-01-01") - day
    assert parse_pg_timestamp("0001-01-01 BC") == parse_pg_timestamp("0001-01-01") - 366 * day  # 1 BC is a leap year


def test_a_mapping_naming_a_missing_table_is_a_clear_error(project, pg):
    from etl.core.errors import TransformError

    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], "CREATE TABLE a (id int PRIMARY KEY)")
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    mapping["collections"]["gone"] = dict(mapping["collections"]["a"], table="public.gone")
    with pytest.raises(TransformError, match="public.gone .*does not exist"):
        transform(cfg, mapping=mapping, workers=1)


def test_a_query_failing_midway_keeps_the_previous_output(project, pg):
    from etl.core.errors import DatabaseError

    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], "CREATE TABLE a (id int PRIMARY KEY, code text);"
                                     "INSERT INTO a SELECT g, g::text FROM generate_series(1, 5000) g")
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    result = transform(cfg, mapping=mapping, workers=1)
    before = (result.folder / "a.bson").read_bytes()
    pg.execute(cfg["LOCAL_PG_DB"], "UPDATE a SET code = 'x' WHERE id = 4000")
    code = next(f for f in mapping["collections"]["a"]["fields"] if f["column"] == "code")
    code.update(read_as="integer", bson="int")  # row 4000 no longer reads as an integer
    with pytest.raises(DatabaseError, match="reading public.a failed: .*invalid input syntax"):
        transform(cfg, mapping=mapping, workers=1)
    assert (result.folder / "a.bson").read_bytes() == before
    assert not [p for p in result.folder.iterdir() if p.name.startswith(".")]


def test_values_nulled_inside_embedded_children_are_counted(project, pg):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], """
        CREATE TABLE parent (id int PRIMARY KEY, name text);
        CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent, at timestamptz, doc jsonb);
        INSERT INTO parent VALUES (1, 'a'), (2, 'b');
        INSERT INTO child VALUES (10, 1, 'infinity', '{"ok": 1}'), (11, 1, '2024-01-01', '{"a.b": 1}'),
                                 (12, 2, '-infinity', NULL), (13, 2, '2024-01-02', '{"$x": 2}'),
                                 (14, NULL, 'infinity', '{"$orphan": 1}');
    """)
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    embed = {"collection": "child", "as": "kids", "foreign_key": ["parent_id"], "sort": [["_id", 1]], "limit": None}
    mapping["collections"]["parent"]["embed"] = [embed]
    result = transform(cfg, mapping=mapping, collections=["parent"], force=True, workers=1)
    docs = {d["_id"]: d for d in iter_docs(result.folder / "parent.bson")}
    assert [k["at"] for k in docs[1]["kids"]] == [None, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)]
    assert docs[1]["kids"][1]["doc"] is None and docs[2]["kids"][1]["doc"] is None
    # The orphan child (no parent) is not embedded anywhere, so not counted.
    assert result.collections["parent"].counters == {"embedded_kids_at_nulled": 2, "embedded_kids_doc_nulled": 2}
    # With a limit, only the children a parent keeps count.
    embed.update(limit=1, sort=[["_id", -1]])
    result = transform(cfg, mapping=mapping, collections=["parent"], force=True, workers=1)
    assert result.collections["parent"].counters == {"embedded_kids_doc_nulled": 2}
    assert read_manifest(result.folder)["collections"]["parent"]["policies"] == {"embedded_kids_doc_nulled": 2}
