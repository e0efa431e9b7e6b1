"""Pushing the export to S3 over real HTTP (the moto server): layout, checksums, idempotence,
multipart, verification and one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import pytest
from boto3.s3.transfer import TransferConfig
from click.testing import CliRunner

from etl.cli import cli
from etl.core.config import load_config
from etl.core.errors import PushError
from etl.stages.push import push, verify
from etl.adapters.services import free_port

DB = "bravo-1"


def data(n=50, tag="a"):
    return {"campaigns": [{"_id": i, "name": f"{tag}{i}"} for i in range(n)],
            "advertisers": [{"_id": i, "name": f"adv{i}"} for i in range(5)]}


@pytest.fixture
def env(tmp_path, monkeypatch, s3, dump_folder):
    client, bucket, endpoint = s3
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("S3_BUCKET", bucket)
    monkeypatch.setenv("S3_PREFIX", "exports")
    monkeypatch.setenv("MONGO_DB_NAME", DB)
    folder = tmp_path / "data" / "transformed" / DB
    dump_folder(folder, data(), manifest={"database": DB, "created_at": "2026-11-26T10:00:00Z"})
    return client, bucket, folder


def objects(client, bucket, prefix="exports/"):
    resp = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: (o["Size"], o["ETag"], o["LastModified"]) for o in resp.get("Contents", [])}


def test_push_uploads_the_export_with_checksums(env):
    client, bucket, folder = env
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 0, result.output
    [version] = {k.split("/")[2] for k in objects(client, bucket)}
    assert f"Version: {version}" in result.stdout
    prefix = f"exports/{DB}/{version}/"
    assert sorted(objects(client, bucket)) == sorted(prefix + n for n in (
        "advertisers.bson.gz", "advertisers.metadata.json", "campaigns.bson.gz",
        "campaigns.metadata.json", "manifest.json"))
    body = client.get_object(Bucket=bucket, Key=prefix + "campaigns.bson.gz")
    packed = body["Body"].read()
    assert gzip.decompress(packed) == (folder / "campaigns.bson").read_bytes()
    meta = body["Metadata"]
    assert meta["sha256"] == hashlib.sha256(packed).hexdigest()
    assert meta["content-sha256"] == hashlib.sha256((folder / "campaigns.bson").read_bytes()).hexdigest()
    manifest = client.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read()
    assert manifest == (folder / "manifest.json").read_bytes()


def test_second_push_uploads_nothing(env):
    client, bucket, folder = env
    first = push(load_config())
    assert len(first.uploaded) == 5 and first.skipped == []
    before = objects(client, bucket)
    second = push(load_config())
    assert second.uploaded == [] and len(second.skipped) == 5 and second.bytes_uploaded == 0
    assert second.version == first.version
    assert objects(client, bucket) == before, "nothing rewritten"
    out = CliRunner().invoke(cli, ["push"]).stdout
    assert out.startswith("Nothing to push:")


def test_changed_data_gets_a_new_version_and_the_old_one_stays(env, dump_folder):
    client, bucket, folder = env
    first = push(load_config())
    dump_folder(folder, data(tag="b"), manifest={"database": DB})
    second = push(load_config())
    assert second.version != first.version
    keys = objects(client, bucket)
    assert f"{first.prefix}campaigns.bson.gz" in keys and f"{second.prefix}campaigns.bson.gz" in keys


def test_large_files_go_up_in_parts(env, dump_folder):
    client, bucket, folder = env
    # Incompressible payload so the gzipped file stays above the 5 MiB part size.
    blob = [{"_id": i, "blob": os.urandom(1 << 20)} for i in range(7)]
    dump_folder(folder, {"campaigns": blob}, manifest={"database": DB})
    small_parts = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    result = push(load_config(), transfer_config=small_parts)
    head = client.head_object(Bucket=bucket, Key=f"{result.prefix}campaigns.bson.gz")
    assert head["ETag"].strip('"').endswith("-2"), head["ETag"]
    assert head["ContentLength"] > 5 << 20


def test_verify_detects_an_object_that_differs(env):
    client, bucket, folder = env
    result = push(load_config())
    key = f"{result.prefix}campaigns.bson.gz"
    head = client.head_object(Bucket=bucket, Key=key)
    expected = {"campaigns.bson.gz": {"content-sha256": head["Metadata"]["content-sha256"],
                                      "sha256": head["Metadata"]["sha256"], "size": head["ContentLength"]}}
    verify(client, bucket, result.prefix, expected)
    client.put_object(Bucket=bucket, Key=key, Body=b"truncated", Metadata=head["Metadata"])
    with pytest.raises(PushError, match="campaigns.bson.gz is 9 bytes in S3"):
        verify(client, bucket, result.prefix, expected)
    client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(PushError, match="campaigns.bson.gz is not listed"):
        verify(client, bucket, result.prefix, expected)


def test_a_corrupt_export_is_not_pushed(env):
    client, bucket, folder = env
    with open(folder / "campaigns.bson", "ab") as fh:
        fh.write(b"\x00")
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1
    assert "campaigns.bson does not match the manifest's sha256" in result.stderr
    assert objects(client, bucket) == {}


def one_line_error(args=("push",)) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_missing_bucket(env, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket-here")
    assert one_line_error().startswith("Error: bucket no-such-bucket-here does not exist at http://127.0.0.1:")


def test_unreachable_endpoint(env, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("S3_ENDPOINT_URL", url)
    assert one_line_error() == f"Error: S3 endpoint {url} is not reachable (check S3_ENDPOINT_URL)"


def test_no_credentials(env, monkeypatch, tmp_path):
    # A non-local endpoint gets no test credentials; nothing on this machine provides any.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.2:{free_port()}")
    assert one_line_error().startswith("Error: no AWS credentials for the push")


def test_missing_export(tmp_path, monkeypatch):
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    monkeypatch.setenv("MONGO_DB_NAME", DB)
    assert "manifest.json not found" in one_line_error()


def test_manifest_is_uploaded_last(env):
    # A reader that sees manifest.json must find every file it lists.
    client, bucket, folder = env
    result = push(load_config())
    assert result.uploaded[-1] == "manifest.json"
    listed = json.loads((folder / "manifest.json").read_text())["collections"]
    names = {k.rsplit("/", 1)[1].split(".")[0] for k in objects(client, bucket)} - {"manifest"}
    assert names == set(listed)


def test_the_manifest_version_names_the_prefix(env, dump_folder):
    client, bucket, folder = env
    dump_folder(folder, data(), manifest={"database": DB, "version": "0123456789abcdef"})
    assert push(load_config()).prefix == f"exports/{DB}/0123456789abcdef/"
    dump_folder(folder, data(), manifest={"database": DB, "version": "../x"})
    with pytest.raises(PushError, match="manifest version '../x' cannot name an S3 prefix"):
        push(load_config())
