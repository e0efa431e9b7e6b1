"""Content checksums of documents: the same function for a transformed file, a backup and a
collection, so the three can be compared.

A document's digest is the sha256 of its canonical BSON: the keys of every embedded document
sorted bytewise (a prefix first), arrays in their order, every other value as it is. Sorting
keys makes it independent of the field order a server may change (it moves `_id` first),
while BSON keeps types apart (an int32 5, an int64 5 and a double 5.0 hash differently). A
collection's checksum is the sha256 of its documents' sorted digests, so the order documents
come back in does not matter.

The canonical form is built from the raw bytes, by the C extension `etl._bsoncanon` when it
was compiled, else by the walk below, which follows the same rules byte for byte.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import bson
from bson import json_util
from bson.raw_bson import RawBSONDocument

from etl.model.bsoncodec import CODEC

try:
    from etl.model import _bsoncanon
except ImportError:  # no C compiler at install time: the walk below, slower, same bytes
    _bsoncanon = None

_I32 = struct.Struct("<i")
_FIXED = {0x01: 8, 0x09: 8, 0x11: 8, 0x12: 8, 0x07: 12, 0x08: 1, 0x10: 4, 0x13: 16,
          0x06: 0, 0x0A: 0, 0x7F: 0, 0xFF: 0}


def _value_size(kind: int, data: bytes, at: int) -> int:
    if kind in _FIXED:
        return _FIXED[kind]
    if kind in (0x02, 0x0D, 0x0E):
        return 4 + _I32.unpack_from(data, at)[0]
    if kind in (0x03, 0x04, 0x0F):
        return _I32.unpack_from(data, at)[0]
    if kind == 0x05:
        return 5 + _I32.unpack_from(data, at)[0]
    if kind == 0x0B:
        end = data.index(b"\x00", data.index(b"\x00", at) + 1)
        return end + 1 - at
    if kind == 0x0C:
        return 16 + _I32.unpack_from(data, at)[0]
    raise ValueError(f"corrupt BSON: unknown element type {kind:#x}")


def _elements(data: bytes, start: int) -> list[tuple[bytes, int, int, int, int]]:
    """(key, element start, value start, value size, type) of the document at `start`."""
    (length,) = _I32.unpack_from(data, start)
    end = start + length - 1
    out = []
    at = start + 4
    while at < end:
        kind = data[at]
        key_end = data.index(b"\x00", at + 1)
        value = key_end + 1
        size = _value_size(kind, data, value)
        out.append((data[at + 1:key_end], at, value, size, kind))
        at = value + size
    return out


def _emit(data: bytes, start: int, sort: bool, skip: frozenset[bytes] = frozenset()) -> bytes:
    items = _elements(data, start)
    if sort:
        items.sort(key=lambda item: item[0])
    parts = []
    for key, at, value, size, kind in items:
        if key in skip:
            continue
        if kind in (0x03, 0x04):
            parts.append(data[at:value] + _emit(data, value, kind == 0x03))
        else:
            parts.append(data[at:value + size])
    body = b"".join(parts)
    return _I32.pack(len(body) + 5) + body + b"\x00"


def canonical(raw: bytes, skip: Iterable[str] = ()) -> bytes:
    """The canonical BSON of a document's bytes; `skip` leaves out top-level fields."""
    skip = tuple(skip)
    if _bsoncanon is not None:
        return _bsoncanon.canonical(raw, skip)
    return _emit(bytes(raw), 0, True, frozenset(k.encode("utf-8") for k in skip))


def _raw(doc: Any) -> bytes:
    if isinstance(doc, RawBSONDocument):
        return doc.raw
    if isinstance(doc, (bytes, bytearray, memoryview)):
        return bytes(doc)
    return bson.encode(doc, codec_options=CODEC)


def doc_digest(doc: Any, skip: Iterable[str] = ()) -> bytes:
    """sha256 of a document's canonical BSON (a raw document, its bytes, or a mapping)."""
    return hashlib.sha256(canonical(_raw(doc), skip)).digest()


def id_key(value: Any) -> bytes:
    """A hashable, type-exact key for an `_id` value: the canonical {"_id": value}."""
    return canonical(bson.encode({"_id": value}, codec_options=CODEC))


def raw_id_key(doc: Any) -> bytes | None:
    """id_key of a document's `_id`, read from its bytes; None when it has none."""
    raw = _raw(doc)
    if _bsoncanon is not None:
        return _bsoncanon.id_key(raw)
    for key, at, value, size, kind in _elements(raw, 0):
        if key == b"_id":
            element = raw[at:value] + (_emit(raw, value, kind == 0x03) if kind in (0x03, 0x04) else
                                       raw[value:value + size])
            return _I32.pack(len(element) + 5) + element + b"\x00"
    return None


def show_id(key: bytes) -> str:
    return json_util.dumps(bson.decode(key, codec_options=CODEC)["_id"])


def combine(digests: Iterable[bytes]) -> str:
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


@dataclass
class Digest:
    count: int
    sha256: str


def content_digest(docs: Iterable[Mapping | RawBSONDocument]) -> Digest:
    """Count and order-independent checksum of documents (see the module docstring)."""
    digests = [doc_digest(d) for d in docs]
    return Digest(len(digests), combine(digests))
