"""Schema snapshots (`schemas/snapshots/*.json`, `schemas/accepted.json`): canonical JSON of a
database's objects with a content hash, so "did the schema change?" is a hash comparison.
A file that is missing, corrupt, edited by hand or from a newer format is refused with one
line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from etl.core.errors import SnapshotError
from etl.core.fsutil import write_atomic, write_json_if_changed
from etl.core.hashing import content_hash
from etl.core.paths import paths

log = logging.getLogger("etl.snapshot")

FORMAT_VERSION = 1


HASHED_KEYS = ("tables", "enums", "domains", "views")


def snapshot_hash(snap: dict[str, Any]) -> str:
    """The content hash of a snapshot's database objects (what `hash` must equal)."""
    return content_hash({key: snap.get(key, {}) for key in HASHED_KEYS})


def load_snapshot(path: Path) -> dict[str, Any]:
    """Read a snapshot file; SnapshotError when it is missing, corrupt, edited by hand (hash
    mismatch) or written by a newer version of the tool."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SnapshotError(f"snapshot {path} does not exist", hint="run `etl snapshot` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot {path} cannot be read: {exc}") from None
    try:
        snap = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot {path} is corrupt: {exc.msg} at line {exc.lineno}",
                            hint="delete it and run `etl snapshot` again") from None
    if not isinstance(snap, dict) or not isinstance(snap.get("tables"), dict):
        raise SnapshotError(f"snapshot {path} is corrupt: not a schema snapshot object")
    version = snap.get("format_version")
    if not isinstance(version, int):
        raise SnapshotError(f"snapshot {path} is corrupt: format_version missing")
    if version > FORMAT_VERSION:
        raise SnapshotError(f"snapshot {path} has format_version {version}; this tool reads up to "
                            f"{FORMAT_VERSION}", hint="upgrade the pipeline")
    if snap.get("hash") != snapshot_hash(snap):
        raise SnapshotError(f"snapshot {path} is corrupt: its content does not match its hash",
                            hint="snapshots are never edited by hand; take a new one")
    for key in ("enums", "domains", "views"):
        snap.setdefault(key, {})
    return snap


def save_snapshot(snap: dict[str, Any], directory: Path | None = None) -> tuple[Path, bool]:
    """Write `current.json` and a history copy when the hash differs from the current one.
    Returns (current path, written?). An unchanged schema leaves every file untouched."""
    directory = directory or paths.snapshots
    current = directory / "current.json"
    if current.is_file():
        try:
            if json.loads(current.read_text(encoding="utf-8")).get("hash") == snap["hash"]:
                return current, False
        except (OSError, ValueError):
            log.warning("replacing unreadable %s", current)
    stamp = snap["taken_at"].replace("-", "").replace(":", "")
    history = directory / "history" / f"{stamp}-{snap['hash'][:12]}.json"
    write_json_if_changed(history, snap)
    text = json.dumps(snap, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(current, text)
    return current, True
