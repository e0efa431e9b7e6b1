"""The backup store: `backups/<db>/<YYYY-MM-DD-NNN>/`, one folder per version in the mongodump
layout. Version names, their listing, the claiming of the next number, retention, and
reading a version back checked against its manifest.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from etl.core.errors import BackupError
from etl.core.fsutil import read_json
from etl.core.names import check_db_name
from etl.core.paths import paths
from etl.formats.dumpdir import (
    iter_docs,
    manifest_collections,
    read_manifest,
    read_metadata,
    verify,
)

log = logging.getLogger("etl.backup")

VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{3}")


def versions(db: str) -> list[str]:
    """Complete versions of `db`, oldest first."""
    base = paths.backups / check_db_name(db)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and VERSION_RE.fullmatch(p.name) and (p / "manifest.json").is_file())


def _reserve(db: str, now: dt.datetime) -> tuple[str, Path]:
    """The next version number of the day and its (hidden) work folder, claimed atomically so
    two backups at once never share a number."""
    base = paths.backups / db
    base.mkdir(parents=True, exist_ok=True)
    day = now.strftime("%Y-%m-%d")
    taken = {p.name.lstrip(".").removeprefix("partial-") for p in base.iterdir()}
    n = max([int(v[-3:]) for v in taken if VERSION_RE.fullmatch(v) and v.startswith(day)] + [0])
    while True:
        n += 1
        if n > 999:
            raise BackupError(f"{db}: 999 backups today already", hint="prune backups/ by hand")
        version = f"{day}-{n:03d}"
        work = base / f".partial-{version}"
        try:
            work.mkdir()
        except FileExistsError:
            continue
        if (base / version).exists():
            work.rmdir()
            continue
        return version, work


def prune(db: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions of `db`; returns the deleted ones."""
    found = versions(db)
    doomed = found[:-keep] if keep > 0 else []
    for version in doomed:
        shutil.rmtree(paths.backups / db / version, ignore_errors=True)
        log.info("retention (%d): removed backup %s of %s", keep, version, db)
    return doomed


@dataclass
class BackupVersion:
    database: str
    version: str
    folder: Path
    manifest: dict[str, Any]

    @property
    def collections(self) -> list[str]:
        return sorted(self.manifest.get("collections") or {})

    def metadata(self, name: str) -> dict[str, Any]:
        return read_metadata(self.folder / f"{name}.metadata.json")

    def documents(self, name: str) -> Iterator[dict[str, Any]]:
        path = self.folder / f"{name}.bson"
        return iter_docs(path) if path.is_file() else iter(())


def read_backup(db: str, version: str, *, check: bool = True) -> BackupVersion:
    """A backup version, with every file checked against its manifest's sha256 (`check`)."""
    db = check_db_name(db)
    if not VERSION_RE.fullmatch(version or ""):
        raise BackupError(f"malformed backup version {str(version)[:40]!r}: expected YYYY-MM-DD-NNN")
    folder = paths.backups / db / version
    if not (folder / "manifest.json").is_file():
        raise BackupError(f"no backup {version} of {db}", hint="`make list-versions` lists them")
    manifest = read_manifest(folder)
    if check:
        verify(folder, manifest)
    return BackupVersion(db, version, folder, manifest)


def check_version(version: str) -> str:
    """The version if it is exactly YYYY-MM-DD-NNN; a path or shell fragment never gets further."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise BackupError(f"malformed backup version {str(version)[:40]!r}: expected YYYY-MM-DD-NNN, "
                          "e.g. 2025-06-28-001")
    return version


def version_dir(db: str, version: str) -> Path:
    db, version = check_db_name(db), check_version(version)
    folder = paths.backups / db / version
    if not (folder / "manifest.json").is_file():
        raise BackupError(f"no backup {version} of {db}", hint="`make list-versions` lists them")
    return folder


def _size(folder: Path, manifest: dict) -> int:
    for key in ("size", "size_bytes", "bytes"):
        if isinstance(manifest.get(key), int):
            return manifest[key]
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _source_dump(manifest: dict) -> str | None:
    source = manifest.get("source_dump", manifest.get("source"))
    if isinstance(source, dict):
        return source.get("file") or source.get("name") or source.get("key") or source.get("sha256")
    return source


def describe_version(folder: Path) -> dict:
    manifest = read_json(folder / "manifest.json")
    entries = manifest_collections(manifest)
    counts = {name: e.count for name, e in sorted(entries.items())}
    return {
        "version": folder.name,
        "database": manifest.get("database") or folder.parent.name,
        "created_at": manifest.get("created_at"),
        "collections": sorted(entries),
        "counts": counts,
        "documents": sum(c or 0 for c in counts.values()),
        "source_dump": _source_dump(manifest),
        "schema_hash": manifest.get("schema_hash"),
        "size": _size(folder, manifest),
        "path": str(folder),
    }


def list_versions(db: str | None = None) -> list[dict]:
    """Every backup version (of `db`, or of all databases), oldest first."""
    root = paths.backups
    dbs = [check_db_name(db)] if db else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    out: list[dict] = []
    for name in dbs:
        base = root / name
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if VERSION_RE.fullmatch(folder.name) and (folder / "manifest.json").is_file():
                try:
                    out.append(describe_version(folder))
                except (OSError, ValueError) as exc:
                    log.warning("backup %s is unreadable: %s", folder, exc)
    return out


def _pin(folder: Path) -> Path:
    """Hard-link the version's files into a private folder: taking the pre-rollback backup may
    prune old versions (retention), and the one being restored must survive that."""
    pinned = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".restoring-{folder.name}-"))
    for path in folder.iterdir():
        if path.is_file():
            try:
                os.link(path, pinned / path.name)
            except OSError:  # another filesystem or no hard links: copy instead
                shutil.copy2(path, pinned / path.name)
    return pinned
