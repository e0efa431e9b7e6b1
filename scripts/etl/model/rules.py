"""Business rules: schemas/rules.yaml, checked against scripts/etl/formats/schemas/rules.schema.json.

The rules override the default mapping (rounding, serialization, naming, extra validation),
add calculated fields and embed child tables; etl.mapping.build_mapping applies them, and the
transform calls the small helpers here (`evaluate`, `round_value`) on every row. The file's
format is described in docs/mapping-and-rules.md.
"""

from __future__ import annotations

import decimal
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from etl.model import expr
from etl.core.errors import RulesError
from etl.core.paths import paths

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "formats" / "schemas" / "rules.schema.json"

ROUNDING = {
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_up": decimal.ROUND_HALF_UP,
    "half_down": decimal.ROUND_HALF_DOWN,
    "up": decimal.ROUND_UP,
    "down": decimal.ROUND_DOWN,
    "ceiling": decimal.ROUND_CEILING,
    "floor": decimal.ROUND_FLOOR,
}

EMPTY_RULES: dict[str, Any] = {"version": 1}


def rules_path() -> Path:
    return paths.schemas / "rules.yaml"


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _line_of(root: yaml.Node | None, path: list[Any]) -> int | None:
    """1-based line of the YAML node at `path`, or of the deepest ancestor that exists."""
    node, line = root, None
    if node is not None:
        line = node.start_mark.line + 1
    for key in path:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def validate_rules(data: Any, source: str = "rules.yaml", node: yaml.Node | None = None) -> dict[str, Any]:
    """Check `data` against the rules schema; the first error names its place (and line)."""
    if data is None:
        return dict(EMPTY_RULES)
    errors = sorted(_validator().iter_errors(data),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        line = _line_of(node, list(err.absolute_path))
        at = f"{source}:{line}" if line else source
        raise RulesError(f"{at}: {where}: {err.message}", hint="see docs/mapping-and-rules.md")
    for coll, spec in (data.get("collections") or {}).items():
        for name, calc in (spec.get("calculated") or {}).items():
            try:
                expr.parse(calc["expression"])
            except expr.ExpressionError as exc:
                line = _line_of(node, ["collections", coll, "calculated", name, "expression"])
                at = f"{source}:{line}" if line else source
                raise RulesError(f"{at}: collections.{coll}.calculated.{name}: {exc}") from None
    return data


def load_rules(path: Path | None = None) -> dict[str, Any]:
    """The validated rules; a missing file means no rules (the default mapping)."""
    path = path or rules_path()
    if not path.is_file():
        return dict(EMPTY_RULES)
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path.name}:{mark.line + 1}" if mark else path.name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RulesError(f"{at}: not valid YAML: {problem}") from None
    return validate_rules(data, path.name, node)


def evaluate(expression: str, row: Mapping[str, Any]) -> Any:
    """The value of a calculated field's expression for one row (column name -> value).

    Raises etl.expr.DivisionByZero / EvaluationError for rows that make it fail; the field's
    `on_error` ("null" or "fail") says what the transform does then."""
    return expr.evaluate(expression, row)


def round_value(value: Any, places: int, mode: str = "half_even") -> Any:
    """`value` rounded to `places` decimals with `mode`; None, NaN and infinities unchanged.

    Decimals stay Decimal (exact); floats are rounded through Decimal so half_even means the
    same for both."""
    if value is None:
        return None
    rounding = ROUNDING[mode]
    quantum = Decimal(1).scaleb(-places)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return value
        with decimal.localcontext() as ctx:
            ctx.prec = max(ctx.prec, max(value.adjusted(), 0) + places + 3)
            return value.quantize(quantum, rounding=rounding)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return value
        return float(Decimal(repr(value)).quantize(quantum, rounding=rounding))
    if isinstance(value, int):
        return value
    raise TypeError(f"cannot round {type(value).__name__}")


def rules_touching(rules: dict[str, Any], table: str, column: str | None = None) -> list[str]:
    """Where the rules name `table` (qualified, `public.campaigns`) or one of its columns: for
    detection's impact, so a change that would break a rule is reported before `canonical`
    stops on it. Returns places like `collections.line_items.calculated.total_cost`."""
    from etl.model.mapping import collection_name

    found: list[str] = []
    names = {table, collection_name(table)}
    for coll, spec in sorted((rules.get("collections") or {}).items()):
        spec = spec or {}
        if coll in names:
            if column is None:
                found.append(f"collections.{coll}")
                continue
            if column in (spec.get("fields") or {}):
                found.append(f"collections.{coll}.fields.{column}")
            for calc_name, calc in sorted((spec.get("calculated") or {}).items()):
                try:
                    if column in expr.names_in(calc["expression"]):
                        found.append(f"collections.{coll}.calculated.{calc_name}")
                except expr.ExpressionError:
                    continue
        for i, embed in enumerate(spec.get("embed") or []):
            if embed.get("collection") in names and (
                    column is None or column in embed.get("foreign_key", [])
                    or column in [key for key, _ in embed.get("sort") or []]):
                found.append(f"collections.{coll}.embed.{i}")
    return found
