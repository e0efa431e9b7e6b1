"""`schemas/rules.yaml`: read, checked against its JSON Schema (formats/schemas/rules.schema.json)
with the line of each error.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from etl.core.errors import RulesError
from etl.core.paths import paths
from etl.model import expr
from etl.model.rules import EMPTY_RULES

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "formats" / "schemas" / "rules.schema.json"


def rules_path() -> Path:
    return paths.schemas / "rules.yaml"


@lru_cache(maxsize=1)
def _validator():
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
