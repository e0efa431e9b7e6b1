"""The mapping from real PostgreSQL catalogs: every type in DESIGN.md's table, the text policy
for the rest, keys, indexes, CHECKs, naming and decisions."""

from __future__ import annotations

import json

import pytest

from etl.core.errors import RulesError
from etl.model.mapping import build_mapping, collection_name, parse_check
from etl.formats.mapping import write_mapping
from etl.stages.snapshot import take_snapshot

ALL_TYPES_SQL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a integer, b text);
CREATE DOMAIN positive_money AS numeric(12,2) CHECK (VALUE >= 0);
CREATE DOMAIN short_code AS varchar(8) CHECK (VALUE ~ '^[A-Z]+$');
CREATE TABLE everything (
    id              bigint PRIMARY KEY,
    c_smallint      smallint,
    c_integer       integer NOT NULL,
    c_numeric       numeric(14,2),
    c_decimal       decimal,
    c_money         money,
    c_real          real,
    c_double        double precision,
    c_text          text,
    c_varchar       varchar(40),
    c_char          char(3),
    c_enum          mood,
    c_inet          inet,
    c_cidr          cidr,
    c_macaddr       macaddr,
    c_macaddr8      macaddr8,
    c_bool          boolean,
    c_date          date,
    c_ts            timestamp,
    c_tstz          timestamptz,
    c_ts3           timestamp(3) with time zone,
    c_time          time,
    c_timetz        timetz,
    c_interval      interval,
    c_uuid          uuid,
    c_json          json,
    c_jsonb         jsonb,
    c_text_arr      text[],
    c_int_matrix    integer[][],
    c_enum_arr      mood[],
    c_num_arr       numeric(8,3)[],
    c_money_arr     money[],
    c_bytea         bytea,
    c_domain        positive_money,
    c_code          short_code,
    c_point         point,
    c_bits          bit(4),
    c_tsvector      tsvector,
    c_xml           xml,
    c_range         int4range,
    c_pair          pair
);
"""

EXPECTED = {
    # column: (bson, read_as, policy)
    "c_smallint": ("int", None, "default"),
    "c_integer": ("int", None, "default"),
    "c_numeric": ("decimal", None, "default"),
    "c_decimal": ("decimal", None, "default"),
    "c_money": ("decimal", "numeric", "default"),
    "c_real": ("double", None, "default"),
    "c_double": ("double", None, "default"),
    "c_text": ("string", None, "default"),
    "c_varchar": ("string", None, "default"),
    "c_char": ("string", None, "default"),
    "c_enum": ("string", "text", "default"),
    "c_inet": ("string", "text", "default"),
    "c_cidr": ("string", "text", "default"),
    "c_macaddr": ("string", "text", "default"),
    "c_macaddr8": ("string", "text", "default"),
    "c_bool": ("bool", None, "default"),
    "c_date": ("date", None, "default"),
    "c_ts": ("date", None, "default"),
    "c_tstz": ("date", None, "default"),
    "c_ts3": ("date", None, "default"),
    "c_time": ("string", "text", "default"),
    "c_timetz": ("string", "text", "default"),
    "c_interval": ("string", "text", "default"),
    "c_uuid": ("uuid", None, "default"),
    "c_json": ("object", None, "default"),
    "c_jsonb": ("object", None, "default"),
    "c_text_arr": ("array", None, "default"),
    "c_int_matrix": ("array", None, "default"),
    "c_enum_arr": ("array", "text[]", "default"),
    "c_num_arr": ("array", None, "default"),
    "c_money_arr": ("array", "numeric[]", "default"),
    "c_bytea": ("binData", None, "default"),
    "c_domain": ("decimal", None, "default"),
    "c_code": ("string", None, "default"),
    "c_point": ("string", "text", "text"),
    "c_bits": ("string", "text", "text"),
    "c_tsvector": ("string", "text", "text"),
    "c_xml": ("string", "text", "text"),
    "c_range": ("string", "text", "text"),
    "c_pair": ("string", "text", "text"),
}


@pytest.fixture(scope="module")
def everything(pg):
    db = pg.create_db(sql=ALL_TYPES_SQL)
    return take_snapshot(pg.dsn(db))


def _fields(mapping: dict, collection: str) -> dict[str, dict]:
    return {f["column"]: f for f in mapping["collections"][collection]["fields"]}


def test_every_column_type_has_a_stated_mapping(everything):
    mapping = build_mapping(everything)
    fields = _fields(mapping, "everything")
    assert set(fields) == {"id", *EXPECTED}
    got = {col: (f["bson"], f["read_as"], f["policy"]) for col, f in fields.items() if col != "id"}
    assert got == EXPECTED
    assert fields["id"]["name"] == "_id" and fields["id"]["bson"] == "long"
    # Default serializations and the enum labels.
    assert fields["c_numeric"]["serialize"] == "decimal128"
    assert fields["c_uuid"]["serialize"] == "string"
    assert fields["c_tstz"]["serialize"] == "datetime"
    assert fields["c_enum"]["enum"] == ["sad", "ok", "happy"]
    assert fields["c_integer"]["nullable"] is False and fields["c_text"]["nullable"] is True


def test_arrays_describe_their_elements(everything):
    fields = _fields(build_mapping(everything), "everything")
    assert fields["c_text_arr"]["items"]["bson"] == "string"
    assert fields["c_int_matrix"]["items"]["bson"] == "int"
    assert fields["c_enum_arr"]["items"] == {"bson": "string", "policy": "default",
                                            "enum": ["sad", "ok", "happy"], "items": None, "constraints": {}}
    assert fields["c_num_arr"]["items"]["bson"] == "decimal"
    assert fields["c_money_arr"]["items"]["bson"] == "decimal"


def test_domains_map_to_their_base_type_with_their_checks(everything):
    fields = _fields(build_mapping(everything), "everything")
    assert fields["c_domain"]["constraints"] == {"minimum": 0}
    assert fields["c_code"]["constraints"] == {"maxLength": 8, "pattern": "^[A-Z]+$"}
    assert fields["c_varchar"]["constraints"] == {"maxLength": 40}


def test_mapping_is_deterministic_and_written_only_when_changed(everything, tmp_path):
    first, second = build_mapping(everything), build_mapping(json.loads(json.dumps(everything)))
    assert first == second and len(first["hash"]) == 64
    path = tmp_path / "mapping.json"
    assert write_mapping(first, path) is True
    assert write_mapping(second, path) is False
    assert json.loads(path.read_text())["hash"] == first["hash"]


KEYS_SQL = """
CREATE SCHEMA sales;
CREATE TABLE parents (id integer PRIMARY KEY, code text UNIQUE, name text NOT NULL, region text);
CREATE INDEX parents_region_idx ON parents (region);
CREATE INDEX parents_lower_name_idx ON parents (lower(name));
CREATE INDEX parents_partial_idx ON parents (name) WHERE region IS NOT NULL;
CREATE INDEX parents_hash_idx ON parents USING hash (name);
CREATE TABLE children (
    parent_id integer NOT NULL REFERENCES parents (id),
    day date NOT NULL,
    amount numeric(10,2) CHECK (amount > 0 AND amount <= 1000),
    label varchar(10) CHECK (label = ANY (ARRAY['a', 'b'])),
    starts date, ends date, CHECK (ends >= starts),
    PRIMARY KEY (parent_id, day)
);
CREATE TABLE sales.log (at timestamptz NOT NULL, note text, parent_id integer REFERENCES parents (id));
CREATE TABLE uq (id integer PRIMARY KEY, a integer NOT NULL, b integer, UNIQUE (a, b));
"""


@pytest.fixture(scope="module")
def keyed(pg):
    db = pg.create_db(sql=KEYS_SQL)
    return take_snapshot(pg.dsn(db))


def test_keys_single_composite_and_none(keyed):
    colls = build_mapping(keyed)["collections"]
    assert set(colls) == {"parents", "children", "sales.log", "uq"}
    assert colls["parents"]["id"] == {"kind": "single", "columns": ["id"]}
    assert colls["parents"]["refresh"] == "incremental-capable"
    assert colls["children"]["id"] == {"kind": "composite", "columns": ["parent_id", "day"]}
    # Composite key columns stay top-level fields too (they carry foreign keys).
    assert {"parent_id", "day"} <= {f["name"] for f in colls["children"]["fields"]}
    assert colls["sales.log"]["id"] == {"kind": "none", "columns": []}
    assert colls["sales.log"]["refresh"] == "full"
    assert colls["sales.log"]["table"] == "sales.log"


def test_indexes_from_foreign_keys_uniques_and_plain_columns(keyed):
    colls = build_mapping(keyed)["collections"]
    parents = {i["name"]: i for i in colls["parents"]["indexes"]}
    # Expression, partial and hash indexes have no MongoDB twin; the PK is _id_.
    assert set(parents) == {"code_1", "region_1"}
    assert parents["code_1"]["unique"] is True and parents["code_1"]["source"] == "unique"
    assert parents["code_1"]["partial"] == {"code": {"$type": "string"}}
    assert parents["region_1"] == {"keys": [["region", 1]], "unique": False, "name": "region_1", "source": "index"}
    # The composite PK's first column is also a foreign key: it gets its own index.
    assert [i["name"] for i in colls["children"]["indexes"]] == ["parent_id_1"]
    assert colls["sales.log"]["indexes"][0]["source"] == "foreign_key"
    uq = colls["uq"]["indexes"]
    assert uq == [{"keys": [["a", 1], ["b", 1]], "unique": True, "name": "a_1_b_1", "source": "unique",
                   "partial": {"b": {"$type": "int"}}}]


def test_checks_become_constraints_or_are_listed(keyed):
    children = build_mapping(keyed)["collections"]["children"]
    fields = {f["column"]: f for f in children["fields"]}
    assert fields["amount"]["constraints"] == {"exclusiveMinimum": 0, "maximum": 1000}
    assert fields["label"]["enum"] == ["a", "b"]
    assert len(children["checks_not_expressed"]) == 1  # ends >= starts compares two columns


@pytest.mark.parametrize("expression, expected, complete", [
    ("CHECK ((budget >= (0)::numeric))", {"budget": {"minimum": 0}}, True),
    ("CHECK (((rate >= (0)::numeric) AND (rate < (1)::numeric)))",
     {"rate": {"minimum": 0, "exclusiveMaximum": 1}}, True),
    ("CHECK ((0 < qty))", {"qty": {"exclusiveMinimum": 0}}, True),
    ("CHECK ((char_length(code) <= 10))", {"code": {"maxLength": 10}}, True),
    ("CHECK (((kind)::text = ANY ((ARRAY['cpm'::character varying, 'it''s'::character varying])::text[])))",
     {"kind": {"enum": ["cpm", "it's"]}}, True),
    ("CHECK ((VALUE ~ '^[a-z]+$'::text))", {"VALUE": {"pattern": "^[a-z]+$"}}, True),
    # POSIX classes are PostgreSQL (and PCRE) only: translated for JSON Schema and Python.
    ("CHECK ((VALUE ~ '^[^@[:space:]]+@[^@[:space:]]+$'::text))", {"VALUE": {"pattern": r"^[^@\s]+@[^@\s]+$"}}, True),
    ("CHECK ((code ~ '\\mab\\M'::text))", {}, False),
    ("CHECK (((x > 0) OR (y > 0)))", {}, False),
    ("CHECK ((end_date >= start_date))", {}, False),
])
def test_parse_check(expression, expected, complete):
    assert parse_check(expression) == (expected, complete)


def test_camel_case_naming_and_rename_rule(keyed):
    rules = {"version": 1, "defaults": {"naming": "camelCase"},
             "collections": {"children": {"fields": {"amount": {"name": "total"}}}}}
    colls = build_mapping(keyed, rules)["collections"]
    names = [f["name"] for f in colls["children"]["fields"]]
    assert names == ["parentId", "day", "total", "label", "starts", "ends"]
    assert colls["children"]["indexes"][0]["keys"] == [["parentId", 1]]


def test_rules_for_missing_things_name_them(keyed):
    with pytest.raises(RulesError, match="column 'amout' does not exist in public.children"):
        build_mapping(keyed, {"version": 1, "collections": {"children": {"fields": {"amout": {"round": 2}}}}})
    with pytest.raises(RulesError, match="collection 'kids' has no table"):
        build_mapping(keyed, {"version": 1, "collections": {"kids": {}}})
    with pytest.raises(RulesError, match="round applies to numeric columns"):
        build_mapping(keyed, {"version": 1, "collections": {"children": {"fields": {"label": {"round": 2}}}}})
    with pytest.raises(RulesError, match="serialize 'binary' is not one of"):
        build_mapping(keyed, {"version": 1, "collections": {
            "children": {"fields": {"amount": {"serialize": "binary"}}}}})
    with pytest.raises(RulesError, match="two fields would be named 'day'"):
        build_mapping(keyed, {"version": 1, "collections": {"children": {"fields": {"label": {"name": "day"}}}}})


def test_decisions_set_cast_default_and_archive(keyed):
    decisions = {"format_version": 1, "decisions": {
        "c-aaaaaaaaaaaa": {"kind": "column_type_changed", "table": "public.children", "column": "amount",
                           "strategy": "cast", "on_failure": "keep_old"},
        "c-bbbbbbbbbbbb": {"kind": "column_added", "table": "public.children", "column": "label",
                           "default": "a"},
        "c-cccccccccccc": {"kind": "column_removed", "table": "public.children", "column": "legacy",
                           "action": "archive"},
        "c-dddddddddddd": {"kind": "column_removed", "table": "public.children", "column": "gone",
                           "action": "drop"},
    }}
    children = build_mapping(keyed, None, decisions)["collections"]["children"]
    fields = {f["column"]: f for f in children["fields"]}
    assert fields["amount"]["cast"] == {"strategy": "cast", "on_failure": "keep_old"}
    assert fields["amount"]["archive_as"] == "amount__old"
    assert fields["label"]["default"] == "a"
    assert children["archived"] == [{"column": "legacy", "field": "legacy", "as": "legacy__archived"}]


def test_collection_names():
    assert collection_name("public.campaigns") == "campaigns"
    assert collection_name("sales.orders") == "sales.orders"
