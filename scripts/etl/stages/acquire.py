"""Stage 1: acquire a production dump (the seed's Step 1).

    s3      the newest object under S3_PREFIX (by LastModified), or a named --key
    direct  pg_dump -Fc against PROD_PG_DSN (VPN / bastion)
    file    a dump already on disk
    local   no dump: LOCAL_PG_DB is used as it is

Every dump is verified (size, sha256, `pg_restore --list`) before it replaces anything. The
pointer data/dumps/current.json names the dump in use and is rewritten only when the dump
changes, so the later stages are stale only then.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from etl.adapters import s3 as s3mod
from etl.adapters.s3 import describe_error
from etl.adapters.services import pg_tool
from etl.core.config import Config, client_connection, mask_uri, secrets_of
from etl.core.errors import SourceError
from etl.core.fsutil import sha256_file, write_json_if_changed
from etl.core.paths import paths
from etl.core.progress import Progress, say
from etl.formats.dumps import current_pointer

log = logging.getLogger("etl.acquire")

KEEP_DUMPS = 3  # older dumps in data/dumps are deleted; S3 keeps the history


def verify_dump(path: Path, name: str | None = None) -> int:
    """`pg_restore --list` must read the whole table of contents; returns its entry count."""
    name = name or path.name
    if not path.is_file() or path.stat().st_size == 0:
        raise SourceError(f"dump {name} is empty or missing")
    proc = subprocess.run([pg_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise SourceError(f"dump {name} is not a valid pg_dump custom-format archive: {reason}",
                          hint="the download may be truncated or the file corrupt; the previous dump is kept")
    return sum(1 for line in proc.stdout.splitlines() if line and not line.startswith(";"))


def _install(tmp: Path, name: str, record: dict) -> dict:
    """Verify `tmp`, move it into data/dumps/`name`, point current.json at it."""
    entries = verify_dump(tmp, name)
    sha = sha256_file(tmp)
    size = tmp.stat().st_size
    if record.get("expected_size") is not None and record["expected_size"] != size:
        raise SourceError(f"{name}: downloaded {size} bytes, expected {record['expected_size']}",
                          hint="the transfer was cut short; run again")
    record.pop("expected_size", None)
    previous = current_pointer()
    if previous and previous.get("sha256") == sha:
        tmp.unlink(missing_ok=True)
        log.info("dump %s is unchanged (sha256 %s)", name, sha[:12])
        return previous
    final = paths.dumps / name
    os.replace(tmp, final)
    pointer = {**record, "file": str(final.relative_to(paths.root)), "sha256": sha, "size": size,
               "toc_entries": entries, "acquired_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json_if_changed(paths.current_dump, pointer)
    _prune_old_dumps(keep={final.name})
    log.info("acquired %s (%d bytes, sha256 %s)", name, size, sha[:12])
    return pointer


def _prune_old_dumps(keep: set[str]) -> None:
    dumps = sorted((p for p in paths.dumps.glob("*.dump") if p.name not in keep),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in dumps[KEEP_DUMPS - 1:]:
        old.unlink(missing_ok=True)


def _tmp_path(name: str) -> Path:
    paths.dumps.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=paths.dumps, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def latest_s3_key(s3, bucket: str, prefix: str) -> dict:
    newest = None
    try:
        # Only objects directly under the prefix: exports pushed back to S3 live in
        # <prefix><db>/<version>/ and must never be mistaken for a dump.
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(("/", ".json")) or obj["Size"] == 0:
                    continue
                if newest is None or (obj["LastModified"], obj["Key"]) > (newest["LastModified"], newest["Key"]):
                    newest = obj
    except Exception as exc:
        raise SourceError(f"cannot list s3://{bucket}/{prefix}: {describe_error(exc)}",
                          hint="check S3_BUCKET, S3_ENDPOINT_URL and your AWS login") from None
    if newest is None:
        raise SourceError(f"no dumps under s3://{bucket}/{prefix}",
                          hint="check S3_PREFIX, or upload a dump there")
    return newest


def acquire_s3(cfg: Config, key: str | None = None) -> dict:
    s3 = s3mod.client(cfg)
    bucket, prefix = cfg["S3_BUCKET"], cfg["S3_PREFIX"]
    if key is None:
        obj = latest_s3_key(s3, bucket, prefix)
        key, size, etag = obj["Key"], obj["Size"], obj.get("ETag", "")
    else:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise SourceError(f"cannot read s3://{bucket}/{key}: {s3mod.describe_error(exc)}",
                              hint="check the key with `aws s3 ls`") from None
        size, etag = head["ContentLength"], head.get("ETag", "")
    previous = current_pointer()
    if (previous and previous.get("source") == "s3" and previous.get("s3_key") == key
            and previous.get("etag") == etag and (paths.root / previous["file"]).is_file()):
        log.info("s3://%s/%s already acquired", bucket, key)
        say(f"acquire: s3://{bucket}/{key} is the dump in use; nothing to download")
        return previous
    name = Path(key).name if Path(key).name.endswith(".dump") else Path(key).name + ".dump"
    tmp = _tmp_path(name)
    try:
        with Progress(f"download {name}", total=size, unit="B") as bar:
            s3.download_file(bucket, key, str(tmp), Callback=bar.advance)
        return _install(tmp, name, {"source": "s3", "bucket": bucket, "s3_key": key, "etag": etag,
                                    "expected_size": size})
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"download of s3://{bucket}/{key} failed: {s3mod.describe_error(exc)}",
                          hint="the previous dump is kept") from None
    finally:
        tmp.unlink(missing_ok=True)


def acquire_direct(cfg: Config) -> dict:
    dsn = cfg["PROD_PG_DSN"]
    if not dsn:
        raise SourceError("--source direct needs PROD_PG_DSN", hint="set it in pipeline.local.env")
    try:
        # The password travels in the environment, never on the command line (ps would show it).
        client_dsn, env, params = client_connection(dsn)
    except Exception:
        raise SourceError("PROD_PG_DSN is not a valid PostgreSQL connection string") from None
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d-%H%M%S")
    name = f"{params.get('dbname', 'media_tool')}-{stamp}.dump"
    tmp = _tmp_path(name)
    try:
        say(f"acquire: pg_dump -Fc from {mask_uri(dsn)} …")
        proc = subprocess.run([pg_tool("pg_dump"), "-Fc", "-d", client_dsn, "-f", str(tmp)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            for secret in secrets_of(cfg):
                reason = reason.replace(secret, "***")
            raise SourceError(f"pg_dump failed: {reason}", hint="check VPN/bastion access and PROD_PG_DSN")
        return _install(tmp, name, {"source": "direct", "host": params.get("host", "")})
    finally:
        tmp.unlink(missing_ok=True)


def acquire_file(path: Path) -> dict:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"dump file {path} does not exist")
    name = path.name if path.name.endswith(".dump") else path.name + ".dump"
    tmp = _tmp_path(name)
    try:
        shutil.copyfile(path, tmp)
        return _install(tmp, name, {"source": "file", "original": str(path)})
    finally:
        tmp.unlink(missing_ok=True)


def acquire_local(cfg: Config) -> dict:
    pointer = {"source": "local", "database": cfg["LOCAL_PG_DB"]}
    write_json_if_changed(paths.current_dump, pointer)
    return pointer


def acquire(cfg: Config, key: str | None = None, file: Path | None = None) -> dict:
    source = cfg["ETL_SOURCE"]
    if source == "s3":
        return acquire_s3(cfg, key)
    if source == "direct":
        return acquire_direct(cfg)
    if source == "file":
        target = file or (Path(cfg["ETL_DUMP_FILE"]) if cfg["ETL_DUMP_FILE"] else None)
        if target is None:
            raise SourceError("--source file needs a dump path", hint="etl acquire --source file PATH")
        return acquire_file(target)
    return acquire_local(cfg)
