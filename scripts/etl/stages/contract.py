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
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from jsonschema import validators
from pydantic import ValidationError

from etl.adapters.mongodb import connect
from etl.core.config import Config, load_config, secrets_of
from etl.core.errors import EtlError, GenerateError, ValidationFailed
from etl.core.fsutil import read_json
from etl.core.paths import paths
from etl.formats.canonical import load_canonical
from etl.formats.generated import read_marker
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
    _sample: list[dict[str, Any]] | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, collection: str, slug: str, type_name: str, generated: Path) -> "Target":
        """Connect with the pipeline's settings (MONGO_URI, MONGO_DB_NAME, ETL_CONTRACT_SAMPLE)."""

        cfg = load_config()
        client = connect(cfg["MONGO_URI"])
        return cls(collection=collection, slug=slug, type_name=type_name, generated=generated,
                   db=client[cfg["MONGO_DB_NAME"]], sample_size=cfg["ETL_CONTRACT_SAMPLE"])

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
