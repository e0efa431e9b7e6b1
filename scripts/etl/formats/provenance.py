"""Where data came from, as recorded in manifests: the dump in use and the accepted schema."""

from __future__ import annotations

from typing import Any

from etl.core.fsutil import read_json
from etl.core.paths import paths


def source_dump() -> dict[str, Any] | None:
    """{"file", "sha256"} of the current dump (or, failing that, of what was restored)."""
    for path in (paths.current_dump, paths.restored):
        if path.is_file():
            try:
                info = read_json(path)
            except (OSError, ValueError):
                continue
            return {"file": info.get("file") or info.get("dump"),
                    "sha256": info.get("sha256") or info.get("dump_sha256")}
    return None


def accepted_schema_hash() -> str | None:
    path = paths.schemas / "accepted.json"
    try:
        return read_json(path).get("hash") if path.is_file() else None
    except (OSError, ValueError):
        return None
