"""`schemas/collections/`: the canonical schema of each collection and `index.json` (their hashes
and the mapping's), written only where the content changed, read back for generate,
mongo-schema and the transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.core.errors import GenerateError, SnapshotError
from etl.core.fsutil import read_json, write_json_if_changed
from etl.core.hashing import content_hash
from etl.core.paths import paths
from etl.formats.generated import generator_versions
from etl.formats.mapping import write_mapping
from etl.model.artifacts import Collection
from etl.model.canonical import canonical_hash, canonical_schemas

FORMAT_VERSION = 1


def collections_dir() -> Path:
    return paths.schemas / "collections"


def write_canonical(mapping: dict[str, Any], out_dir: Path | None = None,
                    mapping_file: Path | None = None) -> dict[str, Any]:
    """Write every collection's schema, index.json and mapping.json, each only when its
    content changed; remove schemas of collections that are gone. Returns a summary."""
    out_dir = out_dir or collections_dir()
    schemas = canonical_schemas(mapping)
    written, removed = [], []
    for name, schema in schemas.items():
        if write_json_if_changed(out_dir / f"{name}.schema.json", schema):
            written.append(name)
    if out_dir.is_dir():
        for stale in sorted(out_dir.glob("*.schema.json")):
            if stale.name[: -len(".schema.json")] not in schemas:
                stale.unlink()
                removed.append(stale.name[: -len(".schema.json")])
    index = {
        "format_version": FORMAT_VERSION,
        "hash": canonical_hash(schemas),
        "mapping_hash": mapping["hash"],
        "collections": {name: {"file": f"{name}.schema.json", "hash": content_hash(schema)}
                        for name, schema in schemas.items()},
    }
    index_written = write_json_if_changed(out_dir / "index.json", index)
    mapping_written = write_mapping(mapping, mapping_file)
    return {"hash": index["hash"], "written": written, "removed": removed,
            "index_written": index_written, "mapping_written": mapping_written,
            "collections": len(schemas)}


def read_canonical(out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The canonical schemas on disk, by collection (what mongo-schema and validate read)."""
    out_dir = out_dir or collections_dir()
    index_path = out_dir / "index.json"
    if not index_path.is_file():
        raise SnapshotError(f"no canonical schemas in {out_dir}", hint="run `etl canonical` first")
    index = read_json(index_path)
    return {name: read_json(out_dir / entry["file"]) for name, entry in sorted(index["collections"].items())}


SCHEMA_SUFFIX = ".schema.json"


@dataclass(frozen=True)
class Canonical:
    """The canonical schemas as this stage reads them."""

    hash: str  # of the whole set: what the bundles are stamped with
    collections: tuple[Collection, ...]
    inputs_hash: str  # schemas + generator versions: decides whether to regenerate


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


