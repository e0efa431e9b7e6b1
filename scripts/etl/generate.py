"""Generated artifacts: everything downstream of the canonical collection schemas.

From `schemas/collections/<collection>.schema.json` (JSON Schema 2020-12, one per collection)
this stage writes, under `generated/`:

    jsonschema/<collection>.schema.json   the canonical schema, stamped
    jsonschema/bundle.json                every collection in one compound schema document
    openapi.yaml                          OpenAPI 3.1: a component per collection, list + get-by-id
    typescript/<slug>.ts                  json-schema-to-typescript
    zod/<slug>.ts                         json-schema-to-zod (Zod 4)
    models/<slug>.py                      Pydantic v2 models (datamodel-code-generator)
    tests/test_<slug>.py                  contract tests run by `etl test-data` (etl.contract)
    .canonical-hash                       what the artifacts were made from

Each file starts with a header naming the schema hash it was made from. A per-collection file
carries that collection's own schema hash, so changing one collection rewrites only its files
plus the bundles (bundle.json, openapi.yaml). Nothing is written until every generator has
succeeded; then each file is written only if its content changed, and files of collections
that no longer exist are removed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import click
import yaml

from etl.cli import config_options
from etl.config import Config
from etl.errors import GenerateError
from etl.fsutil import content_hash, read_json, write_if_changed
from etl.paths import SOURCE_ROOT, paths

log = logging.getLogger("etl.generate")

# Bump when the shape of any artifact changes, so `etl generate` rewrites them even though
# the canonical schemas did not change.
GENERATOR_VERSION = 4

NODE_DRIVER = Path(__file__).with_name("node") / "generate.mjs"
NODE_PACKAGES = ("json-schema-to-typescript", "json-schema-to-zod", "prettier", "typescript", "zod")
MARKER = ".canonical-hash"
SCHEMA_SUFFIX = ".schema.json"
# Sub-folders this stage owns entirely; anything in them it did not just make is stale.
OWNED_DIRS = ("jsonschema", "typescript", "zod", "models", "tests")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Collection:
    """One canonical collection schema and the names its artifacts use."""

    name: str  # the MongoDB collection: "campaigns", or "reporting.metrics" outside public
    schema: dict[str, Any]
    hash: str  # content_hash of the schema: what its own artifacts are stamped with

    @property
    def indexes(self) -> list[dict[str, Any]] | None:
        """The indexes the schema expects (`x-indexes`), as etl.mongo_schema reads them;
        None when the schema does not say."""
        if "x-indexes" not in self.schema:
            return None
        from etl.mongo_schema import expected_indexes

        try:
            return expected_indexes(self.schema)
        except (KeyError, TypeError, ValueError) as exc:
            raise GenerateError(f"{self.name}: malformed x-indexes ({exc})") from None

    @property
    def slug(self) -> str:
        """File stem for Python and TypeScript files (identifiers cannot hold dots)."""
        return re.sub(r"\W", "_", self.name)

    @property
    def type_name(self) -> str:
        """The type every generator uses: Campaigns, LineItems, ReportingMetrics."""
        words = re.split(r"[^0-9A-Za-z]+", self.name)
        name = "".join(w[:1].upper() + w[1:] for w in words if w)
        return name if name[:1].isalpha() else f"C{name}"

    @property
    def schema_name(self) -> str:
        """The exported Zod schema constant: campaignsSchema."""
        return self.type_name[:1].lower() + self.type_name[1:] + "Schema"


@dataclass(frozen=True)
class Canonical:
    """The canonical schemas as this stage reads them."""

    hash: str  # of the whole set: what the bundles are stamped with
    collections: tuple[Collection, ...]
    inputs_hash: str  # schemas + generator versions: decides whether to regenerate


@dataclass
class GenerateResult:
    canonical_hash: str
    regenerated: bool
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0


# ---------------------------------------------------------------- reading the canonical schemas


def _node_versions() -> dict[str, str]:
    # From the committed lock file, not node_modules: whether the artifacts are current must
    # not depend on Node being installed on the machine that asks (cron, CI).
    try:
        lock = json.loads((SOURCE_ROOT / "package-lock.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {name: "unlocked" for name in NODE_PACKAGES}
    packages = lock.get("packages") or {}
    return {name: str((packages.get(f"node_modules/{name}") or {}).get("version", "unlocked"))
            for name in NODE_PACKAGES}


def generator_versions() -> dict[str, Any]:
    from importlib.metadata import version

    return {"etl.generate": GENERATOR_VERSION,
            "datamodel-code-generator": version("datamodel-code-generator"),
            **_node_versions()}


def load_canonical(schema_dir: Path) -> Canonical:
    """Read every `<collection>.schema.json` in `schema_dir` (and the set's hash from
    index.json when the canonical stage wrote one)."""
    if not schema_dir.is_dir():
        raise GenerateError(f"no canonical schemas: {schema_dir} does not exist",
                            hint="run `etl canonical` first")
    collections = []
    for path in sorted(schema_dir.glob(f"*{SCHEMA_SUFFIX}")):
        name = path.name[: -len(SCHEMA_SUFFIX)]
        try:
            schema = read_json(path)
        except (OSError, ValueError) as exc:
            raise GenerateError(f"{path.name}: not readable JSON ({exc})") from None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise GenerateError(f"{path.name}: a collection schema must be a JSON object schema "
                                "with \"type\": \"object\"")
        collections.append(Collection(name=name, schema=schema, hash=content_hash(schema)))
    if not collections:
        raise GenerateError(f"no canonical schemas in {schema_dir}", hint="run `etl canonical` first")
    slugs: dict[str, str] = {}
    for c in collections:
        if c.slug in slugs:
            raise GenerateError(f"collections {slugs[c.slug]!r} and {c.name!r} would share the "
                                f"file name {c.slug!r}")
        slugs[c.slug] = c.name
    by_name = {c.name: c.schema for c in collections}
    set_hash = content_hash(by_name)
    index = schema_dir / "index.json"
    if index.is_file():
        try:
            set_hash = str(read_json(index).get("hash") or set_hash)
        except (OSError, ValueError, AttributeError):
            raise GenerateError(f"{index.name}: not readable JSON") from None
    inputs = content_hash({"schemas": by_name, "hash": set_hash, "generators": generator_versions()})
    return Canonical(hash=set_hash, collections=tuple(collections), inputs_hash=inputs)


# ---------------------------------------------------------------- schema helpers


def _pointer(schema: dict[str, Any], ref: str) -> Any:
    node: Any = schema
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise GenerateError(f"$ref {ref!r} points at nothing")
        node = node[part]
    return node


def inline_refs(schema: dict[str, Any], *, collection: str = "") -> dict[str, Any]:
    """The schema with every local `$ref` replaced by its target and `$defs` dropped.

    json-schema-to-zod does not follow references. A recursive reference cannot be inlined
    and is an error naming the collection."""

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#"):
                raise GenerateError(f"{collection}: only local $refs are supported, got {ref!r}")
            if ref in seen:
                raise GenerateError(f"{collection}: recursive $ref {ref!r} cannot be expressed in Zod")
            target = walk(_pointer(schema, ref), seen + (ref,))
            siblings = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
            return {**target, **siblings} if siblings else target
        return {k: walk(v, seen) for k, v in node.items() if k not in ("$defs", "definitions")}

    return walk(schema, ())


def _rewrite_refs(node: Any, rewrite) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item, rewrite) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rewrite_refs(v, rewrite) for k, v in node.items()}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = rewrite(out["$ref"])
    return out


# ---------------------------------------------------------------- headers


def _header_lines(subject: str, schema_hash: str) -> list[str]:
    return [f"Generated by `etl generate` from {subject} (canonical schema hash {schema_hash}).",
            "Do not edit: change the canonical schema and run `make generate`."]


def _collection_subject(c: Collection) -> str:
    return f"schemas/collections/{c.name}{SCHEMA_SUFFIX}"


def hash_comment(c: Collection) -> str:
    return " ".join(_header_lines(_collection_subject(c), c.hash))


# ---------------------------------------------------------------- renderers


def render_jsonschema(c: Collection) -> str:
    stamped = {"$comment": hash_comment(c), **{k: v for k, v in c.schema.items() if k != "$comment"}}
    return json.dumps(stamped, indent=2, ensure_ascii=False) + "\n"


def _bundle_id(c: Collection) -> str:
    # Each embedded schema keeps (or gets) an $id, so its own "#/$defs/..." references still
    # resolve inside the bundle (JSON Schema 2020-12 compound documents).
    return c.schema.get("$id") or f"urn:media-tool-etl:collection:{c.name}"


def render_bundle(canonical: Canonical) -> str:
    bundle = {
        "$schema": DRAFT_2020_12,
        "$id": "urn:media-tool-etl:collections",
        "$comment": " ".join(_header_lines("schemas/collections/", canonical.hash)),
        "title": "Every collection of the target database",
        "$defs": {c.name: {**c.schema, "$id": _bundle_id(c)} for c in canonical.collections},
    }
    for c in canonical.collections:
        bundle["$defs"][c.name].pop("$comment", None)
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def _component(c: Collection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collection's schema as an OpenAPI component, and its hoisted $defs."""
    prefix = f"#/components/schemas/{c.type_name}"
    defs = c.schema.get("$defs") or c.schema.get("definitions") or {}

    def rewrite(ref: str) -> str:
        if ref == "#":
            return prefix
        for key in ("#/$defs/", "#/definitions/"):
            if ref.startswith(key):
                name, _, rest = ref[len(key):].partition("/")
                return f"{prefix}_{name}" + (f"/{rest}" if rest else "")
        if ref.startswith("#/"):
            raise GenerateError(f"{c.name}: cannot place $ref {ref!r} in OpenAPI")
        return ref

    body = {k: v for k, v in c.schema.items()
            if k not in ("$schema", "$id", "$defs", "definitions", "$comment")}
    hoisted = {f"{c.type_name}_{name}": _rewrite_refs(d, rewrite) for name, d in defs.items()}
    return _rewrite_refs(body, rewrite), hoisted


def _id_parameter_schema(c: Collection) -> dict[str, Any]:
    id_schema = (c.schema.get("properties") or {}).get("_id")
    scalar = {"string", "integer", "number"}
    if isinstance(id_schema, dict) and "$ref" not in id_schema:
        types = id_schema.get("type")
        types = [types] if isinstance(types, str) else (types or [])
        if types and set(types) <= scalar:
            return {k: v for k, v in id_schema.items() if k in ("type", "format", "pattern", "enum")}
    return {"type": "string", "description": "the document's _id; a composite _id as JSON"}


def render_openapi(canonical: Canonical) -> str:
    schemas: dict[str, Any] = {}
    paths_obj: dict[str, Any] = {}
    for c in canonical.collections:
        component, hoisted = _component(c)
        schemas[c.type_name] = component
        schemas.update(hoisted)
        ref = {"$ref": f"#/components/schemas/{c.type_name}"}
        paths_obj[f"/{c.name}"] = {"get": {
            "operationId": f"list{c.type_name}",
            "summary": f"List documents of {c.name}",
            "tags": [c.name],
            "parameters": [{"$ref": "#/components/parameters/limit"},
                           {"$ref": "#/components/parameters/skip"}],
            "responses": {"200": {"description": f"A page of {c.name}",
                                  "content": {"application/json": {
                                      "schema": {"type": "array", "items": ref}}}}},
        }}
        paths_obj[f"/{c.name}/{{id}}"] = {"get": {
            "operationId": f"get{c.type_name}",
            "summary": f"One document of {c.name} by _id",
            "tags": [c.name],
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": _id_parameter_schema(c)}],
            "responses": {"200": {"description": f"The {c.name} document",
                                  "content": {"application/json": {"schema": ref}}},
                          "404": {"$ref": "#/components/responses/NotFound"}},
        }}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "media-tool collections", "version": canonical.hash[:12],
                 "description": "Read access to the collections the ETL maintains in MongoDB."},
        "jsonSchemaDialect": DRAFT_2020_12,
        "paths": paths_obj,
        "components": {
            "schemas": schemas,
            "parameters": {
                "limit": {"name": "limit", "in": "query", "required": False,
                          "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                "skip": {"name": "skip", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 0, "default": 0}},
            },
            "responses": {"NotFound": {"description": "No document has this _id"}},
        },
    }
    header = "".join(f"# {line}\n" for line in _header_lines("schemas/collections/", canonical.hash))
    return header + yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True,
                              width=100)


class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated object out again instead of as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_model(c: Collection) -> str:
    """Pydantic v2 models through datamodel-code-generator's Python API (no subprocess)."""
    from datamodel_code_generator import DataModelType, InputFileType, PythonVersion, generate
    from datamodel_code_generator.format import Formatter

    schema = {**c.schema, "title": c.type_name}
    header = "".join(f"# {line}\n" for line in _header_lines(_collection_subject(c), c.hash))
    try:
        code = generate(
            json.dumps(schema),
            input_file_type=InputFileType.JsonSchema,
            output_model_type=DataModelType.PydanticV2BaseModel,
            target_python_version=PythonVersion.PY_311,
            class_name=c.type_name,
            disable_timestamp=True,
            custom_file_header=header.rstrip("\n"),
            formatters=[Formatter.BUILTIN],
        )
    except Exception as exc:  # the generator's own errors are many and unexported
        raise GenerateError(f"{c.name}: datamodel-code-generator failed: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(code, str):
        raise GenerateError(f"{c.name}: datamodel-code-generator produced several modules")
    code = code if code.endswith("\n") else code + "\n"
    if accepts_nonfinite_decimals(c.schema):
        models = re.findall(r"^class (\w+)\(BaseModel\):", code, re.M)
        code += _NONFINITE_TAIL.format(models=", ".join(models))
    return code


# Pydantic's Decimal refuses NaN and ±Infinity unless the model allows them, and
# datamodel-code-generator has no option for it. Classes are listed in definition order, so
# nested models are rebuilt before the models that contain them.
_NONFINITE_TAIL = """

# NaN and ±Infinity are decimals the canonical schema accepts (PostgreSQL numeric has them).
for _model in ({models},):
    _model.model_config["allow_inf_nan"] = True
    _model.model_rebuild(force=True)
"""


def accepts_nonfinite_decimals(schema: Any) -> bool:
    """Whether some decimal string in the schema may be NaN or Infinity (by its pattern)."""
    if isinstance(schema, list):
        return any(accepts_nonfinite_decimals(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    if schema.get("format") == "decimal":
        pattern = schema.get("pattern")
        try:
            if pattern is None or any(re.search(pattern, v) for v in ("NaN", "Infinity", "-Infinity")):
                return True
        except re.error:
            return True  # a pattern Python cannot read: allow what it might allow
    return any(accepts_nonfinite_decimals(v) for v in schema.values() if isinstance(v, (dict, list)))


def render_contract_test(c: Collection) -> str:
    from etl.contract import render_test_module

    header = "".join(f"# {line}\n" for line in _header_lines(_collection_subject(c), c.hash))
    return header + render_test_module(c.name, c.slug, c.type_name, c.hash, c.indexes)


# Keywords that say what a value may be; a schema with none of them accepts any JSON value.
_VALUE_KEYWORDS = ("type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf", "not", "properties", "items",
                   "prefixItems", "additionalProperties", "patternProperties", "if", "required")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("additionalProperties", "items", "not", "if", "then", "else", "contains")


def typescript_schema(schema: Any) -> Any:
    """The schema json-schema-to-typescript gets: a subschema that accepts any JSON value (an
    archived value, a json/jsonb field) is typed `unknown`. The generator would make it an
    object with an index signature, which rejects the strings and numbers such fields hold."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: typescript_schema(sub) for name, sub in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [typescript_schema(sub) for sub in out[key]]
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = typescript_schema(out[key])
    if not any(key in out for key in _VALUE_KEYWORDS) and "tsType" not in out:
        out["tsType"] = "unknown"
    return out


def render_node(collections: Iterable[Collection], *, node: str) -> dict[str, dict[str, str]]:
    """TypeScript and Zod sources for every collection, from one Node process."""
    collections = list(collections)
    exe = shutil.which(node)
    if exe is None:
        raise GenerateError(f"Node.js is not installed ({node!r} not found)",
                            hint="install Node 20+ or set ETL_NODE; the previous artifacts are kept")
    job = {"collections": [{
        "name": c.name, "typeName": c.type_name, "schemaName": c.schema_name,
        "banner": "".join(f"// {line}\n" for line in _header_lines(_collection_subject(c), c.hash)).rstrip("\n"),
        "schema": typescript_schema({**c.schema, "title": c.type_name}),
        "flatSchema": inline_refs(c.schema, collection=c.name),
    } for c in collections]}
    try:
        proc = subprocess.run([exe, str(NODE_DRIVER)], input=json.dumps(job).encode(),
                              capture_output=True, timeout=600, cwd=SOURCE_ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GenerateError(f"Node.js could not run the generators: {exc}") from None
    try:
        reply = json.loads(proc.stdout or b"{}")
    except ValueError:
        reply = {}
    error = reply.get("error")
    if error and error.get("kind") == "missing_package":
        raise GenerateError(f"Node package {error.get('package')} is not installed",
                            hint=f"run `npm ci` in {SOURCE_ROOT}; the previous artifacts are kept")
    if error:
        raise GenerateError(f"{error.get('collection', '?')}: Node generator failed: {error.get('message')}")
    if proc.returncode != 0 or "results" not in reply:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise GenerateError(f"Node generators failed (exit {proc.returncode}): {last}")
    return reply["results"]


def render_all(canonical: Canonical, *, node: str = "node") -> dict[str, str]:
    """Every artifact's relative path and content. Pure apart from running the generators;
    raises GenerateError before anything is written."""
    out: dict[str, str] = {}
    node_out = render_node(canonical.collections, node=node)
    for c in canonical.collections:
        out[f"jsonschema/{c.name}{SCHEMA_SUFFIX}"] = render_jsonschema(c)
        out[f"typescript/{c.slug}.ts"] = node_out[c.name]["typescript"]
        out[f"zod/{c.slug}.ts"] = node_out[c.name]["zod"]
        out[f"models/{c.slug}.py"] = render_model(c)
        out[f"tests/test_{c.slug}.py"] = render_contract_test(c)
    out["jsonschema/bundle.json"] = render_bundle(canonical)
    out["openapi.yaml"] = render_openapi(canonical)
    out[MARKER] = json.dumps({"canonical_hash": canonical.hash, "inputs_hash": canonical.inputs_hash,
                              "collections": {c.name: c.hash for c in canonical.collections}},
                             indent=2, sort_keys=True) + "\n"
    return out


# ---------------------------------------------------------------- writing


def read_marker(out_dir: Path) -> dict[str, Any]:
    try:
        marker = read_json(out_dir / MARKER)
        return marker if isinstance(marker, dict) else {}
    except (OSError, ValueError):
        return {}


def expected_files(canonical: Canonical) -> list[str]:
    names = ["jsonschema/bundle.json", "openapi.yaml", MARKER]
    for c in canonical.collections:
        names += [f"jsonschema/{c.name}{SCHEMA_SUFFIX}", f"typescript/{c.slug}.ts", f"zod/{c.slug}.ts",
                  f"models/{c.slug}.py", f"tests/test_{c.slug}.py"]
    return names


def is_current(canonical: Canonical, out_dir: Path) -> bool:
    """The artifacts were made from exactly these inputs and none is missing."""
    return (read_marker(out_dir).get("inputs_hash") == canonical.inputs_hash
            and all((out_dir / name).is_file() for name in expected_files(canonical)))


def write_artifacts(files: dict[str, str], out_dir: Path) -> GenerateResult:
    """Write what changed, remove what no longer belongs; the marker goes last so an
    interrupted write is regenerated next time."""
    result = GenerateResult(canonical_hash="", regenerated=True)
    marker = files.get(MARKER)
    for rel, text in sorted(files.items()):
        if rel == MARKER:
            continue
        if write_if_changed(out_dir / rel, text):
            result.written.append(rel)
        else:
            result.unchanged += 1
    for sub in OWNED_DIRS:
        folder = out_dir / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            rel = f"{sub}/{path.name}"
            if path.is_file() and rel not in files:
                path.unlink()
                result.removed.append(rel)
    if marker is not None and write_if_changed(out_dir / MARKER, marker):
        result.written.append(MARKER)
    return result


def _freshen_marker(marker: Path, schema_dir: Path) -> None:
    # index.json also records the mapping's hash, and package-lock.json packages this stage
    # does not use, so either can change while the artifacts stay current. The marker is
    # Make's target for this stage: bring its mtime past the inputs, or Make would run this
    # no-op again on every build.
    inputs = [p for p in schema_dir.iterdir() if p.is_file()] + [SOURCE_ROOT / "package-lock.json"]
    newest = max((p.stat().st_mtime for p in inputs if p.is_file()), default=0.0)
    if marker.stat().st_mtime < newest:
        marker.touch()


def generate(schema_dir: Path | None = None, out_dir: Path | None = None, *, force: bool = False,
             node: str = "node") -> GenerateResult:
    """Regenerate the artifacts in `out_dir` from the canonical schemas in `schema_dir`
    unless they are already current (or `force`)."""
    schema_dir = schema_dir or paths.schemas / "collections"
    out_dir = out_dir or paths.generated
    canonical = load_canonical(schema_dir)
    if not force and is_current(canonical, out_dir):
        log.info("generated artifacts are current (canonical hash %s)", canonical.hash)
        _freshen_marker(out_dir / MARKER, schema_dir)
        return GenerateResult(canonical_hash=canonical.hash, regenerated=False,
                              unchanged=len(expected_files(canonical)))
    log.info("generating artifacts for %d collections (canonical hash %s)",
             len(canonical.collections), canonical.hash)
    files = render_all(canonical, node=node)
    result = write_artifacts(files, out_dir)
    result.canonical_hash = canonical.hash
    log.info("wrote %d, removed %d, unchanged %d", len(result.written), len(result.removed),
             result.unchanged)
    return result


@click.command("generate")
@click.option("--schemas", "schema_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Canonical schemas folder (default: schemas/collections).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: generated).")
@click.option("--force", is_flag=True, help="Regenerate even if the canonical hash is unchanged.")
@config_options
def generate_cmd(schema_dir: Path | None, out_dir: Path | None, force: bool, cfg: Config) -> None:
    """Generate JSON Schema, OpenAPI, TypeScript, Zod, Pydantic and contract tests.

    Runs only when the canonical schemas changed; writes only files whose content changed.
    Needs Node with the packages from package-lock.json (`npm ci`).

    Example: etl generate --force
    """
    result = generate(schema_dir, out_dir, force=force, node=cfg["ETL_NODE"])
    if not result.regenerated:
        click.echo(f"Generated artifacts are current (canonical hash {result.canonical_hash[:12]}).")
        return
    click.echo(f"Generated from canonical hash {result.canonical_hash[:12]}: "
               f"{len(result.written)} written, {len(result.removed)} removed, "
               f"{result.unchanged} unchanged.")
    for rel in result.written:
        click.echo(f"  wrote   {rel}")
    for rel in result.removed:
        click.echo(f"  removed {rel}")
