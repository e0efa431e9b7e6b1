"""Running one plan: the COPY stream out of psql, the rows finished in Python, the BSON written."""

from __future__ import annotations

import json
import struct
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from decimal import InvalidOperation
from pathlib import Path
from typing import Any, Callable

import bson
import bsonjs
from bson import json_util

from etl.adapters.services import pg_tool
from etl.core.config import client_connection, mask_uri
from etl.core.errors import DatabaseError, TransformError
from etl.core.progress import Progress
from etl.formats.dumpdir import BsonWriter
from etl.model.bsoncodec import CODEC
from etl.model.rules import evaluate
from etl.stages.transform.policies import (
    Converter,
    _calc_value,
    _json_int,
    _python_value,
)
from etl.stages.transform.sql import Plan

# ---------------------------------------------------------------------------------------------
# Running one plan


_I32 = struct.Struct("<i")


def _splice(doc: bytes, extra: dict[str, Any]) -> bytes:
    """`doc` (BSON) with the fields of `extra` appended, without decoding `doc`."""
    if not extra:
        return doc
    tail = bson.encode(extra, codec_options=CODEC)
    body = doc[4:-1] + tail[4:-1]
    return _I32.pack(len(body) + 5) + body + b"\x00"


class RowFinisher:
    """Applies the second column (Python-carried values) to a document."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.counters: Counter = Counter()
        self.cast_failures: Counter = Counter()
        self.conv = Converter(self.counters, self.cast_failures)

    def finish(self, doc: bytes, py_text: str) -> bytes:
        values = json.loads(py_text)
        extra: dict[str, Any] = {}
        inputs: dict[str, Any] = {}
        conv = self.conv
        for item, text in zip(self.plan.items, values):
            f = item.field
            if item.kind == "input":
                inputs[f["column"]] = _python_value(f, conv, text)
                continue
            if item.kind == "special" and text is None:
                continue
            extra[f["name"]] = self._field(f, text, extra, inputs, doc)
        for calc in self.plan.calculated:
            extra[calc["name"]] = self._calculated(calc, inputs, doc)
        return _splice(doc, extra)

    def _field(self, f: dict[str, Any], text: str | None, extra: dict[str, Any],
               inputs: dict[str, Any], doc: bytes) -> Any:
        if text is None:
            default = f.get("default")
            if default is None:
                return None
            self.counters["default_applied"] += 1
            if isinstance(default, dict) and "expression" in default:
                try:
                    return _calc_value({"bson": f["bson"]}, evaluate(default["expression"], inputs), self.conv)
                except ArithmeticError:
                    return None
            return self.conv.array(f, default) if f["bson"] != "array" else default
        cast = f.get("cast")
        try:
            return self.conv.scalar(f, text)
        except (ValueError, InvalidOperation, ArithmeticError, TypeError) as exc:
            if not cast:
                raise TransformError(f"{self.plan.table}.{f['column']}: cannot read {text[:40]!r} as "
                                     f"{f['bson']}: {exc}") from None
            self.cast_failures[f["name"]] += 1
            policy = cast.get("on_failure", "fail")
            if policy == "fail":
                raise TransformError(
                    f"{self.plan.table}.{f['column']}: value {text[:40]!r} does not cast to {f['bson']} "
                    f"(decision on_failure: fail)", hint=f"document {_doc_id(doc)}") from None
            if policy == "keep_old" and f.get("archive_as"):
                extra[f["archive_as"]] = text
            return None

    def _calculated(self, calc: dict[str, Any], inputs: dict[str, Any], doc: bytes) -> Any:
        try:
            value = evaluate(calc["expression"], inputs)
        except ArithmeticError as exc:
            self.counters[f"calculated_{calc['name']}_errors"] += 1
            if calc.get("on_error", "null") == "fail":
                raise TransformError(f"{self.plan.collection}.{calc['name']}: {exc} "
                                     f"(document {_doc_id(doc)})") from None
            return None
        return _calc_value(calc, value, self.conv)


def _doc_id(doc: bytes) -> str:
    try:
        return json_util.dumps(bson.decode(doc, codec_options=CODEC).get("_id"))
    except Exception:  # noqa: BLE001 - only for a message
        return "?"


def _loads_fallback(line: bytes, counters: Counter) -> bytes:
    """A line libbson refused (e.g. a JSON integer wider than 64 bits inside jsonb): decode it
    in Python with the same extended-JSON rules and the wide-integer policy."""
    counters["rows_via_python_json"] += 1
    doc = json_util.loads(line.decode("utf-8"), parse_int=_json_int)
    return bson.encode(doc, codec_options=CODEC)


@dataclass
class PartResult:
    count: int
    counters: dict[str, int]
    cast_failures: dict[str, int]
    seconds: float
    reader: str = "sql-json"  # or "binary-copy" (etl.fastpath)
    via_general: int = 0  # rows of a binary-copy part that the general path transformed


def _psql(conninfo: str) -> tuple[list[str], dict[str, str]]:
    """psql connected with `conninfo`, without a command yet: argv and environment. The
    password travels in PGPASSWORD, never on the command line; session settings in PGOPTIONS."""
    dsn, env, _ = client_connection(conninfo)
    env["PGOPTIONS"] = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=1"
    return [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn], env


def _psql_command(conninfo: str, sql: str, binary: bool = False) -> tuple[list[str], dict[str, str]]:
    """psql running `COPY (sql) TO STDOUT` (binary format with `binary`): argv and environment."""
    argv, env = _psql(conninfo)
    return argv + ["-c", f"COPY ({sql}) TO STDOUT" + (" (FORMAT binary)" if binary else "")], env


class CopyStream:
    """psql running one `COPY (sql) TO STDOUT` into a pipe (`stdout`). Leaving the `with`
    block stops psql if it still runs and closes the pipes; `finish` checks how it ended."""

    def __init__(self, conninfo: str, sql: str, table: str, binary: bool = False):
        argv, env = _psql_command(conninfo, sql, binary)
        self.table = table
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        self.stdout = self.proc.stdout

    def __enter__(self) -> "CopyStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def finish(self, complete: bool) -> None:
        """One error naming the table unless psql succeeded and the stream was `complete`."""
        err = self.proc.stderr.read().decode("utf-8", "replace").strip()
        if self.proc.wait() != 0 or not complete:
            last = err.splitlines()[-1] if err else f"psql exited with {self.proc.returncode}"
            raise DatabaseError(f"reading {self.table} failed: {mask_uri(last)}")


def run_general(conninfo: str, plan: Plan, out: Path, where: str | None = None,
                progress: Progress | None = None) -> PartResult:
    """Stream `plan`'s SELECT (optionally restricted by `where`) into the .bson file `out`
    through the general path: PostgreSQL writes extended JSON, libbson encodes it, Python
    finishes the fields that need a policy.

    psql does the COPY and writes it to a pipe: libpq's row-by-row reading stays in C, and
    Python reads the pipe a megabyte at a time while the server and psql keep producing."""
    start = time.perf_counter()
    finisher = RowFinisher(plan)
    counters = finisher.counters
    sql = plan.sql.replace("{where}", f" WHERE {where}" if where else "")
    writer = BsonWriter(out)
    try:
        with CopyStream(conninfo, sql, plan.table) as stream:
            rest = b""
            while True:
                block = stream.stdout.read(BLOCK_BYTES)
                if not block:
                    break
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    _flush(data[:cut], writer, finisher, counters, progress)
            stream.finish(not rest)
        count, _, _ = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return PartResult(count, dict(counters), dict(finisher.cast_failures), time.perf_counter() - start)


_NONFINITE = {
    "numeric_nan_kept": (b'{"$numberDecimal":"NaN"}',),
    "numeric_infinity_kept": (b'{"$numberDecimal":"Infinity"}', b'{"$numberDecimal":"-Infinity"}'),
    "double_nan_kept": (b'{"$numberDouble":"NaN"}',),
    "double_infinity_kept": (b'{"$numberDouble":"Infinity"}', b'{"$numberDouble":"-Infinity"}'),
}


def _count_nonfinite(block: bytes, counters: Counter) -> None:
    """Count the NaN/±Infinity values of the fast text. Only the SELECT's own wrappers can
    spell these bytes: quotes inside JSON strings are escaped, and jsonb keys starting with `$`
    never reach the fast text."""
    if b'"NaN"' not in block and b'Infinity"' not in block:
        return
    for name, needles in _NONFINITE.items():
        n = sum(block.count(needle) for needle in needles)
        if n:
            counters[name] += n


BLOCK_BYTES = 1 << 20


def _flush(data: bytes, writer: BsonWriter, finisher: "RowFinisher", counters: Counter,
           progress: Progress | None) -> None:
    chunk = data[:-1]  # whole lines, the last newline dropped
    if b"\\" in chunk:
        # COPY's text format doubles every backslash; JSON text holds no raw control
        # characters, so that is the only escape present.
        chunk = chunk.replace(b"\\\\", b"\\")
    encoded, lines = _encode_lines(chunk, bsonjs.loads, finisher, counters)
    writer.write_raw(encoded, lines)
    if progress is not None:
        progress.advance(lines)


def _encode_lines(block: bytes, loads: Callable[[bytes], bytes], finisher: RowFinisher,
                  counters: Counter) -> tuple[bytes, int]:
    """BSON of the COPY lines in `block` (no trailing newline), and how many there were."""
    lines = block.count(b"\n") + 1
    _count_nonfinite(block, counters)
    # Common case: no line of the block has a second column (each ends in a tab and \N; a
    # raw tab only ever appears as COPY's delimiter, JSON escapes its own).
    if block.count(b"\t\\N") == lines:
        try:
            return b"".join(map(loads, block.replace(b"\t\\N", b"").split(b"\n"))), lines
        except Exception:  # noqa: BLE001 - libbson's errors are plain exceptions; redo line by line
            pass
    out = []
    for line in block.split(b"\n"):
        doc_text, _, py = line.partition(b"\t")
        try:
            doc = loads(doc_text)
        except Exception:  # noqa: BLE001
            doc = _loads_fallback(doc_text, counters)
        if py != b"\\N":
            doc = finisher.finish(doc, py.decode("utf-8"))
        out.append(doc)
    return b"".join(out), lines


