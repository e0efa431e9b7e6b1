"""Values the transform finishes in Python: PostgreSQL text to BSON values, with the policies
(NaN and infinities, dates outside years 1-9999, NUL characters, JSON keys with `.` or `$`)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid as uuidlib
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128, create_decimal128_context
from bson.int64 import Int64

from etl.model.rounding import round_value

_DEC_CTX = create_decimal128_context()


# ---------------------------------------------------------------------------------------------
# Values Python finishes: text -> BSON value, with the policies


_TS_RE = re.compile(r"^(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
                    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$")
_EPOCH_DAYS = 719162  # date(1970,1,1).toordinal() - 1


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, for any year (year 0 = 1 BC)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_pg_timestamp(text: str) -> int | None:
    """Milliseconds since the epoch (floored) of PostgreSQL's ISO output of a date or
    timestamp; None for ±infinity."""
    if text in ("infinity", "-infinity"):
        return None
    m = _TS_RE.match(text)
    if not m:
        raise ValueError(f"not an ISO date/time: {text!r}")
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if m.group(12):
        y = 1 - y
    days = _days_from_civil(y, mo, d)
    secs = int(m.group(4) or 0) * 3600 + int(m.group(5) or 0) * 60 + int(m.group(6) or 0)
    micros = int((m.group(7) or "0").ljust(6, "0"))
    if m.group(8):
        off = int(m.group(9)) * 3600 + int(m.group(10) or 0) * 60 + int(m.group(11) or 0)
        secs -= off if m.group(8) == "+" else -off
    return (days * 86400 + secs) * 1000 + micros // 1000


_MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
_MAX_MS = 253402300800000  # 10000-01-01T00:00:00Z


class Converter:
    """Text -> document value for one collection, counting what each policy did."""

    def __init__(self, counters: Counter, cast_failures: Counter):
        self.counters = counters
        self.cast_failures = cast_failures

    # -- scalars ----------------------------------------------------------------------------

    def decimal(self, f: dict[str, Any], d: Decimal) -> Any:
        if d.is_nan():
            self.counters["numeric_nan_kept"] += 1
        elif d.is_infinite():
            self.counters["numeric_infinity_kept"] += 1
        else:
            r = f.get("round")
            if r:
                d = round_value(d, int(r["places"]), r.get("mode", "half_even"))
        ser = f.get("serialize")
        if ser == "double":
            return float(d)
        if ser == "string":
            return str(d)
        if d.is_finite() and len(d.as_tuple().digits) > 34:
            rounded = _DEC_CTX.create_decimal(d)  # half-even to 34 significant digits
            if rounded != d:
                self.counters["numeric_rounded_to_34_digits"] += 1
            d = rounded
        try:
            return Decimal128(d)
        except (InvalidOperation, ValueError):
            self.counters["numeric_out_of_decimal128_range_nulled"] += 1
            return None

    def date(self, f: dict[str, Any], text: str) -> Any:
        ms = parse_pg_timestamp(text)
        if ms is None:
            self.counters["date_infinity_nulled"] += 1
            return None
        if not _MIN_MS <= ms < _MAX_MS:
            self.counters["date_out_of_range_kept"] += 1
        if f.get("serialize") == "string":
            return text
        return DatetimeMS(ms)

    def scalar(self, f: dict[str, Any], text: str) -> Any:
        t = f["bson"]
        if t == "int":
            return int(text)
        if t == "long":
            return Int64(int(text))
        if t == "decimal":
            return self.decimal(f, Decimal(text))
        if t == "double":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                self.counters["double_nonfinite_kept"] += 1
            elif f.get("round"):
                value = round_value(value, int(f["round"]["places"]), f["round"].get("mode", "half_even"))
            return value
        if t == "bool":
            if text in ("t", "true"):
                return True
            if text in ("f", "false"):
                return False
            raise ValueError(f"not a boolean: {text!r}")
        if t == "date":
            return self.date(f, text)
        if t == "uuid":
            u = uuidlib.UUID(text)
            return Binary(u.bytes, 4) if f.get("serialize") == "binary" else str(u)
        if t == "binData":
            return Binary(bytes.fromhex(text[2:] if text.startswith("\\x") else text))
        if t == "object":
            return self.json(json.loads(text, parse_float=_json_float, parse_int=_json_int))
        if t == "array":
            return self.array(f.get("items") or {}, json.loads(text, parse_float=Decimal, parse_int=int))
        return text

    # -- JSON ---------------------------------------------------------------------------------

    def json(self, value: Any) -> Any:
        """A json/jsonb value with MongoDB-safe keys: a leading `$` becomes U+FF04, `.` becomes
        U+FF0E, NUL becomes U+FFFD (each counted); values are kept as they are."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k.startswith("$") or "." in k or "\x00" in k:
                    k2 = k.replace("\x00", "\ufffd").replace(".", "\uff0e")
                    if k2.startswith("$"):
                        k2 = "\uff04" + k2[1:]
                    self.counters["json_key_renamed"] += 1
                    k = k2
                out[k] = self.json(v)
            return out
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, str) and "\x00" in value:
            self.counters["json_nul_in_string_kept"] += 1
        return value

    def array(self, items: dict[str, Any], value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self.array(items, v) for v in value]
        t = items.get("bson")
        if t == "array":  # nested arrays arrive already nested
            return self.array(items.get("items") or {}, value)
        if t == "decimal":
            d = value if isinstance(value, Decimal) else Decimal(str(value))
            return self.decimal(items, d)
        if t == "double":
            return float(value)
        if t == "long":
            return Int64(int(value))
        if t == "int":
            return int(value)
        if t == "date":
            return self.date(items, str(value).replace("T", " "))
        if t == "uuid":
            return self.scalar(items, str(value))
        if t == "binData":
            return self.scalar(items, str(value))
        if t == "object":
            return self.json(_plain_json(value))
        if t == "bool":
            return bool(value)
        return value if isinstance(value, str) else json.dumps(_plain_json(value))


def _json_float(text: str) -> Any:
    return float(text)


def _json_int(text: str) -> Any:
    value = int(text)
    # BSON has no integer wider than 64 bits: a larger JSON integer becomes Decimal128 (exact
    # up to 34 digits) rather than failing the row.
    if -(1 << 63) <= value < (1 << 63):
        return value
    return Decimal128(_DEC_CTX.create_decimal(value))


def _plain_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "E" not in str(value) \
            and "." not in str(value) else float(value)
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    return value


def _python_value(f: dict[str, Any], conv: Converter, text: str | None) -> Any:
    """A natural Python value (Decimal, datetime, int…) for calculated-field inputs."""
    if text is None:
        return None
    t = f["bson"]
    if t == "decimal":
        return Decimal(text)
    if t == "date":
        ms = parse_pg_timestamp(text)
        if ms is None or not _MIN_MS <= ms < _MAX_MS:
            return None
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    if t in ("int", "long"):
        return int(text)
    if t == "double":
        return float(text)
    return conv.scalar({**f, "serialize": None, "round": None}, text)


def _calc_value(calc: dict[str, Any], value: Any, conv: Converter) -> Any:
    if value is None:
        return None
    r = calc.get("round")
    if r:
        value = round_value(value, int(r["places"]), r.get("mode", "half_even"))
    t = calc.get("bson", "decimal")
    if t == "decimal":
        return conv.decimal({"serialize": "decimal128"}, value if isinstance(value, Decimal) else Decimal(str(value)))
    if t == "double":
        return float(value)
    if t == "int":
        return int(value)
    if t == "long":
        return Int64(int(value))
    if t == "string":
        return str(value)
    if t == "bool":
        return bool(value)
    return value


