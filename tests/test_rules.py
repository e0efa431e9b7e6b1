"""Business rules: the file's schema, its errors, the expression language and rounding."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from etl.model import expr
from etl.core.errors import RulesError
from etl.model.mapping import build_mapping
from etl.model.rules import evaluate, rules_touching
from etl.model.rounding import round_value
from etl.formats.rules import load_rules, validate_rules
from etl.stages.snapshot import take_snapshot

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SCHEMA = REPO / "scripts" / "etl" / "stages" / "sql" / "sample_schema.sql"


@pytest.fixture(scope="module")
def sample_snapshot(pg):
    db = pg.create_db(sql=SAMPLE_SCHEMA.read_text(encoding="utf-8"))
    return take_snapshot(pg.dsn(db))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- the file -------------------------------------------------------------------------------


def test_sample_rules_apply_to_the_sample_schema(sample_snapshot):
    rules = load_rules(REPO / "schemas" / "rules.yaml")
    colls = build_mapping(sample_snapshot, rules)["collections"]
    budget = next(f for f in colls["campaigns"]["fields"] if f["column"] == "budget")
    assert budget["round"] == {"places": 2, "mode": "half_even"}
    fee = next(f for f in colls["platforms"]["fields"] if f["column"] == "fee_rate")
    assert fee["round"] == {"places": 4, "mode": "half_even"}
    calc = {c["name"]: c for c in colls["daily_metrics"]["calculated"]}
    assert calc["cpm"]["columns"] == ["impressions", "spend"]
    assert calc["ctr"]["round"] == {"places": 6, "mode": "half_even"}
    assert colls["campaigns"]["embed"] == [{"collection": "flights", "as": "flights",
                                            "foreign_key": ["campaign_id"], "sort": [["start_date", 1]],
                                            "limit": None, "keep_collection": True}]


def test_missing_file_means_default_mapping(tmp_path):
    assert load_rules(tmp_path / "none.yaml") == {"version": 1}


@pytest.mark.parametrize("text, message", [
    ("version: 2\n", r"rules.yaml:1: version: 1 was expected"),
    ("version: 1\ncollections:\n  a:\n    fields:\n      b: {round: {places: 2, mode: sideways}}\n",
     r"rules.yaml:5: collections.a.fields.b.round: .* is not valid"),
    ("version: 1\ndefaults:\n  naming: kebab-case\n",
     r"rules.yaml:3: defaults.naming: 'kebab-case' is not one of"),
    ("version: 1\ncollections:\n  a:\n    calculated:\n      x: {expression: 'rate *'}\n",
     r"rules.yaml:5: collections.a.calculated.x: does not parse"),
    ("version: 1\ncollections:\n  a:\n    calculated:\n      x: {expression: '__import__(\"os\")'}\n",
     r"collections.a.calculated.x: unknown function __import__\(\)"),
    ("version: 1\ncollections:\n  a:\n    calculated:\n      x: {expression: 'spend / (0)'}\n",
     r"rules.yaml:5: collections.a.calculated.x: divides by zero: 'spend / 0'"),
    ("version: 1\ncollections:\n  a:\n    embed:\n      - {collection: b}\n",
     r"rules.yaml:5: collections.a.embed.0: 'foreign_key' is a required property"),
    ("version: 1\ncollections: [oops\n", r"rules.yaml:\d+: not valid YAML"),
    ("version: 1\nextra: true\n", r"Additional properties are not allowed \('extra'"),
])
def test_malformed_rules_are_one_clear_error_with_a_line(tmp_path, text, message):
    with pytest.raises(RulesError, match=message):
        load_rules(_write(tmp_path, text))


def test_rule_naming_a_removed_column_names_it(sample_snapshot, tmp_path):
    rules = load_rules(_write(tmp_path, "version: 1\ncollections:\n  campaigns:\n    fields:\n"
                                        "      legacy_fieldx: {round: 2}\n"))
    with pytest.raises(RulesError, match="legacy_fieldx.*does not exist in public.campaigns"):
        build_mapping(sample_snapshot, rules)


def test_calculated_field_reading_a_missing_column(sample_snapshot):
    rules = validate_rules({"version": 1, "collections": {"line_items": {"calculated": {
        "total_cost": {"expression": "rate * unit / 1000"}}}}})
    with pytest.raises(RulesError, match="total_cost: column 'unit' does not exist"):
        build_mapping(sample_snapshot, rules)


def test_type_change_that_breaks_a_calculated_field(sample_snapshot):
    rules = validate_rules({"version": 1, "collections": {"line_items": {"calculated": {
        "total_cost": {"expression": "rate * units / 1000"}}}}})
    ok = build_mapping(sample_snapshot, rules)["collections"]["line_items"]["calculated"]
    assert ok[0]["columns"] == ["rate", "units"]
    changed = _with_column_type(sample_snapshot, "public.line_items", "rate", "text")
    with pytest.raises(RulesError, match="'rate' is used in arithmetic but is text"):
        build_mapping(changed, rules)


def test_embed_errors_name_the_problem(sample_snapshot):
    bad_fk = {"version": 1, "collections": {"campaigns": {"embed": [
        {"collection": "flights", "foreign_key": ["campaign"]}]}}}
    with pytest.raises(RulesError, match="foreign key column 'campaign' does not exist in public.flights"):
        build_mapping(sample_snapshot, validate_rules(bad_fk))
    bad_sort = {"version": 1, "collections": {"campaigns": {"embed": [
        {"collection": "flights", "foreign_key": ["campaign_id"], "sort": [["begin", 1]]}]}}}
    with pytest.raises(RulesError, match="sort field 'begin' does not exist"):
        build_mapping(sample_snapshot, validate_rules(bad_sort))


def _with_column_type(snapshot: dict, table: str, column: str, new_type: str) -> dict:
    import copy

    snap = copy.deepcopy(snapshot)
    for col in snap["tables"][table]["columns"]:
        if col["name"] == column:
            col.update(type=new_type, base_type=new_type, type_kind="base")
    return snap


# ---- expressions ------------------------------------------------------------------------------


def test_expression_arithmetic_is_exact_with_decimals():
    row = {"rate": Decimal("12.3456"), "units": 250000}
    assert evaluate("rate * units / 1000", row) == Decimal("3086.4000")
    assert evaluate("rate * 1.5", row) == Decimal("18.51840")
    assert evaluate("7 / 2", {}) == Decimal("3.5")
    assert evaluate("7 // 2 + 7 % 2", {}) == 4


def test_expression_null_propagates_like_sql():
    assert evaluate("a + 1", {"a": None}) is None
    assert evaluate("a > 1", {"a": None}) is None
    assert evaluate("coalesce(a, b, 0)", {"a": None, "b": 5}) == 5
    assert evaluate("a and false", {"a": None}) is False
    assert evaluate("a or true", {"a": None}) is True


def test_expression_conditionals_functions_and_comparisons():
    assert evaluate("'high' if score >= 50 else 'low'", {"score": Decimal("50.0")}) == "high"
    assert evaluate("round(x, 2)", {"x": Decimal("2.345")}) == Decimal("2.34")
    assert evaluate("max(a, b) - min(a, b)", {"a": 3, "b": Decimal("1.5")}) == Decimal("1.5")
    assert evaluate("abs(-x)", {"x": 4}) == 4
    assert evaluate("1 < x <= 3", {"x": 3}) is True
    assert evaluate("status == 'active' and not paused", {"status": "active", "paused": False}) is True


def test_division_by_zero_is_its_own_error():
    with pytest.raises(expr.DivisionByZero):
        evaluate("clicks / impressions", {"clicks": 3, "impressions": 0})
    with pytest.raises(expr.DivisionByZero):
        evaluate("spend / n", {"spend": Decimal("0"), "n": Decimal("0")})


def test_bad_operands_are_evaluation_errors_not_python_surprises():
    # Python would repeat the string; a data pipeline must not.
    with pytest.raises(expr.EvaluationError, match=r"cannot apply \* to str and int"):
        evaluate("rate * 3", {"rate": "12.50"})
    with pytest.raises(expr.EvaluationError, match="no column 'missing'"):
        evaluate("missing + 1", {})


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "x.__class__",
    "x[0]",
    "lambda: 1",
    "[1, 2]",
    "{'a': 1}",
    "f'{x}'",
    "x ** 99999999",
    "x in (1, 2)",
    "(y := 3)",
    "open('/etc/passwd')",
    "",
])
def test_expression_language_refuses_everything_else(text):
    with pytest.raises(expr.ExpressionError):
        expr.Expression(text)


def test_expression_names():
    parsed = expr.parse("coalesce(a, 0) * b + (c if d > 0 else 1)")
    assert parsed.names == {"a", "b", "c", "d"}
    # Only direct operands of arithmetic must be numeric columns; `c` may be anything the
    # conditional returns, `a` passes through coalesce.
    assert parsed.arithmetic_names == {"b"}


# ---- rounding --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, places, mode, expected", [
    (Decimal("2.345"), 2, "half_even", Decimal("2.34")),
    (Decimal("2.355"), 2, "half_even", Decimal("2.36")),
    (Decimal("2.345"), 2, "half_up", Decimal("2.35")),
    (Decimal("-2.345"), 2, "half_down", Decimal("-2.34")),
    (Decimal("2.341"), 2, "ceiling", Decimal("2.35")),
    (Decimal("-2.349"), 2, "floor", Decimal("-2.35")),
    (Decimal("2.349"), 2, "down", Decimal("2.34")),
    (Decimal("2.341"), 2, "up", Decimal("2.35")),
    (Decimal("12345678901234567890123456789012.5"), 0, "half_even", Decimal("12345678901234567890123456789012")),
    (Decimal("1E+30"), 2, "half_even", Decimal("1000000000000000000000000000000.00")),
    (2.675, 2, "half_even", 2.68),
    (7, 2, "half_even", 7),
    (None, 2, "half_even", None),
])
def test_round_value(value, places, mode, expected):
    got = round_value(value, places, mode)
    assert got == expected and type(got) is type(expected)


def test_round_value_keeps_nan_and_infinity():
    assert round_value(Decimal("NaN"), 2).is_nan()
    assert round_value(float("inf"), 2) == float("inf")


def test_rules_touching_reports_where_a_change_would_break_a_rule():
    rules = load_rules(REPO / "schemas" / "rules.yaml")
    assert rules_touching(rules, "public.daily_metrics", "impressions") == [
        "collections.daily_metrics.calculated.cpm", "collections.daily_metrics.calculated.ctr"]
    assert rules_touching(rules, "public.campaigns", "budget") == ["collections.campaigns.fields.budget"]
    assert rules_touching(rules, "public.flights", "start_date") == ["collections.campaigns.embed.0"]
    assert rules_touching(rules, "public.flights") == ["collections.campaigns.embed.0", "collections.flights"]
    assert rules_touching(rules, "public.agencies", "name") == []
