"""Contract tests that follow the schema: do the documents in MongoDB match the canonical schemas?

`etl generate` writes one pytest module per collection to `generated/tests/test_<slug>.py`
(`render_test_module`). Each samples its collection in the target database (MONGO_URI,
MONGO_DB_NAME; ETL_CONTRACT_SAMPLE documents at most) and checks

- every sampled document against the canonical JSON Schema (jsonschema, draft 2020-12, with
  format checking) and against the generated Pydantic model;
- the collection's `$jsonSchema` validator against the one etl.mongo_schema derives from the
  canonical schema;
- its indexes against the canonical schema's `x-indexes`.

`etl test-data` runs them in a pytest subprocess: exit 0 when they pass, 4 when a contract
is broken, 1 when they could not run.

Documents are checked in their JSON form (`to_json_doc`), the representation the canonical
schemas describe: see docs/generated-artifacts.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

import click
from bson import Binary, Decimal128, Int64, ObjectId

from etl.cli import config_options
from etl.config import Config, load_config, secrets_of
from etl.errors import EtlError, GenerateError, ValidationFailed
from etl.paths import paths

log = logging.getLogger("etl.contract")

MAX_REPORTED = 20  # failures listed per check; the count says how many more there were


# ---------------------------------------------------------------- documents as JSON


def _types_of(schema: Any, root: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The JSON types a (sub)schema accepts; None when it does not say (anything goes)."""
    if not isinstance(schema, dict):
        return None
    found: set[str] | None = None

    def add(types: set[str] | None) -> None:
        nonlocal found
        if types is None:
            return
        found = (found or set()) | types

    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and ref not in seen:
        add(_types_of(_resolve(root, ref), root, seen | {ref}))
    t = schema.get("type")
    if isinstance(t, str):
        add({t})
    elif isinstance(t, list):
        add(set(t))
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            add(_types_of(branch, root, seen))
    return found


def _resolve(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref[2:].split("/") if ref != "#" else []:
        if not isinstance(node, dict):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def _sub(schema: Any, root: dict[str, Any], key: str | int) -> Any:
    """The subschema that applies to property `key` (str) or array item `key` (int)."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        schema = {**(_resolve(root, ref) or {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(key, int):
        prefix = schema.get("prefixItems") or []
        if key < len(prefix):
            return prefix[key]
        return schema.get("items") if isinstance(schema.get("items"), dict) else None
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    for branch in (schema.get("anyOf") or []) + (schema.get("oneOf") or []):
        found = _sub(branch, root, key)
        if found is not None:
            return found
    return None


def _format_of(schema: Any, root: dict[str, Any]) -> str | None:
    if not isinstance(schema, dict):
        return None
    if schema.get("format"):
        return schema["format"]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        return _format_of(_resolve(root, ref), root)
    for branch in (schema.get("anyOf") or []) + (schema.get("oneOf") or []):
        fmt = _format_of(branch, root)
        if fmt:
            return fmt
    return None


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:  # BSON dates are UTC; a naive one came from a tz-unaware client
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def to_json_doc(doc: Any, schema: dict[str, Any] | None = None) -> Any:
    """A BSON document (as pymongo returns it) in the JSON form the canonical schemas describe.

    ObjectId → 24-hex string; datetime → ISO 8601 UTC with `Z` (`YYYY-MM-DD` where the schema
    says `format: date`); UUID and Binary subtype 4 → canonical UUID string; other Binary and
    bytes → base64; Int64 → integer; Decimal128 / Decimal → its exact decimal string, or a JSON
    number where the schema accepts a number but not a string (a canonical schema may describe
    money either way). Embedded documents and arrays are converted recursively, following the
    schema's properties and items. Anything else stays as it is.
    """
    return JsonView(schema).convert(doc)


class JsonView:
    """to_json_doc for many documents of one schema: what each schema node says about its
    properties, items, types and format is looked up once per node, not once per value."""

    def __init__(self, schema: dict[str, Any] | None):
        self.schema = schema
        self.root = schema or {}
        self._subs: dict[tuple[int, str | int], Any] = {}
        self._number: dict[int, tuple[bool, bool]] = {}
        self._dates: dict[int, bool] = {}
        self._keep: list[Any] = []  # nodes built here (a $ref merged) stay alive: ids stay unique
        # Decimals outside their node's `x-bounds` (a decimal is a string in JSON, so JSON
        # Schema cannot bound it): found while converting, one line each, for the last document.
        self.out_of_bounds: list[str] = []

    def convert(self, doc: Any) -> Any:
        self.out_of_bounds = []
        return self._convert(doc, self.schema)

    def _check_bounds(self, number: Decimal, node: Any) -> None:
        bounds = node.get("x-bounds") if isinstance(node, dict) else None
        if not bounds or not number.is_finite():
            return
        for key, ok in (("minimum", lambda b: number >= b), ("maximum", lambda b: number <= b),
                        ("exclusiveMinimum", lambda b: number > b), ("exclusiveMaximum", lambda b: number < b)):
            if key in bounds and not isinstance(bounds[key], bool) and not ok(Decimal(str(bounds[key]))):
                self.out_of_bounds.append(f"{number} is outside {key} {bounds[key]}")

    def sub(self, node: Any, key: str | int) -> Any:
        cache_key = (id(node), key)
        try:
            return self._subs[cache_key]
        except KeyError:
            found = self._subs[cache_key] = _sub(node, self.root, key)
            self._keep.append(found)
            return found

    def _decimal_as(self, node: Any) -> tuple[bool, bool]:
        """(as a number, as an integer when integral) for a decimal at `node`."""
        key = id(node)
        if key not in self._number:
            types = _types_of(node, self.root)
            number = types is not None and "string" not in types and bool(types & {"number", "integer"})
            self._number[key] = (number, number and "integer" in types)
        return self._number[key]

    def _date_only(self, node: Any) -> bool:
        key = id(node)
        if key not in self._dates:
            self._dates[key] = _format_of(node, self.root) == "date"
        return self._dates[key]

    def _convert(self, value: Any, node: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._convert(v, self.sub(node, k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._convert(v, self.sub(node, i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, Int64):
            return int(value)
        if isinstance(value, ObjectId):
            return str(value)
        if isinstance(value, (Decimal128, Decimal)):
            number = value.to_decimal() if isinstance(value, Decimal128) else value
            self._check_bounds(number, node)
            as_number, as_integer = self._decimal_as(node)
            if as_number:
                if as_integer and number.is_finite() and number == number.to_integral_value():
                    return int(number)
                return float(number)
            return str(number)
        if isinstance(value, dt.datetime):
            return value.date().isoformat() if self._date_only(node) else _iso(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, Binary):
            if value.subtype == 4 and len(value) == 16:
                return str(uuid.UUID(bytes=bytes(value)))
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode("ascii")
        return value


class SchemaCheck:
    """A canonical schema checked on BSON documents in their JSON form.

    fastjsonschema's compiled check decides whether a document passes (the canonical dialect
    uses only keywords that mean the same in draft 7, and the formats are jsonschema's own
    checkers); jsonschema (draft 2020-12) explains the documents that fail. Decimal bounds
    (`x-bounds`) are checked by the conversion itself."""

    def __init__(self, schema: dict[str, Any]):
        import fastjsonschema
        from jsonschema import validators

        self.schema = schema
        self.view = JsonView(schema)
        cls = validators.validator_for(schema)
        self.explainer = cls(schema, format_checker=cls.FORMAT_CHECKER)
        checker = cls.FORMAT_CHECKER
        formats = {name: (lambda name: lambda value: checker.conforms(value, name))(name)
                   for name in checker.checkers}
        formats["decimal"] = lambda value: True  # the pattern beside it checks the syntax
        draft7 = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
        draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
        self._passes = fastjsonschema.compile(draft7, formats=formats)
        self._failure = fastjsonschema.JsonSchemaException

    def problem(self, doc: Any) -> str | None:
        """The first thing wrong with `doc` as `path: message`, or None."""
        converted = self.view.convert(doc)
        if self.view.out_of_bounds:
            return f"(decimal): {self.view.out_of_bounds[0]}"
        try:
            self._passes(converted)
            return None
        except self._failure as exc:
            fast = str(exc)
        error = next(iter(self.explainer.iter_errors(converted)), None)
        if error is None:
            return f"(document): {fast[:200]}"
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        return f"{where}: {error.message[:200]}"


# ---------------------------------------------------------------- checks


def schema_failures(schema: dict[str, Any], docs: Iterable[dict[str, Any]]) -> list[str]:
    """One line per violation of the canonical JSON Schema, naming the document's _id."""
    from jsonschema import validators

    cls = validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    failures = []
    for doc in docs:
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(document)"
            failures.append(f"_id={_short(doc.get('_id'))}: {where}: {_short(err.message, 160)}")
    return failures


def model_failures(model: type, docs: Iterable[dict[str, Any]]) -> list[str]:
    """One line per Pydantic validation error, parsing each document from its JSON text."""
    from pydantic import ValidationError

    failures = []
    for doc in docs:
        try:
            model.model_validate_json(json.dumps(doc))
        except ValidationError as exc:
            for err in exc.errors():
                where = "/".join(str(p) for p in err["loc"]) or "(document)"
                failures.append(f"_id={_short(doc.get('_id'))}: {where}: {_short(err['msg'], 160)}")
    return failures


def validator_problems(canonical: dict[str, Any], validator: dict[str, Any] | None) -> list[str]:
    """How the server's validator differs from the one etl.mongo_schema derives from the
    canonical schema. Differences are named by property (missing, extra, required, enum)
    where possible, so a failure says what drifted, not just that something did."""
    from etl.mongo_schema import plain, validator_for

    if not validator or "$jsonSchema" not in validator:
        return ["the collection has no $jsonSchema validator"]
    want, have = validator_for(canonical), plain(validator)
    if want == have:
        return []
    w, h = want["$jsonSchema"], have["$jsonSchema"]
    problems = []
    want_props, have_props = set(w.get("properties") or {}), set(h.get("properties") or {})
    if missing := sorted(want_props - have_props):
        problems.append(f"validator lacks properties: {', '.join(missing)}")
    if extra := sorted(have_props - want_props):
        problems.append(f"validator has properties the canonical schema does not: {', '.join(extra)}")
    if set(w.get("required") or []) != set(h.get("required") or []):
        problems.append(f"validator requires {sorted(h.get('required') or [])}, "
                        f"canonical schema requires {sorted(w.get('required') or [])}")
    for name in sorted(want_props & have_props):
        if w["properties"][name] != h["properties"][name]:
            problems.append(f"validator of {name} is {_short(h['properties'][name], 120)}, "
                            f"expected {_short(w['properties'][name], 120)}")
    rest = {k for k in w.keys() | h.keys() if k not in ("properties", "required") and w.get(k) != h.get(k)}
    if rest:
        problems.append(f"validator differs in {', '.join(sorted(rest))}")
    return problems or ["validator differs from the canonical schema's"]


def _index_key(keys: Sequence[Sequence[Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((str(k), int(v)) for k, v in keys)


def index_problems(expected: list[dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Expected indexes (`keys`, `unique`, `partialFilterExpression`, as
    etl.mongo_schema.expected_indexes gives them) vs the server's `index_information()`.

    Names are not compared (they are cosmetic); the `_id` index is MongoDB's own."""
    def shape(ix: dict[str, Any], keys: Sequence[Sequence[Any]]) -> tuple[bool, Any]:
        from etl.mongo_schema import plain

        return bool(ix.get("unique")), plain(ix.get("partialFilterExpression")) or None

    want = {_index_key(ix["keys"]): shape(ix, ix["keys"]) for ix in expected}
    have = {_index_key(info["key"]): shape(info, info["key"]) for info in actual.values()}
    for table in (want, have):
        table.pop((("_id", 1),), None)
    problems = []
    for keys, (unique, partial) in sorted(want.items(), key=lambda kv: kv[0]):
        if keys not in have:
            problems.append(f"missing index {_show_keys(keys)}{' (unique)' if unique else ''}")
            continue
        have_unique, have_partial = have[keys]
        if have_unique != unique:
            problems.append(f"index {_show_keys(keys)} is {'unique' if have_unique else 'not unique'}, "
                            f"expected {'unique' if unique else 'not unique'}")
        if have_partial != partial:
            problems.append(f"index {_show_keys(keys)} has partial filter {have_partial}, expected {partial}")
    for keys in sorted(set(have) - set(want)):
        problems.append(f"unexpected index {_show_keys(keys)}")
    return problems


def _show_keys(keys: tuple[tuple[str, Any], ...]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in keys) + "}"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report(failures: list[str], what: str) -> str:
    shown = failures[:MAX_REPORTED]
    more = len(failures) - len(shown)
    lines = [f"{len(failures)} {what}:"] + [f"  {line}" for line in shown]
    if more:
        lines.append(f"  … and {more} more")
    return "\n".join(lines)


# ---------------------------------------------------------------- the target collection


@dataclass
class Target:
    """One collection of the target database, with the artifacts generated for it."""

    collection: str
    slug: str
    type_name: str
    generated: Path
    db: Any
    sample_size: int
    node: str = "node"  # ETL_NODE: runs the Zod schemas
    _sample: list[dict[str, Any]] | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, collection: str, slug: str, type_name: str, generated: Path) -> "Target":
        """Connect with the pipeline's settings (MONGO_URI, MONGO_DB_NAME, ETL_CONTRACT_SAMPLE,
        ETL_NODE)."""
        from etl.mongo import connect

        cfg = load_config()
        client = connect(cfg["MONGO_URI"])
        return cls(collection=collection, slug=slug, type_name=type_name, generated=generated,
                   db=client[cfg["MONGO_DB_NAME"]], sample_size=cfg["ETL_CONTRACT_SAMPLE"], node=cfg["ETL_NODE"])

    @property
    def schema(self) -> dict[str, Any]:
        from etl.fsutil import read_json

        return read_json(self.generated / "jsonschema" / f"{self.collection}.schema.json")

    @property
    def model(self) -> type:
        path = self.generated / "models" / f"{self.slug}.py"
        spec = importlib.util.spec_from_file_location(f"etl_generated_models_{self.slug}", path)
        if spec is None or spec.loader is None:
            raise GenerateError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves forward references through it
        spec.loader.exec_module(module)
        return getattr(module, self.type_name)

    def exists(self) -> bool:
        return self.collection in self.db.list_collection_names()

    def sample(self) -> list[dict[str, Any]]:
        """Up to `sample_size` documents in JSON form: all of them when the collection is
        that small, otherwise a `$sample`."""
        if self._sample is None:
            coll = self.db[self.collection]
            if coll.estimated_document_count() <= self.sample_size:
                raw = list(coll.find())
            else:
                raw = list(coll.aggregate([{"$sample": {"size": self.sample_size}}]))
            view = JsonView(self.schema)
            self._sample = [view.convert(doc) for doc in raw]
        return self._sample

    def validator(self) -> dict[str, Any] | None:
        """The collection's validator as the server reports it (None: it has none)."""
        infos = list(self.db.list_collections(filter={"name": self.collection}))
        if not infos:
            return None
        return (infos[0].get("options") or {}).get("validator")

    def indexes(self) -> dict[str, dict[str, Any]]:
        return self.db[self.collection].index_information()


# ---------------------------------------------------------------- Zod and TypeScript, in Node


_TSC_FLAGS = ("--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
              "--skipLibCheck")
_TSC_ERROR = re.compile(r"^(?P<file>.+?)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<msg>.*)$")
_FIXTURE_HEAD = 4  # lines before the first document in a TypeScript fixture


def _node_safe(value: Any) -> Any:
    """A JSON document with its non-finite numbers spelled so that JSON can carry them to Node
    (validate.mjs turns them back into NaN and ±Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$nonFinite": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {k: _node_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_node_safe(v) for v in value]
    return value


class NodeChecks:
    """The generated Zod schemas and TypeScript types run on every collection's sample, once per
    process (starting tsc is the slow part): the Zod sources are compiled with the project's
    pinned tsc and run with Node (scripts/etl/node/validate.mjs); each collection's documents
    become a TypeScript fixture (`export const documents: Campaigns[] = [...]`) and all
    fixtures are compiled with `tsc --noEmit --strict`. Results are kept by collection."""

    _done: dict[tuple, "NodeChecks"] = {}

    def __init__(self, generated: Path, node: str):
        self.generated, self.node = generated, node
        self.zod: dict[str, list[str]] = {}
        self.typescript: dict[str, list[str]] = {}

    @classmethod
    def of(cls, target: "Target") -> "NodeChecks":
        key = (str(target.generated), target.db.name, target.sample_size)
        if key not in cls._done:
            checks = cls(target.generated, target.node)
            checks.run(target)
            cls._done[key] = checks
        return cls._done[key]

    def _tool(self, name: str) -> str:
        from etl.paths import SOURCE_ROOT

        if name == "tsc":
            tsc = SOURCE_ROOT / "node_modules" / ".bin" / "tsc"
            if not tsc.is_file():
                raise GenerateError("TypeScript (tsc) is not installed", hint=f"run `npm ci` in {SOURCE_ROOT}")
            return str(tsc)
        exe = shutil.which(self.node)
        if exe is None:
            raise GenerateError(f"Node.js is not installed ({self.node!r} not found)",
                                hint="install Node 20+ or set ETL_NODE")
        return exe

    def run(self, first: "Target") -> None:
        from etl.generate import Collection
        from etl.paths import SOURCE_ROOT

        targets = []
        for path in sorted((self.generated / "jsonschema").glob("*.schema.json")):
            name = path.name[: -len(".schema.json")]
            c = Collection(name, {}, "")
            targets.append(first if name == first.collection else
                           Target(name, c.slug, c.type_name, self.generated, first.db, first.sample_size,
                                  node=first.node))
        tsc, node = self._tool("tsc"), self._tool("node")
        scratch = Path(tempfile.mkdtemp(prefix="etl-contract-ts-"))
        try:
            (scratch / "package.json").write_text('{"type": "module"}\n')
            (scratch / "node_modules").symlink_to(SOURCE_ROOT / "node_modules", target_is_directory=True)
            src = scratch / "src"
            for sub in ("zod", "typescript"):
                shutil.copytree(self.generated / sub, src / sub)
            self._run_zod(targets, tsc, node, scratch)
            self._run_typescript(targets, tsc, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_zod(self, targets: list["Target"], tsc: str, node: str, scratch: Path) -> None:
        from etl.generate import Collection

        proc = subprocess.run([tsc, *_TSC_FLAGS, "--outDir", str(scratch / "js"), "--rootDir", str(scratch / "src"),
                               *map(str, sorted((scratch / "src" / "zod").glob("*.ts")))],
                              capture_output=True, text=True, cwd=scratch, timeout=600)
        if proc.returncode != 0:
            first_error = (proc.stdout.strip().splitlines() or [proc.stderr.strip() or "no output"])[0]
            for t in targets:
                self.zod[t.collection] = [f"the generated Zod schemas do not compile: {first_error}"]
            return
        job = {"checks": [{"module": str(scratch / "js" / "zod" / f"{t.slug}.js"),
                           "export": Collection(t.collection, {}, "").schema_name,
                           "documents": _node_safe(t.sample())} for t in targets]}
        out = subprocess.run([node, str(Path(__file__).with_name("node") / "validate.mjs")],
                             input=json.dumps(job), capture_output=True, text=True, timeout=600)
        try:
            reply = json.loads(out.stdout)
        except ValueError:
            reply = {"error": (out.stderr.strip().splitlines() or [f"node exited with {out.returncode}"])[-1]}
        if "error" in reply:
            raise EtlError(f"the Zod check could not run: {reply['error']}")
        for t, results in zip(targets, reply["results"]):
            self.zod[t.collection] = [f"_id={_short(doc.get('_id'))}: {issue}"
                                      for doc, r in zip(t.sample(), results) if not r["ok"]
                                      for issue in r["issues"][:3]]

    def _run_typescript(self, targets: list["Target"], tsc: str, scratch: Path) -> None:
        fixtures = scratch / "src" / "fixtures"
        fixtures.mkdir()
        by_file = {}
        for t in targets:
            lines = [f"// {len(t.sample())} documents of {t.db.name}.{t.collection} in their JSON form, checked",
                     f"// by tsc --noEmit --strict against the generated type {t.type_name}.",
                     f"import type {{ {t.type_name} }} from \"../typescript/{t.slug}.js\";",
                     f"export const documents: {t.type_name}[] = ["]
            assert len(lines) == _FIXTURE_HEAD
            lines += [json.dumps(doc, ensure_ascii=False) + "," for doc in t.sample()]
            lines.append("];")
            path = fixtures / f"{t.slug}.ts"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            by_file[path.name] = t
            self.typescript[t.collection] = []
        proc = subprocess.run([tsc, "--noEmit", *_TSC_FLAGS, *map(str, sorted(fixtures.glob("*.ts")))],
                              capture_output=True, text=True, cwd=scratch, timeout=600)
        if proc.returncode == 0:
            return
        current: list[str] | None = None
        for line in proc.stdout.splitlines():
            m = _TSC_ERROR.match(line)
            if m is None:
                if current is not None and line.startswith("  ") and line.strip():
                    current[-1] += " / " + line.strip()  # tsc's elaboration of the error above
                continue
            t = by_file.get(Path(m["file"]).name)
            if t is None or Path(m["file"]).parent.name != "fixtures":
                for other in targets:
                    self.typescript[other.collection].append(f"(types): {m['code']}: {m['msg']}")
                current = None
                continue
            index = int(m["line"]) - _FIXTURE_HEAD - 1
            docs = t.sample()
            where = f"_id={_short(docs[index].get('_id'))}" if 0 <= index < len(docs) else f"line {m['line']}"
            current = self.typescript[t.collection]
            current.append(f"{where}: {m['code']}: {m['msg']}")


def zod_failures(target: "Target") -> list[str]:
    """One line per Zod issue when the collection's sampled documents are parsed by its
    generated Zod schema (compiled and run in Node), naming the document's _id."""
    return NodeChecks.of(target).zod.get(target.collection, [])


def typescript_failures(target: "Target") -> list[str]:
    """One line per tsc error when the collection's sampled documents, written as a TypeScript
    array of its generated type, are compiled with `tsc --noEmit --strict`."""
    return NodeChecks.of(target).typescript.get(target.collection, [])


# ---------------------------------------------------------------- the generated test module

_TEMPLATE = '''\
"""Contract tests for the `{name}` collection, from its canonical schema.

Run through `etl test-data` (or pytest) with MONGO_URI / MONGO_DB_NAME naming the target.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl import contract

COLLECTION = {name!r}
SCHEMA_HASH = {schema_hash!r}
# The canonical schema's x-indexes; None: it names none to compare with.
EXPECTED_INDEXES = {indexes}

GENERATED = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def target():
    return contract.Target.from_environment(COLLECTION, {slug!r}, {type_name!r}, GENERATED)


def test_collection_exists(target):
    assert target.exists(), f"collection {{COLLECTION}} does not exist in the target database"


def test_documents_match_canonical_schema(target):
    failures = contract.schema_failures(target.schema, target.sample())
    assert not failures, contract.report(failures, "schema violations")


def test_documents_match_model(target):
    failures = contract.model_failures(target.model, target.sample())
    assert not failures, contract.report(failures, "model validation errors")


def test_documents_match_zod(target):
    failures = contract.zod_failures(target)
    assert not failures, contract.report(failures, "Zod validation errors")


def test_documents_compile_as_typescript(target):
    failures = contract.typescript_failures(target)
    assert not failures, contract.report(failures, "TypeScript errors (tsc --noEmit --strict)")


def test_validator_is_canonical(target):
    problems = contract.validator_problems(target.schema, target.validator())
    assert not problems, contract.report(problems, "validator differences")


def test_indexes_are_planned(target):
    if EXPECTED_INDEXES is None:
        pytest.skip("the canonical schema lists no expected indexes (x-indexes)")
    problems = contract.index_problems(EXPECTED_INDEXES, target.indexes())
    assert not problems, contract.report(problems, "index differences")
'''


def render_test_module(name: str, slug: str, type_name: str, schema_hash: str,
                       indexes: list[dict[str, Any]] | None) -> str:
    """The pytest module for one collection (without its header)."""
    return _TEMPLATE.format(name=name, slug=slug, type_name=type_name, schema_hash=schema_hash,
                            indexes=_literal(indexes))


def _literal(value: Any) -> str:
    """A Python literal of JSON data, one index per line so a changed index shows in a diff."""
    if not value:
        return repr(value)
    return "[\n" + "".join(f"    {item!r},\n" for item in value) + "]"


# ---------------------------------------------------------------- running them


@dataclass
class ContractRun:
    """What pytest said. `raise_for_status` turns a failure into the stage's exception."""

    returncode: int
    output: str
    database: str
    tests_dir: Path

    @property
    def summary(self) -> str:
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        return lines[-1].strip("= ") if lines else f"pytest exit {self.returncode}"

    def raise_for_status(self) -> None:
        if self.returncode == 0:
            return
        if self.returncode == 1 and not re.search(r"\d+ failed", self.summary):
            # Only errors (a fixture that could not connect, a module that does not import):
            # nothing was checked, so this is not a verdict on the data.
            raise EtlError(f"contract tests could not run for database {self.database}: {self.summary}")
        if self.returncode == 1:
            raise ValidationFailed(f"contract tests failed for database {self.database}: {self.summary}")
        if self.returncode == 5:
            raise GenerateError(f"no contract tests were collected from {self.tests_dir}")
        raise EtlError(f"contract tests could not run (pytest exit {self.returncode}): {self.summary}")


def run_contract_tests(cfg: Config, *, generated: Path | None = None, select: str | None = None,
                       check_current: bool = True) -> ContractRun:
    """Run the generated contract tests against cfg's MongoDB in a pytest subprocess.

    Raises GenerateError when there are none or they are older than the canonical schemas;
    a failing test is reported in the result (see ContractRun.raise_for_status)."""
    generated = generated or paths.generated
    tests_dir = generated / "tests"
    if not any(tests_dir.glob("test_*.py")):
        raise GenerateError(f"no contract tests in {tests_dir}", hint="run `etl generate` first")
    if check_current:
        _check_current(generated)
    from etl.mongo import connect

    connect(cfg["MONGO_URI"]).close()  # an unreachable server is one line here, not N test errors
    env = dict(os.environ)
    env.update({"MONGO_URI": cfg.raw["MONGO_URI"], "MONGO_DB_NAME": cfg["MONGO_DB_NAME"],
                "ETL_CONTRACT_SAMPLE": str(cfg["ETL_CONTRACT_SAMPLE"]), "ETL_ROOT": str(paths.root)})
    cmd = [sys.executable, "-m", "pytest", str(tests_dir), "-q", "-rfEs", "--tb=short",
           "-p", "no:cacheprovider", "--rootdir", str(tests_dir), "-o", "addopts="]
    if select:
        cmd += ["-k", select]
    log.info("running contract tests in %s against database %s", tests_dir, cfg["MONGO_DB_NAME"])
    proc = subprocess.run(cmd, env=env, cwd=paths.root, capture_output=True, text=True)
    output = proc.stdout + (proc.stderr if proc.returncode not in (0, 1) else "")
    for secret in secrets_of(cfg):
        output = output.replace(secret, "***")
    run = ContractRun(returncode=proc.returncode, output=output, database=cfg["MONGO_DB_NAME"],
                      tests_dir=tests_dir)
    log.info("contract tests: %s", run.summary)
    return run


def _check_current(generated: Path) -> None:
    from etl.generate import load_canonical, read_marker

    schema_dir = paths.schemas / "collections"
    if not schema_dir.is_dir():
        return  # nothing to compare with: the tests stand on their own
    canonical = load_canonical(schema_dir)
    if read_marker(generated).get("inputs_hash") != canonical.inputs_hash:
        raise GenerateError("the contract tests are older than the canonical schemas",
                            hint="run `etl generate` (make generate)")


@click.command("test-data")
@click.option("--db", "db", help="Target database (default: MONGO_DB_NAME).")
@click.option("-k", "select", help="Only tests matching this pytest -k expression.")
@config_options
def test_data_cmd(db: str | None, select: str | None, cfg: Config) -> None:
    """Run the generated contract tests against the target MongoDB database.

    Each collection's documents are sampled and checked against its canonical JSON Schema and
    Pydantic model; its validator and indexes against the plan. Exit 4 when a check fails.

    Example: etl test-data --db bravo-1-test -k campaigns
    """
    cfg = cfg.with_overrides({"MONGO_DB_NAME": db}, origin="--db")
    run = run_contract_tests(cfg, select=select)
    click.echo(run.output.rstrip())
    run.raise_for_status()
    click.echo(f"Contract tests passed for database {cfg['MONGO_DB_NAME']}.")
