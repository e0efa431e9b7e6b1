"""Rounding of decimals the rules ask for (`round: {places, mode}`), in Python. The transform
rounds in SQL the same way (etl.stages.transform.sql.round_sql); tests compare the two on
every mode."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

ROUNDING = {
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_up": decimal.ROUND_HALF_UP,
    "half_down": decimal.ROUND_HALF_DOWN,
    "up": decimal.ROUND_UP,
    "down": decimal.ROUND_DOWN,
    "ceiling": decimal.ROUND_CEILING,
    "floor": decimal.ROUND_FLOOR,
}


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
