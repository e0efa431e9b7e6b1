"""`etl snapshot`: catalog introspection on a real PostgreSQL, files written only on change,
and one clear line for every kind of bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess

import psycopg
import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.model.diff import diff_snapshots
from etl.core.errors import DatabaseError, SnapshotError
from etl.adapters.services import pg_tool
from etl.stages.snapshot import take_snapshot
from etl.formats.snapshot import FORMAT_VERSION, load_snapshot, save_snapshot

from conftest import CHINOOK_SQL


def _chinook_script() -> str:
    """The published script creates and connects to its own database (DROP/CREATE DATABASE,
    \\c chinook); those lines are dropped so it loads into the database the test chose."""
    text = CHINOOK_SQL.read_text(encoding="utf-8")
    return re.sub(r"(?m)^(DROP DATABASE|CREATE DATABASE|\\c ).*$", "", text)


@pytest.fixture(scope="module")
def chinook(pg):
    db = pg.create_db("snap_chinook")
    # The script is UTF-8 (names like "Antônio Carlos Jobim"); say so rather than trust the locale.
    proc = subprocess.run([pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.dsn(db)],
                          input=_chinook_script(), capture_output=True, text=True, encoding="utf-8",
                          env={**os.environ, "PGCLIENTENCODING": "UTF8"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return db


def test_chinook_snapshots_and_resnapshots_with_no_change(pg, chinook):
    first = take_snapshot(pg.dsn(chinook))
    second = take_snapshot(pg.dsn(chinook))
    assert first["hash"] == second["hash"]
    assert diff_snapshots(first, second) == []
    assert first["format_version"] == FORMAT_VERSION and first["database"] == chinook
    assert len(first["tables"]) == 11
    track = first["tables"]["public.track"]
    assert track["primary_key"] == {"name": "track_pkey", "columns": ["track_id"]}
    assert {fk["ref_table"] for fk in track["foreign_keys"]} == {"public.album", "public.genre", "public.media_type"}
    assert {ix["name"] for ix in track["indexes"]} == {"track_album_id_idx", "track_genre_id_idx",
                                                       "track_media_type_id_idx"}
    price = next(c for c in track["columns"] if c["name"] == "unit_price")
    assert price["type"] == "numeric(10,2)" and price["nullable"] is False and price["position"] == 9
    composite = first["tables"]["public.playlist_track"]["primary_key"]["columns"]
    assert composite == ["playlist_id", "track_id"]
    with psycopg.connect(pg.dsn(chinook)) as conn:  # the data arrived as UTF-8, not mangled
        assert conn.execute("SELECT name FROM artist WHERE artist_id = 6").fetchone()[0] == "Antônio Carlos Jobim"


SCHEMA = """
CREATE EXTENSION citext;
CREATE TYPE campaign_status AS ENUM ('draft', 'active');
CREATE DOMAIN money_amount AS numeric(14,2) NOT NULL CHECK (VALUE >= 0);
CREATE TABLE campaigns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status campaign_status NOT NULL DEFAULT 'draft',
    budget money_amount,
    tags text[],
    email citext,
    budget_x2 numeric GENERATED ALWAYS AS (budget * 2) STORED
);
COMMENT ON TABLE campaigns IS 'what advertisers buy';
CREATE TABLE metrics (day date NOT NULL, clicks integer) PARTITION BY RANGE (day);
CREATE TABLE metrics_2026 PARTITION OF metrics FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE VIEW active AS SELECT * FROM campaigns WHERE status = 'active';
CREATE MATERIALIZED VIEW counts AS SELECT count(*) FROM campaigns;
CREATE SCHEMA other;
CREATE TABLE other.campaigns (id integer PRIMARY KEY);
"""


@pytest.fixture(scope="module")
def rich_db(pg):
    return pg.create_db("snap_rich", SCHEMA)


def test_snapshot_describes_types_partitions_views(pg, rich_db):
    snap = take_snapshot(pg.dsn(rich_db))
    assert set(snap["tables"]) == {"public.campaigns", "public.metrics", "other.campaigns"}
    assert snap["views"] == {"public.active": {"kind": "view"}, "public.counts": {"kind": "materialized_view"}}
    assert snap["enums"] == {"public.campaign_status": ["draft", "active"]}
    assert snap["domains"]["public.money_amount"]["base_type"] == "numeric(14,2)"
    assert snap["domains"]["public.money_amount"]["nullable"] is False
    metrics = snap["tables"]["public.metrics"]
    assert metrics["kind"] == "partitioned"
    assert [p["name"] for p in metrics["partitions"]] == ["public.metrics_2026"]
    cols = {c["name"]: c for c in snap["tables"]["public.campaigns"]["columns"]}
    # qualified whatever the search_path, so the hash does not depend on the role's settings
    assert cols["status"]["type"] == "public.campaign_status" and cols["status"]["type_kind"] == "enum"
    assert cols["budget"]["type_kind"] == "domain" and cols["budget"]["base_type"] == "numeric(14,2)"
    assert cols["tags"]["type_kind"] == "array" and cols["tags"]["element_type"] == "text"
    assert cols["email"]["type"] == "public.citext"
    assert cols["id"]["identity"] == "always" and cols["id"]["default"] is None
    assert cols["budget_x2"]["generated"] is not None
    assert snap["tables"]["public.campaigns"]["comment"] == "what advertisers buy"
    # the extension's own objects are not part of the schema
    assert not any("citext" in name for name in snap["domains"]) and "public.citext" not in snap["enums"]


def test_hash_ignores_search_path(pg, rich_db):
    pg.execute(rich_db, "ALTER ROLE postgres IN DATABASE " + rich_db + " SET search_path = other, public")
    try:
        again = take_snapshot(pg.dsn(rich_db))
    finally:
        pg.execute(rich_db, "ALTER ROLE postgres IN DATABASE " + rich_db + " RESET search_path")
    assert again["hash"] == take_snapshot(pg.dsn(rich_db))["hash"]


def _env(pg, db, project):
    return pg.env(db) | {"ETL_ROOT": str(project)}


def test_snapshot_command_writes_only_when_the_hash_changes(pg, project, monkeypatch):
    db = pg.create_db(sql="CREATE TABLE t (id integer PRIMARY KEY);")
    monkeypatch.setenv("LOCAL_PG_DB", db)
    runner = CliRunner()
    result = runner.invoke(cli, ["snapshot"])
    assert result.exit_code == 0, result.output
    current = project / "schemas" / "snapshots" / "current.json"
    history = project / "schemas" / "snapshots" / "history"
    first = json.loads(current.read_text())
    assert "1 tables" in result.output and first["hash"][:12] in result.output
    assert [p.name for p in history.iterdir()] == [f"{first['taken_at'].replace('-', '').replace(':', '')}-{first['hash'][:12]}.json"]
    mtime = current.stat().st_mtime_ns

    result = runner.invoke(cli, ["snapshot"])
    assert result.exit_code == 0 and "unchanged" in result.output
    assert current.stat().st_mtime_ns == mtime and len(list(history.iterdir())) == 1

    pg.execute(db, "ALTER TABLE t ADD COLUMN name text")
    result = runner.invoke(cli, ["snapshot"])
    assert result.exit_code == 0 and "written" in result.output
    assert json.loads(current.read_text())["hash"] != first["hash"]
    assert len(list(history.iterdir())) == 2


def test_save_snapshot_is_loadable(pg, rich_db, tmp_path):
    snap = take_snapshot(pg.dsn(rich_db))
    path, written = save_snapshot(snap, tmp_path)
    assert written and load_snapshot(path) == snap


@pytest.mark.parametrize("content,message", [
    ("{not json", "is corrupt"),
    ('{"format_version": 99, "tables": {}, "hash": "x"}', "format_version 99"),
    ('{"format_version": 1, "tables": {}, "hash": "0000"}', "does not match its hash"),
    ('[1, 2]', "not a schema snapshot"),
])
def test_load_snapshot_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "snap.json"
    path.write_text(content)
    with pytest.raises(SnapshotError, match=message):
        load_snapshot(path)


def test_missing_snapshot_says_what_to_run(tmp_path):
    with pytest.raises(SnapshotError, match="does not exist") as err:
        load_snapshot(tmp_path / "none.json")
    assert "etl snapshot" in err.value.line()


def test_unreachable_database_is_one_line_without_the_password(project, monkeypatch):
    from etl.adapters.services import free_port

    port = free_port()
    monkeypatch.setenv("LOCAL_PG_PORT", str(port))
    monkeypatch.setenv("LOCAL_PG_PASSWORD", "s3cret-pw")
    result = CliRunner().invoke(cli, ["snapshot"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: PostgreSQL at 127.0.0.1:") and f":{port}/" in lines[0]
    assert "Connection refused" in lines[0]
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output


def test_missing_database_is_a_database_error(pg):
    with pytest.raises(DatabaseError, match="not reachable.*does not exist"):
        take_snapshot(pg.dsn("no_such_database_here"))


def test_views_are_described_only_when_configured(pg, rich_db, project, monkeypatch):
    snap = take_snapshot(pg.dsn(rich_db), load_views=["public.active"])
    active = snap["tables"]["public.active"]
    assert active["kind"] == "view" and active["primary_key"] is None
    assert [c["name"] for c in active["columns"]][:3] == ["id", "status", "budget"]
    assert "public.counts" not in snap["tables"] and set(snap["views"]) == {"public.active", "public.counts"}

    monkeypatch.setenv("LOCAL_PG_DB", rich_db)
    monkeypatch.setenv("ETL_LOAD_VIEWS", "public.active, public.nope")
    result = CliRunner().invoke(cli, ["snapshot"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: ETL_LOAD_VIEWS names public.nope, which is not a view in {rich_db} "
                                     "(use schema.name as the snapshot lists views)")
