"""Content checksums: the C canonical form, the pure-Python walk and the definition (keys sorted
at every level, arrays in order, types kept) agree byte for byte."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Mapping

import bson
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Regex
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.model import checksums
from etl.model.bsoncodec import CODEC


def definition(value: Any) -> Any:
    """The canonical form as the checksums define it, built the slow, obvious way."""
    if isinstance(value, Mapping):
        return SON((k, definition(value[k])) for k in sorted(value))
    if isinstance(value, list):
        return [definition(v) for v in value]
    return value


def python_walk(raw: bytes, skip=()) -> bytes:
    return checksums._emit(raw, 0, True, frozenset(k.encode() for k in skip))


keys = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=6)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1).map(Int64),
    st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8).map(Binary),
    st.uuids().map(lambda u: Binary.from_uuid(u)),
    st.decimals(-10**12, 10**12, allow_nan=False, allow_infinity=False, places=3).map(lambda d: Decimal128(str(d))),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=dt.timezone.utc)),
    st.builds(ObjectId), st.just(Regex("^a.*", "i")),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=20)
documents = st.dictionaries(keys, values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_c_walk_and_definition_agree(doc):
    raw = bson.encode(doc, codec_options=CODEC)
    expected = bson.encode(definition(bson.decode(raw, codec_options=CODEC)), codec_options=CODEC)
    assert python_walk(raw) == expected
    if checksums._bsoncanon is not None:
        assert checksums._bsoncanon.canonical(raw, ()) == expected


def test_the_c_extension_is_built():
    # Built at install (setup.py); without a compiler the walk is used, and this says so.
    assert checksums._bsoncanon is not None, "etl._bsoncanon was not compiled: checksums take the slow walk"


def test_field_order_does_not_matter_types_do():
    a = {"_id": 1, "n": Int64(5), "sub": {"b": [1, {"y": 2, "x": 1}], "a": "s"}}
    b = {"sub": {"a": "s", "b": [1, {"x": 1, "y": 2}]}, "n": Int64(5), "_id": 1}
    assert checksums.doc_digest(a) == checksums.doc_digest(b)
    assert checksums.doc_digest(a) != checksums.doc_digest(dict(a, n=5))  # int32 vs int64
    assert checksums.doc_digest(a) != checksums.doc_digest(dict(a, sub={"a": "s", "b": [{"x": 1, "y": 2}, 1]}))


def test_raw_and_decoded_documents_digest_alike():
    doc = {"_id": {"k": Int64(2), "d": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)},
           "u": uuid.UUID("12345678-1234-5678-1234-567812345678"), "m": Decimal128("1.50")}
    raw = RawBSONDocument(bson.encode(doc, codec_options=CODEC))
    assert checksums.doc_digest(raw) == checksums.doc_digest(doc) == checksums.doc_digest(raw.raw)
    assert checksums.raw_id_key(raw) == checksums.id_key(doc["_id"])
    assert checksums.raw_id_key(RawBSONDocument(bson.encode({"x": 1}))) is None


def test_skip_leaves_out_top_level_fields_only():
    doc = {"_id": 1, "a": 1, "keep": {"a": 2}}
    assert checksums.doc_digest(doc, ["a"]) == checksums.doc_digest({"_id": 1, "keep": {"a": 2}})
    raw = bson.encode(doc)
    assert python_walk(raw, ["a"]) == checksums.canonical(raw, ["a"])


@pytest.mark.parametrize("raw", [b"\x05\x00\x00\x00", b"\x0c\x00\x00\x00\x10a\x00\x01\x00\x00\x00\x00\x00",
                                 b"\x08\x00\x00\x00\x99a\x00\x00"])
def test_corrupt_bytes_are_an_error_not_a_digest(raw):
    with pytest.raises(ValueError):
        checksums.canonical(raw)
