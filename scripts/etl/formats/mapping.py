"""`schemas/mapping.json`: the mapping the canonical stage writes and the transform reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.core.errors import TransformError
from etl.core.fsutil import read_json, write_json_if_changed
from etl.core.paths import paths


def mapping_path() -> Path:
    return paths.schemas / "mapping.json"


def write_mapping(mapping: dict[str, Any], path: Path | None = None) -> bool:
    """Write schemas/mapping.json only when it changed. Returns True when written."""
    return write_json_if_changed(path or mapping_path(), mapping)


def load_mapping(path: Path | None = None) -> dict[str, Any]:
    path = path or mapping_path()
    if not path.is_file():
        raise TransformError(f"{path} not found", hint="run `make canonical` first")
    try:
        mapping = read_json(path)
    except (OSError, ValueError) as exc:
        raise TransformError(f"{path} is not readable JSON: {exc}") from None
    if mapping.get("format_version") != 1 or not isinstance(mapping.get("collections"), dict):
        raise TransformError(f"{path}: unknown mapping format {mapping.get('format_version')!r}")
    return mapping
