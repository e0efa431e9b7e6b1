"""`etl push`: upload the transformed export to s3://$S3_BUCKET/$S3_PREFIX<db>/<version>/.

What goes up: each `<collection>.bson` gzipped as `<collection>.bson.gz`, each
`<collection>.metadata.json`, and `manifest.json` last, so a reader that finds the manifest
finds everything it lists.

The version is the manifest's `version` (the transform's content hash of the manifest body,
timestamps excluded); a manifest without one gets a content id instead, the first 16 hex
digits of the sha256 of the sorted "<file> <sha256>" lines of the collection files. Either way
the same export always lands under the same prefix, so a second push of an unchanged export
uploads nothing, and a changed one gets a new prefix while the old export stays readable.

Every object carries `sha256` (of the bytes stored) and `content-sha256` (of the uncompressed
file) in its metadata. An object whose `content-sha256` already matches is skipped. After
the upload the prefix is listed and every object's size and checksums are compared.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from etl.adapters.s3 import client as s3_client
from etl.adapters.s3 import describe_error
from etl.core.config import Config, mask_uri
from etl.core.errors import BackupError, PushError
from etl.core.fsutil import sha256_file
from etl.core.names import check_db_name
from etl.core.paths import paths
from etl.core.progress import Progress
from etl.formats.dumpdir import manifest_collections, read_manifest

log = logging.getLogger("etl.push")

MiB = 1024 * 1024
# S3 allows at most 10,000 parts; 16 MiB parts cover exports up to ~160 GB.
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNK = 16 * MiB


@dataclass
class ExportFile:
    name: str  # the object name under the version prefix
    path: Path  # the local file as the transform wrote it
    content_sha256: str
    gzip: bool

    @property
    def content_type(self) -> str:
        return "application/gzip" if self.gzip else "application/json"


@dataclass
class PushResult:
    bucket: str
    prefix: str  # <S3_PREFIX><db>/<version>/
    version: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def export_files(folder: Path, manifest: dict) -> list[ExportFile]:
    """The files to push, checked against the manifest's sha256 (a corrupt export stays local)."""
    entries = manifest_collections(manifest)
    files: list[ExportFile] = []
    for name, entry in sorted(entries.items()):
        for filename, want, packed in ((f"{name}.bson", entry.sha256, True),
                                       (f"{name}.metadata.json", entry.metadata_sha256, False)):
            path = folder / filename
            if not path.is_file():
                if packed:
                    raise PushError(f"{path} is missing; the export is incomplete",
                                    hint="rerun `make transform`")
                continue
            digest = sha256_file(path)
            if want and digest != want:
                raise PushError(f"{filename} does not match the manifest's sha256",
                                hint="rerun `make transform`")
            files.append(ExportFile(filename + (".gz" if packed else ""), path, digest, packed))
    files.append(ExportFile("manifest.json", folder / "manifest.json",
                            sha256_file(folder / "manifest.json"), False))
    return files


VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def export_version(manifest: dict, files: list[ExportFile]) -> str:
    """The manifest's version, else a content id of the files (see the module docstring)."""
    if manifest.get("version") is not None:
        version = str(manifest["version"])
        if not VERSION_RE.fullmatch(version):
            raise PushError(f"manifest version {version[:40]!r} cannot name an S3 prefix",
                            hint="rerun `make transform`")
        return version
    lines = sorted(f"{f.path.name} {f.content_sha256}" for f in files if f.name != "manifest.json")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _gzip(src: Path, dst: Path) -> str:
    """Gzip with no name and no mtime in the header, so the same file packs to the same bytes."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(fin, gz, 1 << 20)
    with open(dst, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _s3_error(exc: Exception, cfg: Config, bucket: str) -> PushError:
    endpoint = mask_uri(cfg["S3_ENDPOINT_URL"]) or "AWS S3"
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return PushError(f"S3 endpoint {endpoint} is not reachable", hint="check S3_ENDPOINT_URL")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PushError("no AWS credentials for the push", hint="run `aws sso login` or set AWS_PROFILE")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return PushError(f"bucket {bucket} does not exist at {endpoint}", hint="check S3_BUCKET")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PushError(f"access to bucket {bucket} denied ({code})",
                             hint="check the AWS credentials and the bucket policy")
    return PushError(f"S3 push failed: {describe_error(exc)}")


def _remote_objects(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def verify(client, bucket: str, prefix: str, expected: dict[str, dict]) -> None:
    """Every expected object is listed with its size, and its metadata carries its checksums."""
    listed = {obj["Key"][len(prefix):]: obj["Size"] for obj in _remote_objects(client, bucket, prefix)}
    for name, want in sorted(expected.items()):
        if name not in listed:
            raise PushError(f"verification failed: {name} is not listed under s3://{bucket}/{prefix}")
        if want.get("size") is not None and listed[name] != want["size"]:
            raise PushError(f"verification failed: {name} is {listed[name]} bytes in S3, "
                            f"{want['size']} locally")
        head = _head(client, bucket, prefix + name) or {}
        meta = head.get("Metadata", {})
        if meta.get("content-sha256") != want["content-sha256"] or (
                want.get("sha256") and meta.get("sha256") != want["sha256"]):
            raise PushError(f"verification failed: {name} in S3 carries other checksums than the local file")


def push(cfg: Config, db: str | None = None, *, folder: Path | None = None,
         transfer_config=None) -> PushResult:
    """Upload the export of `db` (see the module docstring); return what was uploaded or skipped."""
    db = check_db_name(db or cfg["MONGO_DB_NAME"])
    folder = folder or paths.transformed / db
    try:
        manifest = read_manifest(folder)
    except BackupError as exc:  # a missing or unreadable export, reported as a push error
        raise PushError(str(exc), hint="run `make transform` first") from None
    files = export_files(folder, manifest)
    version = export_version(manifest, files)
    bucket = cfg["S3_BUCKET"]
    result = PushResult(bucket, f"{cfg['S3_PREFIX']}{db}/{version}/", version)
    config = transfer_config or TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                               multipart_chunksize=MULTIPART_CHUNK)
    client = s3_client(cfg)
    expected: dict[str, dict] = {}
    try:
        client.head_bucket(Bucket=bucket)
        todo: list[ExportFile] = []
        for f in files:
            head = _head(client, bucket, result.prefix + f.name)
            if head and head.get("Metadata", {}).get("content-sha256") == f.content_sha256:
                result.skipped.append(f.name)
                expected[f.name] = {"content-sha256": f.content_sha256, "size": head["ContentLength"]}
            else:
                todo.append(f)
        with tempfile.TemporaryDirectory(prefix=".push-", dir=folder.parent) as tmp:
            staged = []
            for f in todo:
                upload = Path(tmp) / f.name if f.gzip else f.path
                sha = _gzip(f.path, upload) if f.gzip else f.content_sha256
                staged.append((f, upload, sha))
            total = sum(upload.stat().st_size for _, upload, _ in staged)
            with Progress(f"push {db}", total=total or None, unit="bytes") as bar:
                # manifest.json is last in `files`, so it lands after everything it lists.
                for f, upload, sha in staged:
                    client.upload_file(
                        str(upload), bucket, result.prefix + f.name, Config=config,
                        Callback=bar.advance,
                        ExtraArgs={"ContentType": f.content_type,
                                   "Metadata": {"sha256": sha, "content-sha256": f.content_sha256}})
                    size = upload.stat().st_size
                    result.uploaded.append(f.name)
                    result.bytes_uploaded += size
                    expected[f.name] = {"content-sha256": f.content_sha256, "sha256": sha, "size": size}
                    log.info("uploaded %s (%d bytes)", result.prefix + f.name, size)
        verify(client, bucket, result.prefix, expected)
    except PushError:
        raise
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(exc, cfg, bucket) from None
    except S3UploadFailedError as exc:
        raise PushError(f"upload to s3://{bucket}/{result.prefix} failed: {str(exc)[:200]}") from None
    return result
