"""Local services: a private cluster and a moto server start once, report status, stop."""

from __future__ import annotations

import psycopg
import pytest

from etl.core.errors import ServiceError
from etl.adapters.services import MotoServer, PgCluster, free_port


def test_second_start_reuses_the_running_cluster(pg):
    pid_file = pg.cluster.data / "postmaster.pid"
    before = pid_file.read_text().splitlines()[0]
    pg.cluster.start()  # harmless: already running
    assert pid_file.read_text().splitlines()[0] == before
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("15")


def test_cluster_refuses_a_port_taken_by_another_server(pg, tmp_path):
    tmp_path.chmod(0o755)
    other = PgCluster(tmp_path / "other", pg.port)
    with pytest.raises(ServiceError, match=f"port {pg.port} is in use"):
        other.start()
    other.destroy()


def test_moto_server_start_stop(tmp_path):
    server = MotoServer(tmp_path, free_port())
    server.start()
    try:
        assert server.running()
        server.start()  # harmless
        import boto3

        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
        s3.create_bucket(Bucket="probe")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["probe"]
    finally:
        server.stop()
    assert not server.running()


def test_managed_mongodb_starts_once_keeps_its_data_and_stops(tmp_path):
    from conftest import MONGO_VENV
    from etl.adapters.mongodb import connect
    from etl.adapters.services import MongoServer

    server = MongoServer(tmp_path / "mongo", free_port(), MONGO_VENV / "bin" / "secantusd-py")
    server.start()
    try:
        pid = server.pid()
        server.start()  # harmless: already running
        assert server.pid() == pid
        client = connect(server.uri)
        assert client.server_info()["version"].split(".")[0].isdigit()
        client["bravo-1"].kept.insert_one({"_id": 1})
        client.close()
        server.stop()
        assert not server.running()
        server.start()  # WiredTiger data survives a restart
        client = connect(server.uri)
        assert client["bravo-1"].kept.find_one({"_id": 1}) == {"_id": 1}
        client.close()
    finally:
        server.destroy()
    assert not server.running()


def test_managed_mongodb_refuses_a_taken_port_and_a_missing_binary(tmp_path, pg):
    from conftest import MONGO_VENV
    from etl.adapters.services import MongoServer

    taken = MongoServer(tmp_path / "a", pg.port, MONGO_VENV / "bin" / "secantusd-py")
    with pytest.raises(ServiceError, match=f"port {pg.port} is in use"):
        taken.start()
    missing = MongoServer(tmp_path / "b", free_port(), tmp_path / "no-such-binary")
    with pytest.raises(ServiceError, match="the MongoDB server is not installed"):
        missing.start()


def test_services_up_says_a_remote_uri_is_not_managed(project, monkeypatch):
    from click.testing import CliRunner

    from etl.cli import cli

    monkeypatch.setenv("MONGO_MANAGED", "true")
    monkeypatch.setenv("MONGO_URI", "mongodb://etl:pw@mongo.example.com:27017/")
    monkeypatch.setenv("LOCAL_PG_MANAGED", "false")
    monkeypatch.setenv("S3_ENDPOINT_URL", "")
    result = CliRunner().invoke(cli, ["services", "status"])
    assert result.exit_code == 1
    assert "MONGO_MANAGED=true, but MONGO_URI (mongodb://etl:***@mongo.example.com:27017/)" in result.output
    assert "pw@" not in result.output
