"""End to end through the real Makefile: a copy of the tracked tree, this session's PostgreSQL,
S3 server and MongoDB, the sample dump acquired from S3 and Chinook from a file."""

from __future__ import annotations

import json
import os
import re
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
    # The exported documents pass every artifact's contract test: exists, JSON Schema, Pydantic,
    # Zod, TypeScript (tsc --noEmit --strict), validator and indexes, for each collection.
    contract = re.search(r"^(\d+) passed in .*\nContract tests passed", first.stdout, re.M)
    assert contract and int(contract[1]) == 7 * len(source), first.stdout[-3000:]

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

    # Another production database: `make init` drops media_tool's accepted schema and rules, so
    # the first run accepts Chinook's as its initial state (against media_tool's accepted schema
    # it would be 11 new and 12 dropped tables, waiting for a decision).
    init = make(root, env, "init", "YES=1")
    assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
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


# A database of this test's own: a library, nothing like media_tool.
LIBRARY = """
CREATE TYPE copy_state AS ENUM ('on_shelf', 'lent', 'lost');
CREATE TABLE branches (id integer PRIMARY KEY, name text NOT NULL UNIQUE, opened_on date);
CREATE TABLE members (
    id uuid PRIMARY KEY,
    branch_id integer NOT NULL REFERENCES branches (id),
    email text NOT NULL,
    fee numeric(8,2),
    joined_at timestamp with time zone NOT NULL,
    prefs jsonb
);
CREATE TABLE copies (
    branch_id integer REFERENCES branches (id),
    copy_no integer,
    title text NOT NULL,
    state copy_state NOT NULL DEFAULT 'on_shelf',
    lent_to uuid REFERENCES members (id),
    PRIMARY KEY (branch_id, copy_no)
);
INSERT INTO branches SELECT i, 'Branch ' || i, date '2001-01-01' + i * 400 FROM generate_series(1, 4) AS i;
INSERT INTO members
SELECT md5('member' || i)::uuid, 1 + i % 4, 'reader' || i || '@library.example', (i % 7) * 2.5,
       timestamptz '2025-01-01 09:00:00.123456+00' + i * interval '1 day 13 minutes', jsonb_build_object('news', i % 2 = 0)
  FROM generate_series(1, 40) AS i;
INSERT INTO copies
SELECT 1 + i % 4, i, 'Title ' || i, (ARRAY['on_shelf', 'lent', 'lost'])[1 + i % 3]::copy_state,
       CASE WHEN i % 3 = 1 THEN md5('member' || (1 + i % 40))::uuid END
  FROM generate_series(1, 90) AS i;
"""


def test_init_then_all_adopts_a_database_the_project_has_never_seen(tree, pg):
    from etl.stages.init import EMPTY_RULES
    from etl.stages.snapshot import take_snapshot

    root, env, _, _ = tree
    env["LOCAL_PG_DB"] = pg.create_db(sql=LIBRARY)

    # Not at a terminal and no YES=1: refused, one line, nothing removed.
    refused = make(root, env, "init")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[0].startswith("Error: etl init removes the accepted schema")
    assert (root / "schemas" / "accepted.json").is_file()

    init = make(root, env, "init", "YES=1")
    assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
    assert "schemas/accepted.json" in init.stdout and f"database {env['LOCAL_PG_DB']}" in init.stdout

    first = make(root, env, "all", "SOURCE=local")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    accepted = json.loads((root / "schemas" / "accepted.json").read_text())
    assert accepted["hash"] == take_snapshot(pg.dsn(env["LOCAL_PG_DB"]))["hash"]
    assert set(accepted["tables"]) == {"public.branches", "public.members", "public.copies"}
    source = public_tables(pg, env["LOCAL_PG_DB"])
    assert mongo_counts(env) == source == {"branches": 4, "members": 40, "copies": 90}
    client = connect(env["MONGO_URI"])
    copy = client[env["MONGO_DB_NAME"]]["copies"].find_one({"_id": {"branch_id": 2, "copy_no": 1}})
    client.close()
    assert copy["title"] == "Title 1" and copy["state"] == "lent"
    # the artifacts are the new database's, and the contract tests ran on its documents
    assert sorted(p.name for p in (root / "generated" / "zod").iterdir()) == ["branches.ts", "copies.ts", "members.ts"]
    assert (root / ".make" / env["MONGO_DB_NAME"] / "contract.stamp").is_file()
    assert (root / "schemas" / "rules.yaml").read_text() == EMPTY_RULES  # no hand edits, before or after

    again = make(root, env, "all", "SOURCE=local")
    assert again.returncode == 0, again.stderr[-3000:]
    assert mongo_counts(env) == source
