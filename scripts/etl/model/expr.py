"""A small, safe expression language for calculated fields: `rate * units / 1000`.

Expressions are parsed with Python's `ast` and only a fixed set of nodes is accepted:
arithmetic (+ - * / // %), comparisons, `and`/`or`/`not`, `x if cond else y`, column names,
number/string/boolean/null literals and a few functions (abs, round, min, max, coalesce).
Nothing is ever passed to `eval`; an accepted tree is compiled once into plain closures, so
evaluating a row costs a few function calls.

Semantics follow SQL where Python's would surprise a data engineer:
- NULL propagates: any arithmetic or comparison with None gives None.
- Exact decimals: numeric columns arrive as Decimal; float operands meeting a Decimal are
  converted through their shortest repr, so `rate * 1.5` stays exact.
- Division by zero raises DivisionByZero; the calculated field's `on_error` decides whether the
  row fails or the field is null.
"""

from __future__ import annotations

import ast
import decimal
import functools
import operator
from decimal import Decimal
from typing import Any, Callable, Mapping

from etl.model.rounding import round_value

Row = Mapping[str, Any]
_Fn = Callable[[Row], Any]

MAX_LENGTH = 1000


class ExpressionError(ValueError):
    """The expression does not parse or uses something outside the language."""


class EvaluationError(ArithmeticError):
    """A row's values make the expression fail (division by zero, bad operand types)."""


class DivisionByZero(EvaluationError):
    pass


_NUMBERS = (int, float, Decimal)


def _num(value: Any, other: Any) -> Any:
    if isinstance(value, float) and isinstance(other, Decimal):
        return Decimal(repr(value))
    return value


def _arith(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        if not (isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS)) or isinstance(a, bool) \
                or isinstance(b, bool):
            raise EvaluationError(f"cannot apply {symbol} to {type(a).__name__} and {type(b).__name__}")
        a, b = _num(a, b), _num(b, a)
        if symbol == "/" and isinstance(a, int) and isinstance(b, int):
            # 7 / 2 between integer columns means the exact ratio, not a binary float.
            a = Decimal(a)
        try:
            return op(a, b)
        except (ZeroDivisionError, decimal.DivisionByZero, decimal.InvalidOperation) as exc:
            if b == 0:
                raise DivisionByZero("division by zero") from None
            raise EvaluationError(str(exc)) from None
        except TypeError:
            raise EvaluationError(f"cannot apply {symbol} to {type(a).__name__} and "
                                  f"{type(b).__name__}") from None

    return apply


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: _arith(operator.add, "+"),
    ast.Sub: _arith(operator.sub, "-"),
    ast.Mult: _arith(operator.mul, "*"),
    ast.Div: _arith(operator.truediv, "/"),
    ast.FloorDiv: _arith(operator.floordiv, "//"),
    ast.Mod: _arith(operator.mod, "%"),
}

_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def _round(value: Any, places: Any = 0) -> Any:
    """round(x, n) in an expression: half to even, the rules' default mode."""
    if value is None:
        return None
    return round_value(value, int(places), "half_even")


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _nullsafe(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        try:
            return fn(*(_num(a, next((b for b in args if isinstance(b, Decimal)), None)) for a in args))
        except TypeError as exc:
            raise EvaluationError(str(exc)) from None

    return call


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    # name: (function, min args, max args)
    "abs": (_nullsafe(abs), 1, 1),
    "round": (_round, 1, 2),
    "min": (_nullsafe(min), 2, 8),
    "max": (_nullsafe(max), 2, 8),
    "coalesce": (_coalesce, 1, 8),
}


class Expression:
    """A parsed expression: `.names` are the columns it reads, `.evaluate(row)` its value."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError("empty expression")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"does not parse at column {exc.offset or 0}: {text.strip()!r}") from None
        self.text = text
        self.tree = tree.body  # checked by _compile below: only the language's nodes
        self.names: set[str] = set()
        # Columns used directly as operands of arithmetic: they must be numeric, which the
        # mapping checks against the schema so a type change that breaks a rule is caught.
        self.arithmetic_names: set[str] = set()
        self._fn = self._compile(tree.body)

    def evaluate(self, row: Row) -> Any:
        return self._fn(row)

    def _compile(self, node: ast.AST) -> _Fn:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, float):
                value = Decimal(repr(value))
            if value is not None and not isinstance(value, (int, str, bool, Decimal)):
                raise ExpressionError(f"literal {node.value!r} is not allowed")
            return lambda row, v=value: v
        if isinstance(node, ast.Name):
            if node.id in ("null", "None"):
                return lambda row: None
            if node.id in ("true", "True"):
                return lambda row: True
            if node.id in ("false", "False"):
                return lambda row: False
            name = node.id
            self.names.add(name)

            def lookup(row: Row, name: str = name) -> Any:
                try:
                    return row[name]
                except KeyError:
                    raise EvaluationError(f"no column {name!r} in the row") from None

            return lookup
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and _is_zero(node.right):
                raise ExpressionError(f"divides by zero: {ast.unparse(node)!r}")
            for side in (node.left, node.right):
                if isinstance(side, ast.Name) and side.id not in ("null", "None", "true", "True",
                                                                  "false", "False"):
                    self.arithmetic_names.add(side.id)
            op, left, right = _BINOPS[type(node.op)], self._compile(node.left), self._compile(node.right)
            return lambda row: op(left(row), right(row))
        if isinstance(node, ast.UnaryOp):
            inner = self._compile(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda row: None if (v := inner(row)) is None else -v
            if isinstance(node.op, ast.UAdd):
                return inner
            if isinstance(node.op, ast.Not):
                return lambda row: None if (v := inner(row)) is None else not v
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda row: _and(parts, row)
            return lambda row: _or(parts, row)
        if isinstance(node, ast.Compare):
            if any(type(op) not in _CMPOPS for op in node.ops):
                raise ExpressionError("only == != < <= > >= comparisons are allowed")
            first = self._compile(node.left)
            rest = [(_CMPOPS[type(op)], self._compile(c)) for op, c in zip(node.ops, node.comparators)]
            return lambda row: _compare(first, rest, row)
        if isinstance(node, ast.IfExp):
            test, body, orelse = (self._compile(node.test), self._compile(node.body),
                                  self._compile(node.orelse))
            return lambda row: body(row) if test(row) else orelse(row)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            name = node.func.id
            if name not in FUNCTIONS:
                raise ExpressionError(f"unknown function {name}(); allowed: {', '.join(sorted(FUNCTIONS))}")
            fn, lo, hi = FUNCTIONS[name]
            if not lo <= len(node.args) <= hi:
                raise ExpressionError(f"{name}() takes {lo}..{hi} arguments, got {len(node.args)}")
            args = [self._compile(a) for a in node.args]
            return lambda row: fn(*(a(row) for a in args))
        raise ExpressionError(f"{type(node).__name__.lower()} is not allowed in an expression "
                              f"({ast.unparse(node)!r})")


def _is_zero(node: ast.AST) -> bool:
    """A literal zero divisor (`x / 0`, `x / -0.0`): an error in the rule, not in the data."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and not isinstance(node.value, bool) \
        and isinstance(node.value, (int, float)) and node.value == 0


def _and(parts: list[_Fn], row: Row) -> Any:
    result: Any = True
    for part in parts:
        value = part(row)
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _or(parts: list[_Fn], row: Row) -> Any:
    result: Any = False
    for part in parts:
        value = part(row)
        if value is True:
            return True
        if value is None:
            result = None
    return result


def _compare(first: _Fn, rest: list[tuple[Callable[[Any, Any], bool], _Fn]], row: Row) -> Any:
    left = first(row)
    for op, fn in rest:
        right = fn(row)
        if left is None or right is None:
            return None
        try:
            if not op(_num(left, right), _num(right, left)):
                return False
        except TypeError:
            raise EvaluationError(f"cannot compare {type(left).__name__} and {type(right).__name__}") from None
        left = right
    return True


@functools.lru_cache(maxsize=256)
def parse(text: str) -> Expression:
    """The compiled expression for `text` (cached: the transform evaluates it per row)."""
    return Expression(text)


_AGGREGATION_OPS = {ast.Add: "$add", ast.Sub: "$subtract", ast.Mult: "$multiply", ast.Mod: "$mod"}


def to_aggregation(text: str, field_of: Mapping[str, str]) -> Any | None:
    """The expression as a MongoDB aggregation expression over documents whose fields
    `field_of` names (column -> field), with the language's own semantics: null propagates (as
    MongoDB's arithmetic does), `/` is exact (both sides as Decimal128, as the transform
    computes it) and a division by zero gives null (the calculated fields' default on_error).
    None when it uses something with no direct counterpart (comparisons, conditions, `//`,
    min/max): the caller says so instead of guessing."""
    tree = parse(text).tree

    def conv(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and node.value.startswith("$"):
                return {"$literal": node.value}
            return node.value
        if isinstance(node, ast.Name):
            if node.id in ("null", "None"):
                return None
            if node.id in ("true", "True", "false", "False"):
                return node.id.lower() == "true"
            if node.id not in field_of:
                raise LookupError(node.id)
            return "$" + field_of[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left, right = conv(node.left), conv(node.right)
            return {"$cond": [{"$eq": [right, 0]}, None,
                              {"$divide": [{"$toDecimal": left}, {"$toDecimal": right}]}]}
        if isinstance(node, ast.BinOp) and type(node.op) in _AGGREGATION_OPS:
            return {_AGGREGATION_OPS[type(node.op)]: [conv(node.left), conv(node.right)]}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return {"$multiply": [-1, conv(node.operand)]}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return conv(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [conv(a) for a in node.args]
            if node.func.id == "coalesce":
                return {"$ifNull": args} if len(args) > 1 else args[0]
            if node.func.id == "abs":
                return {"$abs": args[0]}
            if node.func.id == "round":
                return {"$round": args if len(args) == 2 else [args[0], 0]}
        raise LookupError(type(node).__name__)

    try:
        return conv(tree)
    except LookupError:
        return None


def names_in(text: str) -> set[str]:
    """The column names an expression reads."""
    return set(parse(text).names)


def evaluate(text: str, row: Row) -> Any:
    return parse(text).evaluate(row)
