"""Acquisition (S3, direct pg_dump, file) and restore, against real PostgreSQL and S3 HTTP."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from etl.stages.acquire import latest_s3_key
from etl.cli import cli
from etl.adapters.services import pg_tool

SMALL_SCHEMA = """
CREATE TABLE advertisers (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO advertisers SELECT g, 'adv ' || g FROM generate_series(1, {n}) g;
"""


def make_dump(pg, tmp_path: Path, n: int, name: str) -> Path:
    db = pg.create_db(sql=SMALL_SCHEMA.format(n=n))
    out = tmp_path / name
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-d", pg.dsn(db), "-f", str(out)], check=True)
    return out


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def error_lines(result) -> list[str]:
    """A failure is one `Error:` line on stderr (progress lines may precede it)."""
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def count_rows(pg, db: str) -> int:
    with psycopg.connect(pg.dsn(db)) as conn:
        return conn.execute("SELECT count(*) FROM advertisers").fetchone()[0]


@pytest.fixture
def s3_env(s3, monkeypatch):
    client, bucket, url = s3
    monkeypatch.setenv("S3_BUCKET", bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", url)
    monkeypatch.setenv("S3_PREFIX", "postgres-exports/")
    return client, bucket


def test_s3_latest_dump_is_acquired_verified_and_restored(project, pg, s3_env, tmp_path):
    client, bucket = s3_env
    old = make_dump(pg, tmp_path, 5, "media_tool-2026-11-24.dump")
    new = make_dump(pg, tmp_path, 7, "media_tool-2026-11-25.dump")
    client.upload_file(str(old), bucket, "postgres-exports/media_tool-2026-11-24.dump")
    client.upload_file(str(new), bucket, "postgres-exports/media_tool-2026-11-25.dump")
    client.put_object(Bucket=bucket, Key="elsewhere/other.dump", Body=b"not under the prefix")
    # An export pushed back later, and a sidecar: newer, under the prefix, never a dump.
    client.put_object(Bucket=bucket, Key="postgres-exports/bravo-1/abc123/manifest.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="postgres-exports/media_tool-2026-11-25.dump.json", Body=b"{}")

    result = run("acquire", "--source", "s3", "--auto-latest")
    assert result.exit_code == 0, result.output
    pointer = json.loads((project / "data/dumps/current.json").read_text())
    assert pointer["s3_key"] == "postgres-exports/media_tool-2026-11-25.dump"
    assert pointer["size"] == new.stat().st_size

    result = run("restore")
    assert result.exit_code == 0, result.output
    assert count_rows(pg, os.environ["LOCAL_PG_DB"]) == 7

    # Nothing new in S3: the pointer and the restore marker keep their mtimes (Make sees no change).
    before = ((project / "data/dumps/current.json").stat().st_mtime_ns, (project / "data/restored.json").stat().st_mtime_ns)
    assert run("acquire", "--source", "s3").exit_code == 0
    assert run("restore").exit_code == 0
    after = ((project / "data/dumps/current.json").stat().st_mtime_ns, (project / "data/restored.json").stat().st_mtime_ns)
    assert before == after


def test_s3_named_key(project, pg, s3_env, tmp_path):
    client, bucket = s3_env
    for n, day in ((3, "24"), (4, "25")):
        client.upload_file(str(make_dump(pg, tmp_path, n, f"d{day}.dump")), bucket, f"postgres-exports/d{day}.dump")
    assert run("acquire", "--key", "postgres-exports/d24.dump").exit_code == 0
    assert run("restore").exit_code == 0
    assert count_rows(pg, os.environ["LOCAL_PG_DB"]) == 3


def test_latest_is_chosen_by_last_modified_not_by_name():
    t1, t2 = datetime(2026, 11, 25, tzinfo=timezone.utc), datetime(2026, 11, 26, tzinfo=timezone.utc)

    class Pages:
        def paginate(self, **_):
            return [{"Contents": [{"Key": "p/z-old.dump", "Size": 10, "LastModified": t1},
                                  {"Key": "p/a-new.dump", "Size": 10, "LastModified": t2},
                                  {"Key": "p/", "Size": 0, "LastModified": t2}]}]

    class Client:
        def get_paginator(self, _):
            return Pages()

    assert latest_s3_key(Client(), "b", "p/")["Key"] == "p/a-new.dump"


def test_corrupt_dump_is_refused_and_previous_state_kept(project, pg, s3_env, tmp_path):
    client, bucket = s3_env
    good = make_dump(pg, tmp_path, 6, "good.dump")
    client.upload_file(str(good), bucket, "postgres-exports/a-good.dump")
    assert run("acquire").exit_code == 0 and run("restore").exit_code == 0
    pointer_before = (project / "data/dumps/current.json").read_bytes()

    truncated = good.read_bytes()[: good.stat().st_size // 2]
    client.put_object(Bucket=bucket, Key="postgres-exports/b-truncated.dump", Body=truncated)
    result = run("acquire", "--key", "postgres-exports/b-truncated.dump")
    assert result.exit_code == 1
    assert "not a valid pg_dump custom-format archive" in result.output
    assert len(error_lines(result)) == 1 and result.stderr.strip().splitlines()[-1].startswith("Error:")
    assert (project / "data/dumps/current.json").read_bytes() == pointer_before
    assert not list((project / "data/dumps").glob(".*.part"))
    assert run("restore").exit_code == 0
    assert count_rows(pg, os.environ["LOCAL_PG_DB"]) == 6


def test_dump_that_fails_to_restore_leaves_database_alone(project, pg, tmp_path, monkeypatch):
    good = make_dump(pg, tmp_path, 4, "good.dump")
    assert run("acquire", "--source", "file", str(good)).exit_code == 0
    assert run("restore").exit_code == 0
    # A valid archive whose restore fails, as real ones do: a CHECK depends on a database-level
    # setting that pg_restore does not carry into the new database, so the COPY is rejected.
    src = pg.create_db()
    pg.execute(src, f'ALTER DATABASE "{src}" SET etl.max_id = \'10\'')
    pg.execute(src, "CREATE TABLE items (id int CHECK (id < current_setting('etl.max_id')::int));"
                    "INSERT INTO items VALUES (1);")
    bad = tmp_path / "bad.dump"
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-d", pg.dsn(src), "-f", str(bad)], check=True)
    assert run("acquire", "--source", "file", str(bad)).exit_code == 0
    result = run("restore")
    assert result.exit_code == 1, result.output
    assert "left as it was" in result.output
    assert count_rows(pg, os.environ["LOCAL_PG_DB"]) == 4


def test_direct_pg_dump_from_production(project, pg, monkeypatch):
    prod = pg.create_db(sql=SMALL_SCHEMA.format(n=9))
    monkeypatch.setenv("PROD_PG_DSN", f"postgresql://postgres@127.0.0.1:{pg.port}/{prod}")
    result = run("acquire", "--source", "direct")
    assert result.exit_code == 0, result.output
    assert json.loads((project / "data/dumps/current.json").read_text())["source"] == "direct"
    assert run("restore").exit_code == 0
    assert count_rows(pg, os.environ["LOCAL_PG_DB"]) == 9


def test_direct_pg_dump_failure_is_one_line_without_password(project, pg, monkeypatch):
    monkeypatch.setenv("PROD_PG_DSN", f"postgresql://etl:hunter2secret@127.0.0.1:{pg.port}/no_such_db")
    result = run("acquire", "--source", "direct")
    assert result.exit_code == 1
    assert error_lines(result) and error_lines(result)[0].startswith("Error: pg_dump failed")
    assert "hunter2secret" not in result.output
    assert not (project / "data/dumps/current.json").exists()


@pytest.mark.parametrize("case, expected", [
    ("empty-prefix", "no dumps under s3://"),
    ("missing-bucket", "NoSuchBucket"),
    ("unreachable", "cannot connect"),
])
def test_s3_failures_are_one_clear_line(project, s3_env, monkeypatch, case, expected):
    if case == "empty-prefix":
        monkeypatch.setenv("S3_PREFIX", "nothing-here/")
    elif case == "missing-bucket":
        monkeypatch.setenv("S3_BUCKET", "no-such-bucket-here")
    else:
        from etl.adapters.services import free_port

        monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    result = run("acquire", "--source", "s3")
    assert result.exit_code == 1
    assert expected in result.output
    assert len(error_lines(result)) == 1 and result.stderr.strip().splitlines()[-1].startswith("Error:")


def test_unreachable_postgres_and_missing_binary(project, pg, tmp_path, monkeypatch):
    good = make_dump(pg, tmp_path, 2, "good.dump")
    assert run("acquire", "--source", "file", str(good)).exit_code == 0
    from etl.adapters.services import free_port

    monkeypatch.setenv("LOCAL_PG_PORT", str(free_port()))
    result = run("restore")
    assert result.exit_code == 1
    assert "is not reachable" in result.output and "services-up" in result.output

    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PG_BINDIR", str(empty))
    monkeypatch.setenv("PATH", str(empty))
    result = run("acquire", "--source", "file", str(good))
    assert result.exit_code == 1
    assert "pg_restore not found" in result.output


def test_missing_dump_file(project):
    result = run("acquire", "--source", "file", "/nonexistent/x.dump")
    assert result.exit_code == 1
    assert "does not exist" in result.output
