"""Local services: a private cluster and a moto server start once, report status, stop."""

from __future__ import annotations

import psycopg
import pytest

from etl.errors import ServiceError
from etl.services import MotoServer, PgCluster, free_port


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
