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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from jsonschema import validators
from pydantic import ValidationError

from etl.adapters.mongodb import connect
from etl.core.config import Config, load_config, secrets_of
from etl.core.errors import EtlError, GenerateError, ValidationFailed
from etl.core.fsutil import read_json
from etl.core.paths import SOURCE_ROOT, paths
from etl.formats.canonical import load_canonical
from etl.formats.generated import read_marker
from etl.model.artifacts import Collection
from etl.model.jsonview import JsonView
from etl.model.validators import plain, validator_for

log = logging.getLogger("etl.contract")

MAX_REPORTED = 20  # failures listed per check; the count says how many more there were


# ---------------------------------------------------------------- documents as JSON


# ---------------------------------------------------------------- checks


def schema_failures(schema: dict[str, Any], docs: Iterable[dict[str, Any]]) -> list[str]:
    """One line per violation of the canonical JSON Schema, naming the document's _id."""

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

        cfg = load_config()
        client = connect(cfg["MONGO_URI"])
        return cls(collection=collection, slug=slug, type_name=type_name, generated=generated,
                   db=client[cfg["MONGO_DB_NAME"]], sample_size=cfg["ETL_CONTRACT_SAMPLE"], node=cfg["ETL_NODE"])

    @property
    def schema(self) -> dict[str, Any]:
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
    pinned tsc and run with Node (scripts/etl/stages/node/validate.mjs); each collection's documents
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
    schema_dir = paths.schemas / "collections"
    if not schema_dir.is_dir():
        return  # nothing to compare with: the tests stand on their own
    canonical = load_canonical(schema_dir)
    if read_marker(generated).get("inputs_hash") != canonical.inputs_hash:
        raise GenerateError("the contract tests are older than the canonical schemas",
                            hint="run `etl generate` (make generate)")
