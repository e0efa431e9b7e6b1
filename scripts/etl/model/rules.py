"""Business rules: schemas/rules.yaml, checked against scripts/etl/formats/schemas/rules.schema.json.

The rules override the default mapping (rounding, serialization, naming, extra validation),
add calculated fields and embed child tables; etl.mapping.build_mapping applies them, and the
transform calls the small helpers here (`evaluate`, `round_value`) on every row. The file's
format is described in docs/mapping-and-rules.md.
"""

from __future__ import annotations

from typing import Any, Mapping

from etl.model import expr
from etl.model.mapping import collection_name

EMPTY_RULES: dict[str, Any] = {"version": 1}


def evaluate(expression: str, row: Mapping[str, Any]) -> Any:
    """The value of a calculated field's expression for one row (column name -> value).

    Raises etl.expr.DivisionByZero / EvaluationError for rows that make it fail; the field's
    `on_error` ("null" or "fail") says what the transform does then."""
    return expr.evaluate(expression, row)


def rules_touching(rules: dict[str, Any], table: str, column: str | None = None) -> list[str]:
    """Where the rules name `table` (qualified, `public.campaigns`) or one of its columns: for
    detection's impact, so a change that would break a rule is reported before `canonical`
    stops on it. Returns places like `collections.line_items.calculated.total_cost`."""

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
