"""End to end through the real Makefile: a copy of the tracked tree, this session's PostgreSQL,
S3 server and MongoDB, the sample dump acquired from S3 and Chinook from a file."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import CHINOOK_SQL, REPO
from etl.adapters.mongodb import connect
from etl.adapters.services import pg_tool

pytestmark = pytest.mark.slow


def tracked_tree(dest: Path) -> Path:
    """The tracked files as a fresh clone has them, sharing the installed .venv/node_modules."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if not name or not (REPO / name).exists():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    for shared in (".venv", "node_modules", ".venv-mongo"):
        if (REPO / shared).exists():
            (dest / shared).symlink_to(REPO / shared)
    # The installed package points at REPO's sources; the copy runs them with ETL_ROOT=dest.
    return dest


def public_tables(pg, db: str) -> dict[str, int]:
    with psycopg.connect(pg.dsn(db)) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1")]
        return {name: conn.execute(f'SELECT count(*) FROM public."{name}"').fetchone()[0] for name in names}


@pytest.fixture
def tree(tmp_path, pg, s3, mongo_base_uri, monkeypatch):
    root = tracked_tree(tmp_path / "clone")
    client, bucket, url = s3
    db = f"media_tool_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **pg.env(db), ETL_ROOT=str(root), S3_ENDPOINT_URL=url, S3_BUCKET=bucket,
               MONGO_URI=mongo_base_uri, MONGO_MANAGED="false", MONGO_DB_NAME=f"bravo-{uuid.uuid4().hex[:8]}",
               ETL_SCHEMA_STRICT_MODE="false")
    env.pop("MAKEFLAGS", None)
    yield root, env, client, bucket
    mongo = connect(mongo_base_uri)
    mongo.drop_database(env["MONGO_DB_NAME"])
    mongo.close()


def make(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    # BOOT= : the copy shares the installed .venv, which must not be reinstalled from here.
    return subprocess.run(["make", "BOOT=", *args], cwd=root, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)


def mongo_counts(env: dict) -> dict[str, int]:
    client = connect(env["MONGO_URI"])
    db = client[env["MONGO_DB_NAME"]]
    counts = {name: db[name].count_documents({}) for name in db.list_collection_names()
              if not name.startswith(("etl_", "system."))}
    client.close()
    return counts


def test_sample_from_s3_end_to_end_then_nothing_to_do(tree, pg):
    root, env, client, bucket = tree
    dump = root / "sample.dump"
    built = subprocess.run([str(REPO / ".venv/bin/etl"), "sample", "--out", str(dump), "--metrics-rows", "3000"],
                           cwd=root, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    client.upload_file(str(dump), bucket, "postgres-exports/media_tool-2026-11-26.dump")

    first = make(root, env, "all")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    source = public_tables(pg, env["LOCAL_PG_DB"])
    assert len(source) >= 10
    counts = mongo_counts(env)
    assert {name: counts.get(name) for name in source} == source

    second = make(root, env, "all")
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in ("restore:", "transform:", "load:"):
        assert f"{stage} " not in second.stdout or "nothing to do" in second.stdout
    assert mongo_counts(env) == counts


def test_chinook_from_a_file_end_to_end(tree, pg):
    root, env, _, _ = tree
    chinook = pg.create_db()
    # The script creates and connects to its own database; run its body in ours instead.
    body = "\n".join(line for line in CHINOOK_SQL.read_text(encoding="utf-8").splitlines()
                     if not line.startswith(("DROP DATABASE", "CREATE DATABASE", "\\c")))
    script = root / "chinook.sql"
    script.write_text(body, encoding="utf-8")
    subprocess.run([pg_tool("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.dsn(chinook), "-f", str(script)],
                   check=True, capture_output=True)
    dump = root / "chinook.dump"
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-d", pg.dsn(chinook), "-f", str(dump)], check=True)

    # Another production database: no accepted schema and none of media_tool's rules, so the
    # first run accepts Chinook's as its initial state (against media_tool's accepted schema it
    # would be 11 new and 12 dropped tables, waiting for a decision).
    for tracked in ("schemas/accepted.json", "schemas/mapping.json", "schemas/rules.yaml"):
        (root / tracked).unlink()
    shutil.rmtree(root / "schemas" / "collections")
    proc = make(root, env, "all", "SOURCE=file", f"DUMP={dump}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    source = public_tables(pg, env["LOCAL_PG_DB"])
    assert set(source) == {"album", "artist", "customer", "employee", "genre", "invoice", "invoice_line",
                           "media_type", "playlist", "playlist_track", "track"}
    counts = mongo_counts(env)
    assert {name: counts.get(name) for name in source} == source
    assert source["track"] == 3503
    client = connect(env["MONGO_URI"])
    # playlist_track has a composite key: its _id is a sub-document.
    doc = client[env["MONGO_DB_NAME"]]["playlist_track"].find_one()
    assert set(doc["_id"]) == {"playlist_id", "track_id"}
    client.close()
