"""Property: any value of a supported PostgreSQL type comes out of the transform as the
document value DESIGN.md's table promises (real PostgreSQL, real transform, BSON decoded back)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from decimal import Decimal

import psycopg
import pytest
from bson.decimal128 import Decimal128, create_decimal128_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from etl.formats.dumpdir import iter_docs
from etl.core.config import load_config
from etl.model.mapping import build_mapping
from etl.stages.snapshot import take_snapshot
from etl.stages.transform import transform

COLUMNS = {
    "s": "smallint", "i": "integer", "b": "bigint", "n38": "numeric(38,6)", "n": "numeric",
    "r": "real", "d": "double precision", "t": "text", "v": "varchar(50)", "flag": "boolean",
    "day": "date", "ts": "timestamp", "tz": "timestamptz", "tm": "time", "u": "uuid",
    "doc": "jsonb", "tags": "text[]", "grid": "integer[]", "blob": "bytea", "amounts": "numeric(10,2)[]",
}
UTC = dt.timezone.utc
D34 = create_decimal128_context()

text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                        st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False), text)
json_value = st.recursive(json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                               st.dictionaries(text, kids, max_size=4)),
                          max_leaves=25)


@st.composite
def grids(draw):
    rows = draw(st.integers(0, 3))
    cols = draw(st.integers(1, 3))
    cell = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
    if rows == 0:
        return []
    return [[draw(cell) for _ in range(cols)] for _ in range(rows)]


def opt(strategy):
    return st.one_of(st.none(), strategy)


rows = st.fixed_dictionaries({
    "s": opt(st.integers(-(2**15), 2**15 - 1)),
    "i": opt(st.integers(-(2**31), 2**31 - 1)),
    "b": opt(st.integers(-(2**63), 2**63 - 1)),
    "n38": opt(st.decimals(min_value=Decimal("-99999999999999999999999999999999.999999"),
                           max_value=Decimal("99999999999999999999999999999999.999999"),
                           places=6, allow_nan=False, allow_infinity=False)),
    "n": opt(st.one_of(st.decimals(allow_nan=False, allow_infinity=False, places=4,
                                   min_value=Decimal("-1e20"), max_value=Decimal("1e20")),
                       st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
                                        Decimal("1e-30"), Decimal("123456789012345678901234567890123456789")]))),
    "r": opt(st.floats(width=32)),
    "d": opt(st.floats()),
    "t": opt(text),
    "v": opt(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=50)),
    "flag": opt(st.booleans()),
    "day": opt(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))),
    "ts": opt(st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999))),
    "tz": opt(st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30), timezones=st.just(UTC))),
    "tm": opt(st.times()),
    "u": opt(st.uuids()),
    "doc": opt(json_value),
    "tags": opt(st.lists(opt(text), max_size=4)),
    "grid": opt(grids()),
    "blob": opt(st.binary(max_size=40)),
    "amounts": opt(st.lists(opt(st.decimals(min_value=-10**7, max_value=10**7, places=2,
                                            allow_nan=False, allow_infinity=False)), max_size=3)),
})


def _ms(value: dt.datetime) -> dt.datetime:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def _safe_keys(value):
    """The stated policy for keys MongoDB dislikes: leading $ -> U+FF04, . -> U+FF0E."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            k2 = k.replace(".", "\uff0e")
            if k2.startswith("$"):
                k2 = "\uff04" + k2[1:]
            out[k2] = _safe_keys(v)
        return out
    if isinstance(value, list):
        return [_safe_keys(v) for v in value]
    return value


def _same_number(got, want) -> bool:
    if isinstance(want, float) and not isinstance(want, bool):
        return isinstance(got, (float, int)) and not isinstance(got, bool) and got == want
    return got == want and type(got) is type(want)


def _same_json(got, want) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same_json(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same_json, got, want))
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return _same_number(got, want) or (isinstance(got, int) and got == want)
    return got == want and type(got) is type(want)


def _dec(value: Decimal, places: int | None) -> str:
    if places is not None:
        with decimal.localcontext(prec=100):
            value = value.quantize(Decimal(1).scaleb(-places))
    return str(Decimal128(D34.create_decimal(value)))


def check(col: str, got, want) -> None:
    if want is None:
        assert got is None, col
        return
    if col in ("s", "i", "b"):
        assert got == want and isinstance(got, int)
    elif col == "n38":
        assert isinstance(got, Decimal128) and str(got) == _dec(want, 6)
    elif col == "n":
        assert isinstance(got, Decimal128)
        if want.is_nan():
            assert got.to_decimal().is_nan()
        else:
            assert got.to_decimal() == D34.create_decimal(want)
    elif col in ("r", "d"):
        assert isinstance(got, float)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want)  # -0.0 stays
    elif col in ("t", "v"):
        assert got == want
    elif col == "flag":
        assert got is want
    elif col == "day":
        assert got == dt.datetime(want.year, want.month, want.day, tzinfo=UTC)
    elif col in ("ts", "tz"):
        assert got == _ms(want)
    elif col == "tm":
        assert dt.time.fromisoformat(got) == want
    elif col == "u":
        assert got == str(want)
    elif col == "doc":
        assert _same_json(got, _safe_keys(want)), (got, want)
    elif col in ("tags", "grid"):
        assert got == want
    elif col == "blob":
        assert got == want
    elif col == "amounts":
        assert [None if g is None else str(g) for g in got] == \
            [None if w is None else _dec(w, 2) for w in want]


def insert_rows(conn, table: str, columns: dict[str, str], batch: list[dict]) -> None:
    """Rows `batch` (ids 0, 1, …) into `table`, each value cast to its column's type."""
    names = list(columns)
    casts = ", ".join(f"%s::{columns[n]}" for n in names)
    with conn.cursor() as cur:
        for i, row in enumerate(batch):
            values = [Jsonb(row[n]) if n == "doc" and row[n] is not None else row[n] for n in names]
            cur.execute(f"INSERT INTO {table} (id, {', '.join(names)}) VALUES ({i}, {casts})", values)


def typed_table(pg, table: str, columns: dict[str, str]):
    """A database holding `table` (id plus `columns`), its mapping, and a connection: yields
    (cfg, mapping, conn) for a fixture."""
    cfg = load_config()
    cols = ", ".join(f"{name} {pg_type}" for name, pg_type in columns.items())
    pg.create_db(cfg["LOCAL_PG_DB"], f"CREATE TABLE {table} (id int PRIMARY KEY, {cols})")
    mapping = build_mapping(take_snapshot(cfg.pg_conninfo))
    with psycopg.connect(cfg.pg_conninfo, autocommit=True) as conn:
        yield cfg, mapping, conn


@pytest.fixture
def roundtrip(project, pg):
    yield from typed_table(pg, "rt", COLUMNS)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(rows, min_size=1, max_size=4))
def test_values_round_trip(roundtrip, batch):
    cfg, mapping, conn = roundtrip
    conn.execute("TRUNCATE rt")
    insert_rows(conn, "rt", COLUMNS, batch)
    result = transform(cfg, mapping=mapping, collections=["rt"], force=True, workers=1)
    docs = {d["_id"]: d for d in iter_docs(result.folder / "rt.bson")}
    assert sorted(docs) == list(range(len(batch)))
    for i, row in enumerate(batch):
        for col in COLUMNS:
            check(col, docs[i][col], row[col])
