"""The transform's fast path (binary COPY + the C encoder) against the general path: the same
rows must give the same documents, byte for byte, and the same policy counts; rows that need a
policy go through the general path and nothing is lost. Real PostgreSQL throughout."""

from __future__ import annotations

import struct
from collections import Counter

import bson
import pytest
from bson import json_util
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_types_roundtrip import COLUMNS, check, insert_rows, rows, typed_table

from etl.stages.transform import _pgbson
from etl.stages.transform import fastpath
from etl.formats.dumpdir import iter_raw, read_manifest
from etl.model.bsoncodec import CODEC
from etl.core.config import load_config
from etl.model.mapping import build_mapping
from etl.stages.snapshot import take_snapshot
from etl.stages.transform import plan_collection, run_plan, transform

# Every column of the round-trip table the fast path reads (numeric[] is not one of them).
FAST_COLUMNS = {k: v for k, v in COLUMNS.items() if k != "amounts"}


def both_paths(cfg, mapping, name, tmp_path, where=None):
    """(fast documents, fast counters, general documents, general counters) of one collection;
    the fast counters include `rows_via_general_path`."""
    plan = plan_collection(name, mapping["collections"][name], mapping)
    assert plan.fast is not None, plan.general_reason
    fast = run_plan(cfg.pg_conninfo, plan, tmp_path / "fast.bson", where)
    general = run_plan(cfg.pg_conninfo, plan, tmp_path / "general.bson", where, fast=False)
    fast_docs = list(iter_raw(tmp_path / "fast.bson"))
    general_docs = list(iter_raw(tmp_path / "general.bson"))
    assert fast.count == len(fast_docs) and general.count == len(general_docs)
    assert fast.reader == "binary-copy" or fast.via_general == fast.count
    assert general.reader == "sql-json" and general.via_general == 0
    return (fast_docs, Counter(fast.counters, rows_via_general_path=fast.via_general), general_docs,
            Counter(general.counters))


def _readable(docs: list[bytes]) -> list[str]:
    """Canonical extended JSON with types, sorted: a readable difference when bytes differ."""
    return sorted(json_util.dumps(bson.decode(raw, codec_options=CODEC), json_options=json_util.CANONICAL_JSON_OPTIONS)
                  for raw in docs)


@pytest.fixture
def table(project, pg):
    yield from typed_table(pg, "ft", FAST_COLUMNS)


# Values only the general path can take, mixed into the rows (as text, cast by PostgreSQL).
SPECIALS = {"ts": ["infinity", "-infinity", "10000-01-01 00:00:00", "0001-01-01 00:00:00 BC"],
            "tz": ["infinity", "-infinity"], "day": ["-infinity", "9999-12-31", "0010-02-03 BC"]}
mixed_rows = st.builds(lambda row, extra: {**row, **extra}, rows,
                       st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in SPECIALS.items()}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(mixed_rows, min_size=1, max_size=8))
def test_fast_path_documents_are_the_general_paths(table, tmp_path, batch):
    cfg, mapping, conn = table
    conn.execute("TRUNCATE ft")
    insert_rows(conn, "ft", FAST_COLUMNS, batch)
    fast, fast_counts, general, general_counts = both_paths(cfg, mapping, "ft", tmp_path)
    assert _readable(fast) == _readable(general)
    assert sorted(fast) == sorted(general)
    via_general = fast_counts.pop("rows_via_general_path", 0)
    assert fast_counts == general_counts
    # Rows the encoder left out are exactly those the general path had to treat specially.
    assert via_general <= len(batch)
    docs = {d["_id"]: d for d in (bson.decode(raw, codec_options=CODEC) for raw in fast)}
    for i, row in enumerate(batch):
        for col in FAST_COLUMNS:
            if not isinstance(row[col], str) or col not in SPECIALS:
                check(col, docs[i].get(col), row[col])


SPECIAL_ROWS = [
    # (column, SQL literal, general-path counter it should produce)
    ("ts", "'infinity'", "date_infinity_nulled"),
    ("tz", "'-infinity'", "date_infinity_nulled"),
    ("day", "'10000-01-01'", "date_out_of_range_kept"),
    ("day", "'0044-03-15 BC'", "date_out_of_range_kept"),
    ("n", "'1234567890123456789012345678901234567.5'", "numeric_rounded_to_34_digits"),
    ("doc", """'{"$set": 1, "a.b": {"$inc": 2}}'""", "json_key_renamed"),
    ("doc", """'{"wide": 123456789012345678901234567890}'""", None),
    # A key ending in an escaped quote once hid its "." from the pattern that routes keys to
    # their policy: the key went into MongoDB unrenamed.
    ("doc", """'{".\\"": null}'""", "json_key_renamed"),
]


def test_rows_needing_a_policy_go_through_the_general_path(table, tmp_path):
    cfg, mapping, conn = table
    conn.execute("INSERT INTO ft (id, n, d, r, t) SELECT g, g / 3.0, g * 0.5, g, 'row ' || g "
                 "FROM generate_series(100, 1099) g")
    conn.execute("INSERT INTO ft (id, n, d) VALUES (1, 'NaN', 'NaN'), (2, 'Infinity', '-Infinity'), "
                 "(3, '-Infinity', 'Infinity')")
    for i, (col, literal, _) in enumerate(SPECIAL_ROWS):
        conn.execute(f"INSERT INTO ft (id, {col}) VALUES ({10 + i}, {literal})")
    fast, fast_counts, general, general_counts = both_paths(cfg, mapping, "ft", tmp_path)
    assert len(fast) == len(general) == 1000 + 3 + len(SPECIAL_ROWS)
    assert sorted(fast) == sorted(general)
    assert fast_counts.pop("rows_via_general_path") == len(SPECIAL_ROWS)
    assert fast_counts == general_counts
    for _, _, counter in SPECIAL_ROWS:
        if counter:
            assert general_counts[counter] >= 1, counter
    # The encoder counts the non-finite numbers it keeps, as the general path does.
    assert fast_counts["numeric_nan_kept"] == 1 and fast_counts["numeric_infinity_kept"] == 2
    assert fast_counts["double_nan_kept"] == 1 and fast_counts["double_infinity_kept"] == 2
    # The plain rows came from the encoder, in table order, before the looked-up ones.
    assert [bson.decode(raw)["_id"] for raw in fast[:3]] == [100, 101, 102]
    # The key with an escaped quote is renamed like any key holding a ".".
    quoted = 10 + next(i for i, (_, literal, _) in enumerate(SPECIAL_ROWS) if '\\"' in literal)
    for docs in (fast, general):
        doc = next(d for d in (bson.decode(raw, codec_options=CODEC) for raw in docs) if d["_id"] == quoted)
        assert list(doc["doc"]) == ['\uff0e"'], doc["doc"]


def test_many_flagged_rows_redo_the_part_through_the_general_path(table, tmp_path, monkeypatch):
    cfg, mapping, conn = table
    conn.execute("INSERT INTO ft (id, ts, t) SELECT g, CASE WHEN g % 2 = 0 THEN 'infinity' "
                 "ELSE TIMESTAMP '2024-01-01' END, 'x' FROM generate_series(1, 300) g")
    monkeypatch.setattr(fastpath, "FLAGGED_LIMIT", 50)
    fast, fast_counts, general, general_counts = both_paths(cfg, mapping, "ft", tmp_path)
    assert sorted(fast) == sorted(general) and len(fast) == 300
    assert fast_counts.pop("rows_via_general_path") == 300
    assert fast_counts == general_counts
    assert general_counts["date_infinity_nulled"] == 150


def test_key_ranges_and_partitions(project, pg, tmp_path):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], """
        CREATE TABLE ev (region text, id bigint, at timestamptz, tags text[], PRIMARY KEY (region, id))
            PARTITION BY LIST (region);
        CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
        CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
        INSERT INTO ev SELECT CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, g,
               CASE WHEN g % 97 = 0 THEN 'infinity' ELSE TIMESTAMPTZ '2024-01-01' + g * INTERVAL '1 min' END,
               ARRAY[ARRAY['a', NULL], ARRAY['c', 'd' || g]] FROM generate_series(1, 2000) g;
    """)
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    spec = mapping["collections"]["ev"]
    assert spec["id"]["kind"] == "composite"
    # Flagged rows of two partitions share ctids: they are looked up by (tableoid, ctid).
    fast, fast_counts, general, general_counts = both_paths(cfg, mapping, "ev", tmp_path)
    assert sorted(fast) == sorted(general) and len(fast) == 2000
    assert fast_counts.pop("rows_via_general_path") == 2000 // 97
    assert fast_counts == general_counts
    part, _, part_general, _ = both_paths(cfg, mapping, "ev", tmp_path, where="t.id <= 1000")
    assert sorted(part) == sorted(part_general) and len(part) == 1000


def test_collections_the_encoder_cannot_read_say_why(project, pg):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], """
        CREATE TABLE plain (id int PRIMARY KEY, label text);
        CREATE TABLE with_json (id int PRIMARY KEY, body json);
        CREATE TABLE with_decimals (id int PRIMARY KEY, amounts numeric[]);
        CREATE VIEW plain_view AS SELECT * FROM plain;
    """)
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    reasons = {name: fastpath.plan(spec)[1] for name, spec in mapping["collections"].items()}
    assert reasons["plain"] is None
    assert "body" in reasons["with_json"]
    assert "amounts" in reasons["with_decimals"]
    spec = dict(mapping["collections"]["plain"], calculated=[{"name": "x", "expression": "1"}])
    assert fastpath.plan(spec) == (None, "calculated fields")
    spec = dict(mapping["collections"]["plain"], kind="view")
    assert fastpath.plan(spec)[0] is None


def test_transform_uses_the_fast_path_unless_turned_off(project, pg, monkeypatch):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], "CREATE TABLE plain (id int PRIMARY KEY, label text, at timestamptz); "
                                     "INSERT INTO plain SELECT g, 'l' || g, 'infinity' FROM generate_series(1, 5) g")
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    result = transform(cfg, mapping=mapping, force=True, workers=1)
    entry = result.collections["plain"]
    assert (entry.reader, entry.via_general, entry.count) == ("binary-copy", 5, 5)
    assert entry.counters == {"date_infinity_nulled": 5}
    manifest = read_manifest(result.folder)["collections"]["plain"]
    assert manifest["reader"] == "binary-copy" and manifest["rows_via_general_path"] == 5
    monkeypatch.setenv("ETL_TRANSFORM_FASTPATH", "false")
    result = transform(load_config(), mapping=mapping, force=True, workers=1)
    entry = result.collections["plain"]
    assert (entry.reader, entry.via_general) == ("sql-json", 0)
    assert entry.counters == {"date_infinity_nulled": 5}
    assert "turned off" in read_manifest(result.folder)["collections"]["plain"]["reader_note"]


def _row(*fields: bytes | None) -> bytes:
    out = struct.pack(">h", len(fields))
    for f in fields:
        out += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    return out


def test_encoder_streams_partial_rows_and_refuses_malformed_ones():
    ops = ((_pgbson.LONG, 0, b"_id"), (_pgbson.STRING, 1, b"s"))
    rows_ = _row(struct.pack(">q", 7), b"seven", b"\0\0\0\1", b"\0\0\0\0\0\1") \
        + _row(struct.pack(">q", 8), None, b"\0\0\0\1", b"\0\0\0\0\0\2")
    trailer = struct.pack(">h", -1)
    # Cut anywhere: only whole rows are encoded, and `used` says where to resume.
    first = len(_row(struct.pack(">q", 7), b"seven", b"\0\0\0\1", b"\0\0\0\0\0\1"))
    for cut in range(len(rows_)):
        data, used, docs, flagged, _, done = _pgbson.encode(rows_[:cut], ops, 4, 2)
        assert not done and not flagged
        assert (used, docs) == ((first, 1) if cut >= first else (0, 0))
        rest_data, _, rest_docs, _, _, done = _pgbson.encode(rows_[used:] + trailer, ops, 4, 2)
        assert done and docs + rest_docs == 2
        assert bson.decode_all(data + rest_data) == [{"_id": 7, "s": "seven"}, {"_id": 8, "s": None}]
    with pytest.raises(ValueError, match="3 fields in a row, expected 4"):
        _pgbson.encode(_row(b"a", b"b", b"c"), ops, 4, 2)
    with pytest.raises(ValueError, match="malformed int8"):
        _pgbson.encode(_row(b"abc", b"x", b"", b""), ops, 4, 2)
    with pytest.raises(ValueError, match="unbalanced"):
        _pgbson.encode(rows_, ((_pgbson.DOC_END, 0, b""),), 4, 2)
    with pytest.raises(ValueError, match="bad operation 0"):
        _pgbson.encode(rows_, ((_pgbson.STRING, 9, b"s"),), 4, 2)
    # A flagged row (an infinite date) is left out and identified by its last two columns.
    infinite = _row(struct.pack(">q", 9), struct.pack(">i", 0x7FFFFFFF), b"\0\0\0\7", b"\0\0\0\0\0\3")
    data, used, docs, flagged, _, _ = _pgbson.encode(infinite, ((_pgbson.LONG, 0, b"_id"),
                                                                (_pgbson.DATE_DAYS, 1, b"day")), 4, 2)
    assert (data, used, docs) == (b"", len(infinite), 0)
    assert flagged == [(b"\0\0\0\7", b"\0\0\0\0\0\3")]


def test_rounding_rules_give_the_general_paths_decimals(project, pg, tmp_path):
    from etl.model.mapping import ROUND_MODES

    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], """
        CREATE TABLE money (id int PRIMARY KEY, amount numeric(12,4), loose numeric);
        INSERT INTO money SELECT g, (g - 50) * 0.0125 + CASE WHEN g % 7 = 0 THEN 0.005 ELSE 0 END,
                                 (g - 50) / 8.0 FROM generate_series(1, 100) g;
        INSERT INTO money VALUES (101, 'NaN', 'NaN');
    """)
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    fields = {f["column"]: f for f in mapping["collections"]["money"]["fields"]}
    for mode in ROUND_MODES:
        fields["amount"]["round"] = {"places": 2, "mode": mode}
        fast, fast_counts, general, general_counts = both_paths(cfg, mapping, "money", tmp_path)
        assert sorted(fast) == sorted(general), mode
        assert fast_counts.pop("rows_via_general_path") == 0 and fast_counts == general_counts
    # Without a precision of at most 34 the general path decides before rounding: it keeps it.
    fields["loose"]["round"] = {"places": 1, "mode": "half_even"}
    plan, why = fastpath.plan(mapping["collections"]["money"])
    assert plan is None and "loose" in why


def test_without_the_encoder_every_collection_says_so(project, pg, monkeypatch):
    cfg = load_config()
    pg.create_db(cfg["LOCAL_PG_DB"], "CREATE TABLE plain (id int PRIMARY KEY, label text); "
                                     "INSERT INTO plain VALUES (1, 'a')")
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    monkeypatch.setattr(fastpath, "_pgbson", None)
    monkeypatch.setattr(fastpath, "IMPORT_ERROR", "No module named 'etl.stages.transform._pgbson'")
    said = []
    result = transform(cfg, mapping=mapping, force=True, workers=1, echo=said.append)
    assert result.collections["plain"].reader == "sql-json" and result.collections["plain"].count == 1
    assert any("C encoder is not built" in line for line in said)
    assert "not built" in read_manifest(result.folder)["collections"]["plain"]["reader_note"]
