"""`etl sample`: a synthetic `media_tool` database, written as a pg_dump custom-format file.

The demo and the tests need a production-shaped dump without production: 12 tables (money,
rates, jsonb, text[] arrays, enums, a domain, uuid, timestamptz, chains of foreign keys, a
composite primary key, a table without one, a view), with `daily_metrics` as the big table.
The data is generated inside PostgreSQL from the SQL files in `etl/stages/sql/sample_*.sql`, so 100k
rows take seconds, and every value is a function of the seed: the same seed gives the same
rows (the sidecar records a checksum per table to prove it).

`--variant changed` is the same database after a realistic schema release (see
docs/sample-data.md), for demonstrating and testing change detection.

A dump built with the same parameters and generator is not rebuilt (the sidecar
`<dump>.json` records them); `--upload` puts the dump in the S3 bucket the pipeline acquires
from, skipping the upload when the same content is already there.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from etl.adapters import s3 as s3mod
from etl.adapters.s3 import describe_error
from etl.adapters.services import pg_tool
from etl.core.config import Config, client_connection, mask_uri
from etl.core.errors import DatabaseError, EtlError, SampleError, SourceError
from etl.core.fsutil import read_json, sha256_file, write_json_if_changed
from etl.core.hashing import content_hash
from etl.core.paths import paths
from etl.core.progress import Progress

log = logging.getLogger("etl.sample")

VARIANTS = ("base", "changed")
DEFAULT_SEED = 42
DEFAULT_METRICS_ROWS = 100_000
SIDECAR_FORMAT = 1
SQL_DIR = Path(__file__).resolve().parent / "sql"
_STEP = re.compile(r"^-- @step (\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SampleParams:
    seed: int = DEFAULT_SEED
    metrics_rows: int = DEFAULT_METRICS_ROWS
    variant: str = "base"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise SampleError(f"unknown sample variant {self.variant!r}", hint=f"use one of {', '.join(VARIANTS)}")
        if not 0 <= self.seed < 2**31:
            raise SampleError(f"seed must be between 0 and {2**31 - 1}, got {self.seed}")
        if self.metrics_rows < 0:
            raise SampleError(f"--metrics-rows must not be negative, got {self.metrics_rows}")

    def record(self) -> dict[str, Any]:
        """What the dump depends on: the parameters and the generator's SQL."""
        return {"seed": self.seed, "metrics_rows": self.metrics_rows, "variant": self.variant,
                "generator": generator_version(self.variant)}

    @property
    def object_name(self) -> str:
        """A name that is the same for the same parameters, so re-seeding S3 never duplicates."""
        return f"media_tool-sample-{self.variant}-seed{self.seed}-{self.metrics_rows}rows.dump"


@dataclass
class SampleResult:
    path: Path
    built: bool  # False: an up-to-date dump was kept
    params: SampleParams
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    size: int = 0
    sha256: str = ""
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables.values())

    def summary(self) -> str:
        p = self.params
        head = f"sample {p.variant} (seed {p.seed}, {p.metrics_rows:,} metrics rows)"
        where = _shown(self.path)
        facts = f"{len(self.tables)} tables, {self.rows:,} rows, dump {_fmt_size(self.size)}"
        if not self.built:
            return f"{head}: up to date, {facts} -> {where} (--force rebuilds)"
        return f"{head}: {facts}, built in {self.seconds:.1f}s -> {where}"


@dataclass
class UploadResult:
    bucket: str
    key: str
    uploaded: bool  # False: the same content was already there
    sha256: str
    size: int

    def summary(self) -> str:
        state = "uploaded" if self.uploaded else "already there (same sha256), not uploaded again"
        return f"s3://{self.bucket}/{self.key}: {state} ({_fmt_size(self.size)})"


def _fmt_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.root))
    except ValueError:
        return str(path)


def sql_files(variant: str) -> list[Path]:
    files = [SQL_DIR / "sample_schema.sql", SQL_DIR / "sample_data.sql"]
    if variant == "changed":
        files.append(SQL_DIR / "sample_changed.sql")
    return files


def generator_version(variant: str) -> str:
    """12 hex digits of the SQL that makes this variant: editing the generator rebuilds."""
    return content_hash({f.name: f.read_text(encoding="utf-8") for f in sql_files(variant)})[:12]


def _has_statements(body: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in body.splitlines())


def split_steps(text: str, name: str = "main") -> list[tuple[str, str]]:
    """A SQL file cut at its `-- @step <step>` markers into (step, sql) pairs, in order;
    statements before the first marker are a step called `name`."""
    marks = list(_STEP.finditer(text))
    steps = []
    head = text[: marks[0].start()] if marks else text
    if _has_statements(head):
        steps.append((name, head.strip()))
    for mark, nxt in zip(marks, marks[1:] + [None]):
        body = text[mark.end(): nxt.start() if nxt else len(text)].strip()
        if _has_statements(body):
            steps.append((mark.group(1), body))
    return steps


def default_out(variant: str) -> Path:
    if variant == "base":
        return paths.sample_dump
    return paths.sample_dump.with_name(f"media_tool-{variant}.dump")


def sidecar_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".json")


def _first_line(exc: BaseException) -> str:
    return mask_uri((str(exc).strip().splitlines() or [type(exc).__name__])[0])


def _connect(conninfo: str, what: str) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        params = conninfo_to_dict(conninfo)
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        raise DatabaseError(f"cannot connect to PostgreSQL at {where} ({what}): {_first_line(exc)}",
                            hint="start it with `make services-up` or check LOCAL_PG_HOST/LOCAL_PG_PORT") from None


def _session_setup(conn: psycopg.Connection, params: SampleParams) -> None:
    # Text output feeds the checksums: pin what could vary between servers and sessions.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET datestyle = 'ISO, YMD'")
    conn.execute("SET extra_float_digits = 1")
    # generate_series row estimates are wild (1000 per call), so the planner would JIT-compile
    # small inserts for seconds; the work itself takes milliseconds.
    conn.execute("SET jit = off")
    conn.execute("SELECT set_config('sample.seed', %s, false), set_config('sample.metrics_rows', %s, false)",
                 (str(params.seed), str(params.metrics_rows)))


def generate(conn: psycopg.Connection, params: SampleParams,
             on_step: Callable[[str], None] = lambda name: None) -> None:
    """Create the sample schema and data in the (empty) database `conn` is connected to."""
    _session_setup(conn, params)
    for path in sql_files(params.variant):
        for name, body in split_steps(path.read_text(encoding="utf-8"), path.stem):
            log.debug("sample step %s:%s", path.name, name)
            try:
                conn.execute(body)
            except psycopg.Error as exc:
                raise SampleError(f"generating the sample failed at {path.name} step {name!r}: "
                                  f"{_first_line(exc)}") from None
            on_step(name)


def step_count(variant: str) -> int:
    return sum(len(split_steps(f.read_text(encoding="utf-8"), f.stem)) for f in sql_files(variant))


def table_stats(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Row count and an order-independent content checksum per table ("schema.table").

    The checksum is the md5 of the rows' text, sorted bytewise, so it is the same on any
    server and locale, and two databases with equal checksums hold equal data.
    """
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET datestyle = 'ISO, YMD'")
    conn.execute("SET extra_float_digits = 1")
    tables = conn.execute((SQL_DIR / "sample_tables.sql").read_text(encoding="utf-8")).fetchall()
    stats: dict[str, dict[str, Any]] = {}
    for schema, name in tables:
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), ''))"
                        " FROM {} AS t").format(sql.Identifier(schema, name))
        rows, checksum = conn.execute(query).fetchone()
        stats[f"{schema}.{name}"] = {"rows": rows, "checksum": checksum}
    return stats


def dump_database(conninfo: str, out_path: Path) -> None:
    """`pg_dump -Fc` of the database `conninfo` names, written atomically to `out_path`.

    The password goes to pg_dump through PGPASSWORD, never on its command line.
    """
    dsn, env, _ = client_connection(conninfo)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SampleError(f"cannot write the sample dump in {out_path.parent}: {exc.strerror}") from None
    os.close(fd)
    try:
        # No owners or grants: the dump must restore as whatever user runs the pipeline.
        proc = subprocess.run([pg_tool("pg_dump"), "-Fc", "--no-owner", "--no-acl", "-f", tmp,
                               "-d", dsn], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SampleError(f"pg_dump of the sample failed: {mask_uri(last)}")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the dump from a restore run as postgres
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def up_to_date(out_path: Path, params: SampleParams) -> dict[str, Any] | None:
    """The sidecar when `out_path` was built with `params` and is intact, else None."""
    side = sidecar_path(out_path)
    if not (out_path.is_file() and side.is_file()):
        return None
    try:
        record = read_json(side)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(dump := record.get("dump"), dict):
        return None
    if record.get("format_version") != SIDECAR_FORMAT or record.get("params") != params.record():
        return None
    if dump.get("size") != out_path.stat().st_size or dump.get("sha256") != sha256_file(out_path):
        return None
    return record


def build_sample(conninfo_admin: str, out_path: Path | None = None, seed: int = DEFAULT_SEED,
                 metrics_rows: int = DEFAULT_METRICS_ROWS, variant: str = "base", *,
                 force: bool = False, progress_stream: TextIO | None = None) -> SampleResult:
    """Generate the sample in a scratch database next to `conninfo_admin`'s, dump it to
    `out_path` (atomically) with a sidecar `<out>.json`, and drop the scratch database.

    Skipped when `out_path` already holds a dump of the same parameters and generator,
    unless `force`.
    """
    params = SampleParams(seed, metrics_rows, variant)
    out_path = Path(out_path or default_out(variant))
    if not force and (record := up_to_date(out_path, params)):
        log.info("sample %s is up to date: %s", variant, out_path)
        return SampleResult(out_path, False, params, record["tables"], record["dump"]["size"],
                            record["dump"]["sha256"], record.get("seconds", 0.0))

    started = time.monotonic()
    scratch = f"media_tool_sample_{os.getpid()}_{secrets.token_hex(3)}"
    scratch_conninfo = make_conninfo(conninfo_admin, dbname=scratch)
    with _connect(conninfo_admin, "to create the scratch database") as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'")
                          .format(sql.Identifier(scratch)))
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot create the scratch database {scratch}: {_first_line(exc)}",
                                hint="LOCAL_PG_USER needs the CREATEDB privilege") from None
    try:
        with _connect(scratch_conninfo, "scratch database") as conn:
            label = f"sample {variant}"
            with Progress(label, total=step_count(variant), unit="steps", stream=progress_stream) as bar:
                generate(conn, params, on_step=lambda name: bar.advance())
            try:
                tables = table_stats(conn)
            except psycopg.Error as exc:
                raise SampleError(f"counting the sample's rows failed: {_first_line(exc)}") from None
        dump_database(scratch_conninfo, out_path)
    finally:
        try:
            with _connect(conninfo_admin, "to drop the scratch database") as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        except EtlError as exc:
            log.warning("scratch database %s was not dropped: %s", scratch, exc.line())
        except psycopg.Error as exc:
            log.warning("scratch database %s was not dropped: %s", scratch, _first_line(exc))

    seconds = round(time.monotonic() - started, 2)
    size, digest = out_path.stat().st_size, sha256_file(out_path)
    write_json_if_changed(sidecar_path(out_path), {
        "format_version": SIDECAR_FORMAT,
        "params": params.record(),
        "dump": {"file": out_path.name, "size": size, "sha256": digest},
        "tables": tables,
        "rows": sum(t["rows"] for t in tables.values()),
        "seconds": seconds,
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    result = SampleResult(out_path, True, params, tables, size, digest, seconds)
    log.info("%s", result.summary())
    return result


def _ensure_bucket(s3, cfg: Config, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise SourceError(f"bucket {bucket} cannot be used: {describe_error(exc)}") from None
    # Only a local endpoint (the demo's empty moto server) gets a bucket made for it; on AWS
    # a missing bucket is a configuration mistake, not something a sample should paper over.
    if not cfg["S3_ENDPOINT_URL"]:
        raise SourceError(f"bucket {bucket} does not exist", hint="check S3_BUCKET")
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if cfg["AWS_REGION"] and cfg["AWS_REGION"] != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg["AWS_REGION"]}
    s3.create_bucket(**kwargs)
    log.info("created bucket %s on %s", bucket, cfg["S3_ENDPOINT_URL"])


def seed_s3(cfg: Config, dump_path: Path, key: str | None = None) -> UploadResult:
    """Upload `dump_path` to s3://S3_BUCKET/<key> (default S3_PREFIX + the sample's object
    name from its sidecar, else the file name). Skipped when an object with the same sha256
    metadata is already there; the bucket is created on a local endpoint when missing."""

    dump_path = Path(dump_path)
    if not dump_path.is_file():
        raise SampleError(f"no dump at {_shown(dump_path)}", hint="run `etl sample` first")
    if key is None:
        name = dump_path.name
        side = sidecar_path(dump_path)
        if side.is_file():
            try:
                p = read_json(side)["params"]
                name = SampleParams(p["seed"], p["metrics_rows"], p["variant"]).object_name
            except (ValueError, KeyError, TypeError, EtlError):
                log.warning("sidecar %s is unreadable; uploading under the file name", side)
        key = cfg["S3_PREFIX"] + name
    bucket = cfg["S3_BUCKET"]
    digest, size = sha256_file(dump_path), dump_path.stat().st_size
    client = s3mod.client(cfg)
    try:
        _ensure_bucket(client, cfg, bucket)
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == digest and head.get("ContentLength") == size:
                log.info("s3://%s/%s already holds this dump", bucket, key)
                return UploadResult(bucket, key, False, digest, size)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        client.upload_file(str(dump_path), bucket, key,
                           ExtraArgs={"Metadata": {"sha256": digest, "source": "etl-sample"},
                                      "ContentType": "application/octet-stream"})
    except (ClientError, BotoCoreError) as exc:
        raise SourceError(f"uploading the sample to s3://{bucket}/{key} failed: {s3mod.describe_error(exc)}",
                          hint="check S3_ENDPOINT_URL, S3_BUCKET and the AWS credentials") from None
    log.info("uploaded %s to s3://%s/%s", dump_path.name, bucket, key)
    return UploadResult(bucket, key, True, digest, size)
