"""The mongodump directory layout, written and read without mongodump.

A folder holds, per collection, `<name>.bson` (BSON documents back to back, exactly what
mongodump writes and mongorestore reads) and `<name>.metadata.json` (canonical extended JSON:
`options` with the validator, `indexes`, `collectionName`, `type`), plus our `manifest.json`
(counts and sha256 of every file; see docs/transform-and-load.md). Transform output and
backups share this module, so validate, push and rollback read both the same way.

Files are written to a temporary name and renamed on success, so a reader never sees half a
`.bson`; the manifest is written last and only its files count.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import bson
from bson import json_util
from bson.raw_bson import RawBSONDocument

from etl.core.errors import BackupError
from etl.core.fsutil import read_json, sha256_file, write_atomic, write_if_changed
from etl.model.bsoncodec import CODEC, RAW_CODEC
from etl.model.indexes import ID_INDEX, IndexSpec

_INT32 = struct.Struct("<i")
MAX_DOC_BYTES = 16 * 1024 * 1024  # MongoDB's document size limit


class BsonWriter:
    """Appends BSON documents to `<path>`, hashing as it goes; `commit()` renames the temp file
    into place and returns (count, sha256, bytes)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb", buffering=1 << 20)
        self._digest = hashlib.sha256()
        self.count = 0
        self.size = 0

    def write_raw(self, data: bytes, count: int) -> None:
        """`data` is `count` complete BSON documents."""
        self._fh.write(data)
        self._digest.update(data)
        self.count += count
        self.size += len(data)

    def write(self, doc: Mapping[str, Any]) -> None:
        raw = doc.raw if isinstance(doc, RawBSONDocument) else bson.encode(doc, codec_options=CODEC)
        self.write_raw(raw, 1)

    def commit(self) -> tuple[int, str, int]:
        self._fh.close()
        os.replace(self._tmp, self.path)
        return self.count, self._digest.hexdigest(), self.size

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "BsonWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def iter_raw(path: Path, chunk: int = 4 << 20) -> Iterator[bytes]:
    """Each document of a `.bson` file as its raw bytes, read in large blocks (no decoding)."""
    with open(path, "rb") as fh:
        buf = b""
        pos = 0
        while True:
            block = fh.read(chunk)
            if block:
                buf = buf[pos:] + block
                pos = 0
            elif pos >= len(buf):
                return
            while len(buf) - pos >= 4:
                (size,) = _INT32.unpack_from(buf, pos)
                if size < 5 or size > MAX_DOC_BYTES:
                    raise BackupError(f"{path.name}: corrupt BSON at byte {pos} (document size {size})")
                if len(buf) - pos < size:
                    break
                yield buf[pos:pos + size]
                pos += size
            if not block:
                if pos < len(buf):
                    raise BackupError(f"{path.name}: truncated BSON ({len(buf) - pos} trailing bytes)")
                return


def iter_batches(path: Path, batch_size: int) -> Iterator[list[RawBSONDocument]]:
    """Documents in lists of `batch_size`, as RawBSONDocument: pymongo sends them as they are,
    so a load never decodes and re-encodes what the transform already encoded."""
    batch: list[RawBSONDocument] = []
    for raw in iter_raw(path):
        batch.append(RawBSONDocument(raw, RAW_CODEC))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_docs(path: Path) -> Iterator[dict[str, Any]]:
    """Decoded documents, in file order."""
    for raw in iter_raw(path):
        yield bson.decode(raw, codec_options=CODEC)


# ---------------------------------------------------------------------------------------------
# <collection>.metadata.json




def _index_entry(index: IndexSpec | Mapping[str, Any]) -> dict[str, Any]:
    """A mongodump index entry from an IndexSpec, a server's `listIndexes` entry (kept as the
    server gave it, `ns` aside) or a planned index ({"name", "keys", …})."""
    if isinstance(index, IndexSpec):
        return index.entry()
    if "key" in index:
        return {**{k: v for k, v in index.items() if k != "ns"}, "key": dict(index["key"])}
    return IndexSpec.from_planned(index).entry()


def metadata(name: str, indexes: Iterable[IndexSpec | Mapping[str, Any]], options: Mapping[str, Any] | None = None,
             uuid: str | None = None) -> dict[str, Any]:
    entries = [_index_entry(ix) for ix in indexes]
    if not any(e.get("name") == "_id_" for e in entries):
        entries.insert(0, dict(ID_INDEX))
    out: dict[str, Any] = {"options": dict(options or {}), "indexes": entries,
                           "collectionName": name, "type": "collection"}
    if uuid:
        out["uuid"] = uuid
    return out


def metadata_text(meta: Mapping[str, Any]) -> str:
    """Canonical extended JSON, as mongodump writes it (keeps int vs long, Decimal128, regex…)."""
    return json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS, sort_keys=False)


def read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"options": {}, "indexes": [dict(ID_INDEX)]}
    return json_util.loads(path.read_text(encoding="utf-8"))


def write_metadata(folder: Path, name: str, meta: Mapping[str, Any]) -> str:
    """Write `<name>.metadata.json` (only when it changed); returns its sha256."""
    path = folder / f"{name}.metadata.json"
    write_if_changed(path, metadata_text(meta))
    return sha256_file(path)


# ---------------------------------------------------------------------------------------------
# manifest.json


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    write_atomic(folder / "manifest.json",
                 json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    """A folder's manifest.json; one from a newer format than this code reads is refused."""
    path = folder / "manifest.json"
    if not path.is_file():
        raise BackupError(f"{path} not found")
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BackupError(f"{path} is not a manifest (not a JSON object)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_FORMAT:
        raise BackupError(f"{path} has format_version {version!r}; this pipeline reads up to {MANIFEST_FORMAT}",
                          hint="update the pipeline, or transform again")
    return manifest


def verify(folder: Path, manifest: Mapping[str, Any] | None = None) -> None:
    """Every collection file of the manifest is present and matches its sha256."""
    manifest = manifest if manifest is not None else read_manifest(folder)
    for name, entry in sorted((manifest.get("collections") or {}).items()):
        for filename, key in ((f"{name}.bson", "sha256"), (f"{name}.metadata.json", "metadata_sha256")):
            want = entry.get(key)
            path = folder / filename
            if not want:
                continue
            if not path.is_file():
                raise BackupError(f"{folder.name}/{filename} is missing")
            if sha256_file(path) != want:
                raise BackupError(f"{folder.name}/{filename} does not match the sha256 in its manifest")


# The manifest's format: 2 adds what load and validate need from the transform's package
# (archived fields, references, the canonical schema), so neither reads schemas/.
MANIFEST_FORMAT = 2


@dataclass(frozen=True)
class ManifestEntry:
    """One collection of a manifest (a transform's export or a backup)."""

    name: str
    count: int
    sha256: str  # of <name>.bson
    metadata_sha256: str | None = None
    bytes: int | None = None
    rows: int | None = None  # transform: rows read; documents = rows - skipped
    skipped: int = 0
    table: str | None = None  # transform: the source table, `schema.name`
    id_kind: str | None = None  # transform: single | composite | none
    # transform, format 2: (field, archived name) pairs; references [{field, target,
    # constraint}]; the canonical JSON Schema of its documents
    archived: tuple[tuple[str, str], ...] = ()
    references: tuple[dict[str, Any], ...] = ()
    schema: dict[str, Any] | None = None


def manifest_collections(manifest: Mapping) -> dict[str, ManifestEntry]:
    """The per-collection part of a manifest, every entry checked: a collection without its
    count or checksum is a damaged manifest, not a collection of unknown size."""
    raw = manifest.get("collections")
    if not isinstance(raw, Mapping):
        raise BackupError("manifest.json has no collections mapping")
    out: dict[str, ManifestEntry] = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("count"), int) or not entry.get("sha256"):
            raise BackupError(f"manifest.json: collection {name!r} lacks its count or sha256")
        out[str(name)] = ManifestEntry(
            name=str(name), count=entry["count"], sha256=str(entry["sha256"]),
            metadata_sha256=entry.get("metadata_sha256"), bytes=entry.get("bytes"),
            rows=entry.get("rows"), skipped=int(entry.get("skipped") or 0), table=entry.get("table"),
            id_kind=entry.get("id"),
            archived=tuple((str(a), str(b)) for a, b in entry.get("archived") or ()),
            references=tuple(entry.get("references") or ()), schema=entry.get("schema"))
    return out
