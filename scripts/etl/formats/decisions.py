"""Recorded decisions about detected schema changes (`schemas/decisions.yaml`).

The file is keyed by change id (stable across detections, see docs/architecture.md), and each
entry repeats the change's kind, table and column so a reviewer can read it without the id,
and so a stale entry (the change no longer exists, or the id now names something else) is
caught with its line number instead of being silently replayed. Entries are validated against
`etl/formats/schemas/decisions.schema.json`; docs/decisions.md lists every kind's allowed answers.

The file is read and written with ruamel.yaml in round-trip mode: comments a reviewer adds
(who approved, a ticket) survive every rewrite by `etl decide`.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError

from etl.core.errors import DecisionError
from etl.core.paths import paths
from etl.model import expr

FORMAT_VERSION = 1

# Kinds whose decision is {action: accept|reject}; the rest have their own shapes.
ACCEPT_REJECT = (
    "column_nullability_changed", "column_default_changed", "primary_key_changed",
    "foreign_key_added", "foreign_key_removed", "index_added", "index_removed", "unique_added",
    "unique_removed", "check_added", "check_removed", "enum_value_added", "enum_value_removed",
    "domain_changed", "partition_added", "partition_removed", "view_added", "view_removed",
    "comment_changed",
)
ACTIONS: dict[str, tuple[str, ...]] = {
    "column_renamed": ("rename", "drop_add"),
    "table_renamed": ("rename", "drop_add"),
    "column_removed": ("drop", "archive"),
    "table_removed": ("drop", "archive"),
    "table_added": ("load", "ignore"),
    **{kind: ("accept", "reject") for kind in ACCEPT_REJECT},
}
ON_FAILURE = ("fail", "set_null", "keep_old")
# The keys that carry the answer itself (the rest is bookkeeping).
ANSWER_KEYS = ("action", "default", "backfill", "strategy", "on_failure")
HEADER = """\
# Decisions about detected schema changes, replayed by every unattended run.
# Written by `etl decide --interactive` / `etl decide --decisions FILE`; hand edits are fine:
# the file is validated against scripts/etl/formats/schemas/decisions.schema.json (docs/decisions.md).
#
# decisions:
#   c-0123456789ab:              # the change id from data/changes/pending.json
#     kind: column_renamed       # kind, table and column must match that change
#     table: public.campaigns
#     column: title
#     action: rename             # or drop_add
#     decided_by: alice
#     decided_at: '2026-11-26T10:00:00Z'
"""


def decisions_path() -> Path:
    return paths.schemas / "decisions.yaml"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("etl.formats").joinpath("schemas/decisions.schema.json").read_text("utf-8")
    return json.loads(text)


def answer_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind's answer, without the bookkeeping keys: what an agent must
    send for a change of this kind."""
    for rule in schema()["definitions"]["decision"]["allOf"]:
        if kind in rule["if"]["properties"]["kind"]["enum"]:
            name = rule["then"]["$ref"].rsplit("/", 1)[1]
            body = copy.deepcopy(schema()["definitions"][name])
            body["properties"] = {k: v for k, v in body["properties"].items() if k in ANSWER_KEYS}
            body["required"] = [k for k in body["required"] if k in ANSWER_KEYS]
            return body
    raise DecisionError(f"no decision shape for change kind {kind!r}")


@dataclass
class Decisions:
    """Entries by change id, plus where each sits in its file for error messages."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    source: str = "decisions.yaml"

    def where(self, change_id: str) -> str:
        line = self.lines.get(change_id)
        return f"{self.source}:{line}" if line else self.source


def _yaml() -> YAML:
    y = YAML()  # round-trip: keeps comments and key order
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 100
    return y


def _plain(value: Any) -> Any:
    """ruamel's commented containers and timestamps as plain JSON-able values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _line_of(node: Any, path: Iterable[Any]) -> int | None:
    """1-based line of the deepest key along `path` that ruamel knows a position for."""
    line = None
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            try:
                line = node.lc.key(key)[0] + 1
            except (TypeError, KeyError):  # a map built in code, not parsed: no position
                pass
            node = node[key]
        else:
            break
    return line


def _parse(text: str, source: str) -> Any:
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise DecisionError(f"{where}: not valid YAML/JSON: {exc.problem or exc.context}") from None


def _validate(doc: Any, raw: Any, source: str) -> None:
    # best_match picks the most specific error; oneOf/allOf wrappers only say "not valid".
    err = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema()).iter_errors(doc))
    if err is None:
        return
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        if unknown:
            path.append(unknown[0])  # point at the key itself
    if "propertyNames" in err.absolute_schema_path:
        path.append(err.instance)
    line = _line_of(raw, path)
    where = f"{source}:{line}" if line else source
    at = ".".join(str(p) for p in path) or "top level"
    raise DecisionError(f"{where}: {at}: {_message(err)}")


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "oneOf" and err.path and isinstance(err.instance, dict):
        kind = err.instance.get("kind", "?")
        return f"a {kind} decision needs exactly one of default, backfill or action"
    if err.validator == "additionalProperties":
        return "unknown key"
    if "propertyNames" in err.absolute_schema_path:
        return f"{err.instance!r} is not a change id (c- and 12 hex digits)"
    if err.validator == "pattern" and err.path and err.path[-1] == "decided_at":
        return f"{err.instance!r} is not an ISO 8601 time such as 2026-11-26T10:00:00Z"
    if err.validator == "const":
        return f"must be {err.validator_value!r}"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    return err.message


def parse_decisions(text: str, source: str = "decisions.yaml") -> Decisions:
    """Parse and validate a decisions document (YAML, or JSON which is YAML too)."""
    raw = _parse(text, source)
    if raw is None:
        raw = CommentedMap()
    doc = _plain(raw)
    if not isinstance(doc, dict):
        raise DecisionError(f"{source}:1: expected a mapping with format_version and decisions")
    _validate(doc, raw, source)
    entries = doc.get("decisions") or {}
    body = raw.get("decisions") if isinstance(raw, CommentedMap) else None
    lines = {cid: body.lc.key(cid)[0] + 1 for cid in entries} if isinstance(body, CommentedMap) else {}
    return Decisions(entries=entries, lines=lines, source=source)


def decisions_data(path: Path | None = None) -> dict[str, Any]:
    """The recorded decisions as plain data, the form the mapping reads; none when there is
    no file."""
    return {"format_version": 1, "decisions": load_decisions(path).entries}


def load_decisions(path: Path | None = None) -> Decisions:
    """The recorded decisions; a missing file means none."""
    path = path or decisions_path()
    if not path.is_file():
        return Decisions(source=path.name)
    return parse_decisions(path.read_text(encoding="utf-8"), path.name)


def _describe(entry: dict[str, Any]) -> str:
    col = entry.get("column")
    return f"{entry.get('kind')} {entry.get('table')}{'.' + col if col else ''}"


def check_against_changes(decisions: Decisions, changes: list[dict[str, Any]]) -> None:
    """Every entry either was accepted before (`applied_in`) or names one of `changes` with the
    same kind, table and column. Anything else is stale: one error naming its line."""
    by_id = {c["id"]: c for c in changes}
    for cid, entry in decisions.entries.items():
        change = by_id.get(cid)
        if change is None:
            if entry.get("applied_in"):
                continue
            raise DecisionError(
                f"{decisions.where(cid)}: decision {cid} ({_describe(entry)}) names a change that no "
                "longer exists", hint="remove the entry, or run `etl detect` if the changes are out of date")
        for key in ("kind", "table", "column"):
            if (entry.get(key) or None) != (change.get(key) or None):
                raise DecisionError(
                    f"{decisions.where(cid)}: decision {cid} says {_describe(entry)} but that change is "
                    f"{_describe(change)}")
        check_answer(change, entry, decisions.where(cid))


def check_answer(change: dict[str, Any], entry: dict[str, Any], where: str) -> None:
    """What the schema cannot see: the answer fits this particular change."""
    if change["kind"] == "column_added":
        nullable = (change.get("to") or {}).get("nullable", True)
        if entry.get("action") == "accept" and not nullable:
            raise DecisionError(f"{where}: {_describe(change)} is a required column: "
                                "give a default or a backfill expression, not accept")
        if "backfill" in entry:
            try:
                expr.parse(entry["backfill"])
            except expr.ExpressionError as exc:
                raise DecisionError(f"{where}: backfill {entry['backfill']!r}: {exc}") from None


def decision_for(change: dict[str, Any], decisions: Decisions) -> dict[str, Any] | None:
    return decisions.entries.get(change["id"])


def pending(changes: list[dict[str, Any]], decisions: Decisions) -> list[dict[str, Any]]:
    """Review changes without a recorded decision, in detection order."""
    return [c for c in changes if c.get("classification") == "review" and c["id"] not in decisions.entries]


def make_entry(change: dict[str, Any], answer: dict[str, Any], decided_by: str,
               decided_at: str | None = None) -> dict[str, Any]:
    """A full decisions.yaml entry for `change` from an answer such as {"action": "rename"}."""
    entry: dict[str, Any] = {"kind": change["kind"], "table": change["table"]}
    if change.get("column"):
        entry["column"] = change["column"]
    entry.update({k: answer[k] for k in ANSWER_KEYS if k in answer})
    if answer.get("note"):
        entry["note"] = answer["note"]
    entry["decided_by"] = decided_by
    entry["decided_at"] = decided_at or now_iso()
    return entry


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_answers(path: Path, changes: list[dict[str, Any]], decided_by: str) -> dict[str, dict[str, Any]]:
    """A file of answers (YAML or JSON) from a person or a program, as full entries.

    Same shape as decisions.yaml, but kind/table/column and decided_by/decided_at may be left
    out (they are filled from the change and --by); when given they must match.
    """
    if not path.is_file():
        raise DecisionError(f"decisions file {path} does not exist")
    raw = _parse(path.read_text(encoding="utf-8"), path.name)
    doc = _plain(raw) if raw is not None else None
    if not isinstance(doc, dict) or not isinstance(doc.get("decisions"), dict):
        raise DecisionError(f"{path.name}:1: expected {{\"decisions\": {{\"<change id>\": {{…}}}}}}")
    by_id = {c["id"]: c for c in changes}
    body = raw["decisions"]
    completed: dict[str, Any] = {}
    for cid, answer in doc["decisions"].items():
        line = body.lc.key(cid)[0] + 1 if isinstance(body, CommentedMap) else None
        where = f"{path.name}:{line}" if line else path.name
        change = by_id.get(cid)
        if change is None:
            raise DecisionError(f"{where}: {cid} is not one of the detected changes",
                                hint="`etl decide --json` lists them")
        if not isinstance(answer, dict):
            raise DecisionError(f"{where}: the answer for {cid} must be a mapping")
        entry = make_entry(change, answer, answer.get("decided_by") or decided_by, answer.get("decided_at"))
        for key in ("kind", "table", "column"):
            if key in answer and (answer[key] or None) != (change.get(key) or None):
                raise DecisionError(f"{where}: {cid} is {_describe(change)}, not {answer[key]!r} ({key})")
        extra = set(answer) - set(entry) - {"decided_by", "decided_at"}
        if extra:
            raise DecisionError(f"{where}: {cid}: unknown key {sorted(extra)[0]!r} for a {change['kind']} answer")
        completed[cid] = entry
    _validate({"format_version": FORMAT_VERSION, "decisions": completed},
              CommentedMap({"decisions": body}), path.name)
    for cid, entry in completed.items():
        line = body.lc.key(cid)[0] + 1 if isinstance(body, CommentedMap) else None
        check_answer(by_id[cid], entry, f"{path.name}:{line}" if line else path.name)
    return completed


def render(existing_text: str | None, updates: dict[str, dict[str, Any]]) -> str:
    """The decisions file with `updates` merged in (new ids appended, existing ids replaced),
    comments and order of the existing text kept."""
    y = _yaml()
    doc = y.load(existing_text) if existing_text and existing_text.strip() else None
    if not isinstance(doc, CommentedMap):
        doc = y.load(HEADER + f"format_version: {FORMAT_VERSION}\ndecisions: {{}}\n")
    if not isinstance(doc.get("decisions"), CommentedMap):
        doc["decisions"] = CommentedMap()
    body = doc["decisions"]
    if body.fa.flow_style():
        body.fa.set_block_style()
    for cid, entry in updates.items():
        current = body.get(cid)
        if isinstance(current, CommentedMap):
            for key in list(current):
                if key not in entry:
                    del current[key]
            for key, value in entry.items():
                current[key] = value
        else:
            body[cid] = CommentedMap(entry)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


_LITERAL_DEFAULT = re.compile(
    r"^\(?'((?:[^']|'')*)'(?:::[\w .\"\[\]()]+)?\)?$"  # 'text'::type
    r"|^\(?(-?\d+(?:\.\d+)?)\)?(?:::[\w .]+)?$"  # 0, 0.00, (-1)::integer
    r"|^(true|false)$")


def literal_default(expression: str | None) -> Any:
    """A column's PostgreSQL default as a plain value when it is a constant ('x'::text, 0,
    0.00, true); None for expressions such as now() or nextval(…)."""
    if not expression:
        return None
    match = _LITERAL_DEFAULT.match(expression.strip())
    if not match:
        return None
    text, number, flag = match.groups()
    if text is not None:
        return text.replace("''", "'")
    if number is not None:
        return int(number) if number.lstrip("-").isdigit() else number
    return flag == "true"


def recommended(change: dict[str, Any]) -> dict[str, Any] | None:
    """The answer "apply all" gives, and what a safe change gets without a recorded decision:
    keep data where there is a choice (rename, archive, cast that stops on failure). None for a
    new required column without a constant default: there is nothing safe to assume."""
    kind = change["kind"]
    if kind == "column_added":
        to = change.get("to") or {}
        if to.get("nullable", True):
            return {"action": "accept"}
        value = literal_default(to.get("default"))
        return None if value is None else {"default": value}
    if kind == "column_type_changed":
        return {"strategy": "cast", "on_failure": "fail"}
    if kind in ("column_removed", "table_removed"):
        return {"action": "archive"}
    if kind in ACTIONS:
        return {"action": ACTIONS[kind][0]}
    return {"action": "accept"}


def answer_of(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ANSWER_KEYS if k in entry}
