"""`schemas/mapping.json`: the mapping the canonical stage writes and the transform reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.core.fsutil import write_json_if_changed
from etl.core.paths import paths


def mapping_path() -> Path:
    return paths.schemas / "mapping.json"


def write_mapping(mapping: dict[str, Any], path: Path | None = None) -> bool:
    """Write schemas/mapping.json only when it changed. Returns True when written."""
    return write_json_if_changed(path or mapping_path(), mapping)
