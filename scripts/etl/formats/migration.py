"""Migration scripts: the document updates accepted schema changes need, as a file that both
`mongosh` and this pipeline can run.

`etl decide` writes `data/migrations/<ts>.js`; the load applies pending scripts in incremental
mode, after its backup, so documents that exist only in MongoDB follow the new schema too.
Each application is recorded in the target database (`_etl_migrations`, one document per
script, with the backup version it ran against), so a script runs once per database.

The format is strict so it can be parsed back rather than evaluated. The first line is
`// etl migration format 1`; every other line is blank, a `//` comment, or exactly one of
these statements, where S is a JSON string and E is `EJSON.deserialize(J, {"relaxed": false})`
with J a JSON object or array in canonical MongoDB Extended JSON:

    db.getCollection(S).updateMany(E, E);
    print(S, db.getCollection(S).countDocuments(E));
    if (db.getCollection(S).countDocuments(E) > 0) throw new Error(S);
    db.getCollection(S).renameCollection(S);
    db.getCollection(S).drop();

`EJSON.deserialize` (a mongosh global) turns {"$numberDecimal": "1.5"} into a Decimal128 the
way bson.json_util does here, so a value of any BSON type means the same on both sides.

    mongosh "mongodb://localhost:27017/bravo-1" data/migrations/2026-11-26-10-00-00.js
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import json_util
from bson.json_util import JSONMode, JSONOptions

from etl.core.errors import MigrationError
from etl.core.fsutil import write_if_changed
from etl.core.paths import paths
from etl.model.migration import Step

FORMAT_LINE = "// etl migration format 1"


# Canonical Extended JSON: every number carries its BSON type ({"$numberInt": "3"},
# {"$numberLong": "3"}), so a default for a bigint field is a long on both sides and passes a
# validator that wants one. Relaxed mode would turn it into whatever the reader guesses.
_JSON_OPTIONS = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=True, tzinfo=dt.timezone.utc)


_DESERIALIZE = "EJSON.deserialize("


_EXACT = ', {"relaxed": false})'  # mongosh's EJSON keeps Int32/Long/Double instead of JS numbers


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    header: list[str] = field(default_factory=list)


def migrations_dir() -> Path:
    return paths.data / "migrations"


def _s(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _j(obj: Any) -> str:
    return f"{_DESERIALIZE}{json_util.dumps(obj, json_options=_JSON_OPTIONS, ensure_ascii=False)}{_EXACT}"


def render_step(step: Step) -> str:
    coll = f"db.getCollection({_s(step.collection)})"
    if step.op == "updateMany":
        return f"{coll}.updateMany({_j(step.filter or {})}, {_j(step.update)});"
    if step.op == "count":
        return f"print({_s(step.message or '')}, {coll}.countDocuments({_j(step.filter or {})}));"
    if step.op == "assert_none":
        return (f"if ({coll}.countDocuments({_j(step.filter or {})}) > 0) "
                f"throw new Error({_s(step.message or 'migration precondition failed')});")
    if step.op == "rename":
        return f"{coll}.renameCollection({_s(step.target or '')});"
    if step.op == "drop":
        return f"{coll}.drop();"
    raise ValueError(f"unknown migration op {step.op!r}")


def render_script(steps: list[Step], header: list[str]) -> str:
    lines = [FORMAT_LINE] + [f"// {h}" for h in header] + [""]
    for step in steps:
        if step.comment:
            lines.append(f"// {step.comment}")
        lines.append(render_step(step))
    return "\n".join(lines) + "\n"


def write_script(path: Path, steps: list[Step], header: list[str]) -> bool:
    text = render_script(steps, header)
    parse_script(text, path.name)  # what we write must be what we can read back
    return write_if_changed(path, text)


class _Cursor:
    def __init__(self, text: str, where: str):
        self.text, self.pos, self.where = text, 0, where
        self.decoder = json.JSONDecoder(
            object_pairs_hook=lambda pairs: json_util.object_pairs_hook(pairs, _JSON_OPTIONS))

    def fail(self, what: str) -> MigrationError:
        near = self.text[self.pos:self.pos + 30]
        return MigrationError(f"{self.where}: expected {what} at column {self.pos + 1}, found {near!r}")

    def take(self, literal: str) -> None:
        if not self.text.startswith(literal, self.pos):
            raise self.fail(repr(literal))
        self.pos += len(literal)

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def json_value(self) -> Any:
        try:
            value, end = self.decoder.raw_decode(self.text, self.pos)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise self.fail(f"Extended JSON ({exc})") from None
        self.pos = end
        return value

    def string(self) -> str:
        value = self.json_value()
        if not isinstance(value, str):
            raise self.fail("a JSON string")
        return value

    def ejson(self) -> Any:
        self.take(_DESERIALIZE)
        value = self.json_value()
        if not isinstance(value, (dict, list)):
            raise self.fail("a JSON object or array")
        self.take(_EXACT)
        return value

    def collection(self) -> str:
        self.take("db.getCollection(")
        name = self.string()
        self.take(")")
        return name

    def end(self) -> None:
        if self.pos != len(self.text):
            raise self.fail("the end of the line")


def _parse_line(text: str, where: str, lineno: int) -> Step:
    cur = _Cursor(text, where)
    if cur.peek("print("):
        cur.take("print(")
        label = cur.string()
        cur.take(", ")
        coll = cur.collection()
        cur.take(".countDocuments(")
        flt = cur.ejson()
        cur.take("));")
        cur.end()
        return Step("count", coll, filter=flt, message=label, line=lineno)
    if cur.peek("if ("):
        cur.take("if (")
        coll = cur.collection()
        cur.take(".countDocuments(")
        flt = cur.ejson()
        cur.take(") > 0) throw new Error(")
        message = cur.string()
        cur.take(");")
        cur.end()
        return Step("assert_none", coll, filter=flt, message=message, line=lineno)
    coll = cur.collection()
    if cur.peek(".updateMany("):
        cur.take(".updateMany(")
        flt = cur.ejson()
        cur.take(", ")
        update = cur.ejson()
        cur.take(");")
        cur.end()
        if not isinstance(flt, dict):
            raise MigrationError(f"{where}: an updateMany filter must be an object")
        return Step("updateMany", coll, filter=flt, update=update, line=lineno)
    if cur.peek(".renameCollection("):
        cur.take(".renameCollection(")
        target = cur.string()
        cur.take(");")
        cur.end()
        return Step("rename", coll, target=target, line=lineno)
    cur.take(".drop();")
    cur.end()
    return Step("drop", coll, line=lineno)


def parse_script(text: str, name: str = "migration.js") -> Script:
    lines = text.splitlines()
    if not lines or lines[0].strip() != FORMAT_LINE:
        raise MigrationError(f"{name}:1: not an etl migration (first line must be {FORMAT_LINE!r})")
    script = Script()
    comments: list[str] = []
    for lineno, raw in enumerate(lines[1:], 2):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("//"):
            comments.append(line[2:].strip())
            continue
        step = _parse_line(line, f"{name}:{lineno}", lineno)
        if not script.steps:
            script.header, comments = comments[:-1], comments[-1:]
        script.steps.append(Step(**{**step.__dict__, "comment": comments[-1] if comments else None}))
        comments = []
    if not script.steps:
        script.header = comments
    return script
