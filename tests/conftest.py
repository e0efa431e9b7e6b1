"""Shared fixtures: a throwaway PostgreSQL cluster, a moto S3 server and a MongoDB server.

Each session starts its own services on free ports in its own folders, so test runs never
touch the demo's services or each other. MongoDB is the managed server (SecantusDB, from
.venv-mongo), reached through pymongo and a mongodb:// URI like any MongoDB;
MONGO_TEST_URI=mongodb://… runs every MongoDB-facing test against that server instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from pymongo import monitoring

from etl.adapters.services import MongoServer, MotoServer, PgCluster, free_port

REPO = Path(__file__).resolve().parents[1]
CHINOOK_SQL = REPO / "tests" / "data" / "chinook" / "Chinook_PostgreSql.sql"
MONGO_VENV = REPO / ".venv-mongo"


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
    from etl.stages.snapshot import take_snapshot

    db = pg.create_db(sql=(REPO / "scripts" / "etl" / "stages" / "sql" / "sample_schema.sql").read_text(encoding="utf-8"))
    return take_snapshot(pg.dsn(db))


@pytest.fixture(scope="module")
def schemas(sample_snapshot):
    """The sample's canonical schemas under the tracked rules."""
    from etl.model.canonical import canonical_schemas
    from etl.model.mapping import build_mapping
    from etl.formats.rules import load_rules

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


def managed_mongo(base: Path, **options) -> MongoServer:
    """A SecantusDB server of the tests' own on a free port, data in `base` (started)."""
    binary = MONGO_VENV / "bin" / "secantusd-py"
    if not binary.is_file():
        setup = subprocess.run(["bash", str(REPO / "scripts" / "setup-mongo-venv.sh")], capture_output=True, text=True)
        if setup.returncode != 0:
            pytest.fail(f"scripts/setup-mongo-venv.sh failed: {setup.stderr.strip()[-800:]}")
    server = MongoServer(base, free_port(), binary, **options)
    server.start()
    return server


@pytest.fixture(scope="session")
def mongo_base_uri():
    """MONGO_TEST_URI when set (your MongoDB), else this session's managed server, started
    with test commands (configureFailPoint) enabled."""
    if os.environ.get("MONGO_TEST_URI"):
        yield os.environ["MONGO_TEST_URI"]
        return
    server = managed_mongo(_scratch("etl-test-mongo-"), test_commands=True)
    try:
        yield server.uri
    finally:
        server.destroy()


class CommandRecorder(monitoring.CommandListener):
    """Every command a pymongo client of this process sends while `active`: (database, name,
    command). Registered once for all clients, so the pipeline's own connections are seen."""

    def __init__(self):
        self.active = False
        self.sent: list[tuple[str, str, dict]] = []

    def started(self, event):
        if self.active:
            self.sent.append((event.database_name, event.command_name, dict(event.command)))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def named(self, *names: str) -> list[dict]:
        return [cmd for _, name, cmd in self.sent if name in names]


RECORDER = CommandRecorder()
monitoring.register(RECORDER)


@pytest.fixture
def commands():
    """The commands the code under test sends to MongoDB (see CommandRecorder)."""
    RECORDER.sent.clear()
    RECORDER.active = True
    try:
        yield RECORDER
    finally:
        RECORDER.active = False
        RECORDER.sent.clear()


# What the managed server is known to do differently from MongoDB, measured: a test that meets
# one of these on that server is an expected failure, and fails if the server stops doing it
# (so the list stays true). The pipeline never relies on either behaviour.
KNOWN_GAPS = {
    "rename-drops-options": ("SecantusDB", "0.7.0b3",
                             "renameCollection drops the collection's validator (MongoDB keeps it); the load "
                             "and the rollback check after every swap and set it again with collMod"),
    "decimal-bounds": ("SecantusDB", "0.7.0b3",
                       "$jsonSchema minimum/maximum are not applied to Decimal128 values (MongoDB applies them); "
                       "the pipeline's validation checks decimal bounds (x-bounds) itself"),
}


def server_has_gap(client, gap: str) -> bool:
    name, version, _ = KNOWN_GAPS[gap]
    info = client.admin.command("buildInfo")
    return name == "SecantusDB" and info.get("secantusVersion") == version


def expect_gap(client, gap: str) -> None:
    """Mark the running test an expected failure when the server has `gap`, else fail it."""
    if server_has_gap(client, gap):
        pytest.xfail(f"{KNOWN_GAPS[gap][0]} {KNOWN_GAPS[gap][1]}: {KNOWN_GAPS[gap][2]}")


# MongoDB's failCommand failpoint: the server's own fault injection (mongod with
# enableTestCommands, the managed server with --enable-test-commands).
FAILPOINT_MESSAGE = "Failing command via 'failCommand' failpoint"


@contextmanager
def fail_command(client, *commands: str, code: int | None = None, close_connection: bool = False,
                 block_ms: int | None = None, times: int | None = 1, skip: int | None = None):
    """Arm `failCommand` for `commands` (on every connection of the server) and disarm it at
    the end. `times` failures then off, or with `skip`, N successes then failures until off."""
    from pymongo.errors import OperationFailure

    data: dict = {"failCommands": list(commands)}
    if code is not None:
        data["errorCode"] = code
    if close_connection:
        data["closeConnection"] = True
    if block_ms is not None:
        data["blockConnection"], data["blockTimeMS"] = True, block_ms
    mode = {"skip": skip} if skip is not None else {"times": times} if times is not None else "alwaysOn"
    try:
        client.admin.command("configureFailPoint", "failCommand", mode=mode, data=data)
    except OperationFailure as exc:
        if exc.code == 59:  # CommandNotFound: a server started without test commands
            pytest.skip("the MongoDB server has no configureFailPoint (start it with test commands enabled)")
        raise
    try:
        yield
    finally:
        client.admin.command("configureFailPoint", "failCommand", mode="off")


@pytest.fixture
def mongo_db(mongo_base_uri):
    """(uri, database name) unique to the test; the database is dropped afterwards."""
    from etl.adapters.mongodb import connect

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
    monkeypatch.setenv("MONGO_MANAGED", "false")  # the session's server, started by the fixture
    monkeypatch.setenv("MONGO_DB_NAME", f"bravo-{uuid.uuid4().hex[:8]}")
    return root


# --- mongodump-layout folders (transformed exports and backups) --------------------------------


def write_dump_folder(folder: Path, collections: dict, *, indexes: dict | None = None,
                      options: dict | None = None, manifest: dict | None = None,
                      entries: dict | None = None) -> Path:
    """Write `collections` ({name: [documents]}) in the mongodump layout: <name>.bson,
    <name>.metadata.json (indexes, options) and manifest.json with counts and sha256, as the
    transform and the backup write them. `manifest` adds top-level keys (version, database…),
    `entries` keys of a collection's entry (its schema, references, archived fields)."""
    import json

    import bson
    from bson import json_util

    from etl.core.fsutil import sha256_file
    from etl.formats.dumpdir import MANIFEST_FORMAT

    folder.mkdir(parents=True, exist_ok=True)
    listed = {}
    for name, docs in collections.items():
        (folder / f"{name}.bson").write_bytes(b"".join(bson.encode(d) for d in docs))
        meta = {"indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"}, *(indexes or {}).get(name, [])],
                "options": (options or {}).get(name, {}), "collectionName": name, "type": "collection"}
        (folder / f"{name}.metadata.json").write_text(json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS))
        listed[name] = {"count": len(docs), "sha256": sha256_file(folder / f"{name}.bson"),
                        "metadata_sha256": sha256_file(folder / f"{name}.metadata.json"),
                        **(entries or {}).get(name, {})}
    (folder / "manifest.json").write_text(json.dumps({"format_version": MANIFEST_FORMAT, **(manifest or {}),
                                                      "collections": listed}, indent=2, default=str))
    return folder


@pytest.fixture
def dump_folder():
    """`write_dump_folder(folder, {name: [docs]}, indexes=…, options=…, manifest=…)`."""
    return write_dump_folder
