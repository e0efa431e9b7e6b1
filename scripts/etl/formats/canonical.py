"""etl.formats.canonical"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.core.errors import SnapshotError
from etl.core.fsutil import read_json, write_json_if_changed
from etl.core.hashing import content_hash
from etl.core.paths import paths
from etl.formats.mapping import write_mapping
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
