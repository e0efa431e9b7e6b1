"""Shared fixtures: a throwaway PostgreSQL cluster, a moto S3 server and a MongoDB URI.

Each session starts its own services on free ports in its own folders, so test runs never
touch the demo's services or each other. MONGO_TEST_URI=mongodb://… runs every MongoDB-facing
test against that server instead of the in-process stand-in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from etl.services import MotoServer, PgCluster, free_port

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHINOOK_SQL = SHARED / "datasets" / "chinook" / "Chinook_PostgreSql.sql"


def _scratch(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Pg:
    """A running cluster plus helpers to make and fill databases."""

    def __init__(self, cluster: PgCluster):
        self.cluster = cluster
        self.port = cluster.port
        self.host = "127.0.0.1"
        self.user = cluster.user

    def dsn(self, dbname: str = "postgres") -> str:
        return self.cluster.dsn(dbname)

    def create_db(self, name: str | None = None, sql: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        if sql:
            self.execute(name, sql)
        return name

    def execute(self, dbname: str, sql: str) -> None:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(sql)

    def env(self, dbname: str) -> dict[str, str]:
        """Settings that point the pipeline's LOCAL_PG_* at this cluster."""
        return {"LOCAL_PG_HOST": self.host, "LOCAL_PG_PORT": str(self.port), "LOCAL_PG_USER": self.user,
                "LOCAL_PG_DB": dbname, "LOCAL_PG_MANAGED": "false", "LOCAL_PG_PASSWORD": ""}


@pytest.fixture(scope="module")
def sample_snapshot(pg):
    """A snapshot of the sample media_tool schema (no data), built once per test module."""
    from etl.snapshot import take_snapshot

    db = pg.create_db(sql=(REPO / "scripts" / "etl" / "sql" / "sample_schema.sql").read_text(encoding="utf-8"))
    return take_snapshot(pg.dsn(db))


@pytest.fixture(scope="module")
def schemas(sample_snapshot):
    """The sample's canonical schemas under the tracked rules."""
    from etl.canonical import canonical_schemas
    from etl.mapping import build_mapping
    from etl.rules import load_rules

    return canonical_schemas(build_mapping(sample_snapshot, load_rules(REPO / "schemas" / "rules.yaml")))


@pytest.fixture(scope="session")
def pg():
    base = _scratch("etl-test-pg-")
    cluster = PgCluster(base / "pg", free_port())
    cluster.start()
    try:
        yield Pg(cluster)
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server():
    base = _scratch("etl-test-s3-")
    server = MotoServer(base, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _aws_test_credentials(monkeypatch):
    # Tests never reach AWS: dummy credentials, and no profile from the developer's machine.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def s3(s3_server):
    """A fresh bucket on the moto server: (boto3 client, bucket name, endpoint url)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket, s3_server.url


@pytest.fixture(scope="session")
def mongo_base_uri(tmp_path_factory):
    """MONGO_TEST_URI when set (a real server), else a file-backed stand-in for this session."""
    if os.environ.get("MONGO_TEST_URI"):
        return os.environ["MONGO_TEST_URI"]
    return f"litemongo:{tmp_path_factory.mktemp('mongo')}/store"


@pytest.fixture
def mongo_db(mongo_base_uri):
    """(uri, database name) unique to the test; the database is dropped afterwards."""
    from etl.mongo import connect

    name = f"etltest-{uuid.uuid4().hex[:8]}"
    yield mongo_base_uri, name
    client = connect(mongo_base_uri)
    client.drop_database(name)
    client.close()


@pytest.fixture
def project(tmp_path, monkeypatch, pg, s3_server, mongo_base_uri):
    """A scratch project root (ETL_ROOT) with the tracked config and schemas, and the
    environment pointing every setting at this session's services. Returns its path."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "pipeline.env", root / "pipeline.env")
    # Only what a fresh clone has: a demo run's untracked outputs must not leak into tests.
    tracked = subprocess.run(["git", "ls-files", "-z", "schemas"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    db = f"media_tool_{uuid.uuid4().hex[:8]}"
    for key, value in pg.env(db).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("MONGO_URI", mongo_base_uri)
    monkeypatch.setenv("MONGO_DB_NAME", f"bravo-{uuid.uuid4().hex[:8]}")
    return root


# --- mongodump-layout folders (transformed exports and backups) --------------------------------


def write_dump_folder(folder: Path, collections: dict, *, indexes: dict | None = None,
                      options: dict | None = None, manifest: dict | None = None) -> Path:
    """Write `collections` ({name: [documents]}) in the mongodump layout: <name>.bson,
    <name>.metadata.json (indexes, options) and manifest.json with counts and sha256, as the
    transform and the backup write them. `manifest` adds top-level keys (version, database…)."""
    import json

    import bson
    from bson import json_util

    from etl.fsutil import sha256_file

    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, docs in collections.items():
        (folder / f"{name}.bson").write_bytes(b"".join(bson.encode(d) for d in docs))
        meta = {"indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"}, *(indexes or {}).get(name, [])],
                "options": (options or {}).get(name, {}), "collectionName": name, "type": "collection"}
        (folder / f"{name}.metadata.json").write_text(json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS))
        entries[name] = {"count": len(docs), "sha256": sha256_file(folder / f"{name}.bson"),
                         "metadata_sha256": sha256_file(folder / f"{name}.metadata.json")}
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, **(manifest or {}),
                                                      "collections": entries}, indent=2, default=str))
    return folder


@pytest.fixture
def dump_folder():
    """`write_dump_folder(folder, {name: [docs]}, indexes=…, options=…, manifest=…)`."""
    return write_dump_folder


# ------------------------------------------------------------------------------------------
# Wire server: a MongoDB wire-protocol server that enforces $jsonSchema validators (mongoeco,
# under the Python 3.13 virtualenv made by scripts/setup-wire-venv.sh). Gaps: no collMod,
# server_info() fails (buildInfo works). MONGO_TEST_URI, when set, is used instead.
# ------------------------------------------------------------------------------------------

WIRE_VENV = REPO / ".venv-wire"


@pytest.fixture(scope="session")
def wire_mongo_uri():
    """mongodb:// URI of a server that enforces validators, for this session."""
    import subprocess

    import pymongo

    from etl.services import wait_until

    if os.environ.get("MONGO_TEST_URI"):
        yield os.environ["MONGO_TEST_URI"]
        return
    setup = subprocess.run([str(REPO / "scripts" / "setup-wire-venv.sh")], capture_output=True, text=True)
    python = WIRE_VENV / "bin" / "python"
    if setup.returncode != 0:
        pytest.fail(f"scripts/setup-wire-venv.sh failed: {setup.stderr.strip()[-500:]}")
    if not python.exists():
        pytest.skip(f"no Python >= 3.13 for the wire server: {setup.stderr.strip()}")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="etl-test-wire-")) / "wire.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(python), str(REPO / "tests" / "wire_server.py"), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"wire server exited: {log.read_text()[-500:]}")
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=300)
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()

    try:
        wait_until(answers, timeout=60, what="the wire server")
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(log.parent, ignore_errors=True)
