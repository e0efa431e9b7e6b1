"""The synthetic media_tool sample: generated in a real PostgreSQL, dumped with pg_dump,
restored again to check what the dump holds, and uploaded to a real S3 endpoint (moto)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from etl.cli import cli
from etl.core.config import load_config
from etl.stages.sample import SampleParams, build_sample, default_out, seed_s3, sidecar_path, split_steps, table_stats
from etl.adapters.services import pg_tool

SEED = 7
METRICS = 2000  # small: the default 100k is measured, not tested

# Tables whose size the generator fixes; the others depend on the seed.
FIXED_ROWS = {"public.agencies": 12, "public.advertisers": 150, "public.users": 90, "public.platforms": 14,
              "public.campaigns": 800, "public.creatives": 900, "public.daily_metrics": METRICS,
              "public.platform_sync_log": 2510}


def restore(pg, dump: Path) -> str:
    db = pg.create_db()
    proc = subprocess.run([pg_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", pg.dsn(db), str(dump)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return db


def query(pg, db: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(pg.dsn(db)) as conn:
        return conn.execute(sql, params).fetchall()


def column_types(pg, db: str, table: str) -> dict[str, str]:
    return dict(query(pg, db, """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                                  WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""", (table,)))


@pytest.fixture(scope="module")
def base(pg, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "media_tool.dump"
    result = build_sample(pg.dsn(), out, SEED, METRICS, "base")
    return result, restore(pg, out)


@pytest.fixture(scope="module")
def changed(pg, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample-changed") / "media_tool-changed.dump"
    result = build_sample(pg.dsn(), out, SEED, METRICS, "changed")
    return result, restore(pg, out)


def test_dump_is_a_custom_format_archive_with_every_table(base):
    result, _ = base
    proc = subprocess.run([pg_tool("pg_restore"), "--list", str(result.path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[-2] for line in proc.stdout.splitlines() if " TABLE DATA public " in line}
    assert listed == {name.split(".")[1] for name in result.tables}
    assert len(result.tables) >= 10


def test_restored_dump_holds_exactly_the_generated_rows(pg, base):
    result, db = base
    for table, rows in FIXED_ROWS.items():
        assert result.tables[table]["rows"] == rows, table
    assert all(t["rows"] > 0 for t in result.tables.values())
    with psycopg.connect(pg.dsn(db)) as conn:
        assert table_stats(conn) == result.tables
    side = json.loads(sidecar_path(result.path).read_text())
    assert side["params"]["seed"] == SEED and side["params"]["metrics_rows"] == METRICS
    assert side["dump"]["size"] == result.path.stat().st_size == result.size


def test_schema_has_the_shapes_the_pipeline_must_handle(pg, base):
    _, db = base
    campaigns = column_types(pg, db, "campaigns")
    assert campaigns["budget"] == "numeric(14,2)"
    assert campaigns["status"] == "campaign_status"
    assert campaigns["tags"] == "text[]"
    assert campaigns["targeting"] == "jsonb"
    assert campaigns["owner_id"] == "uuid"
    assert campaigns["created_at"] == "timestamp with time zone"
    assert campaigns["start_date"] == "date"
    assert column_types(pg, db, "line_items")["rate"] == "numeric(10,4)"
    assert column_types(pg, db, "users")["email"] == "email_address"  # a domain
    assert column_types(pg, db, "daily_metrics")["impressions"] == "bigint"
    assert column_types(pg, db, "platforms")["is_active"] == "boolean"

    pks = dict(query(pg, db, """SELECT conrelid::regclass::text, array_agg(a.attname ORDER BY k.ord)::text
                                  FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                                  JOIN pg_attribute a ON a.attnum = k.attnum
                                 WHERE c.contype = 'p' AND a.attrelid = c.conrelid GROUP BY 1"""))
    assert pks["daily_metrics"] == "{media_buy_id,metric_date}"
    assert pks["campaign_users"] == "{campaign_id,user_id}"
    assert "platform_sync_log" not in pks
    # A key-less table in production collects exact duplicates; the sample has some.
    assert query(pg, db, "SELECT count(*) - count(DISTINCT s::text) FROM platform_sync_log s")[0][0] > 0

    fks = set(query(pg, db, """SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
                                WHERE contype = 'f'"""))
    chain = {("advertisers", "agencies"), ("campaigns", "advertisers"), ("line_items", "campaigns"),
             ("media_buys", "line_items"), ("media_buys", "platforms"), ("daily_metrics", "media_buys"),
             ("campaigns", "users")}
    assert chain <= fks
    kinds = {k for (k,) in query(pg, db, "SELECT DISTINCT contype::text FROM pg_constraint"
                                         " WHERE connamespace = 'public'::regnamespace")}
    assert {"p", "f", "u", "c"} <= kinds
    plain = query(pg, db, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE '%\\_idx'")
    assert plain[0][0] >= 5

    nulls = query(pg, db, """SELECT count(*) FILTER (WHERE end_date IS NULL),
                                    count(*) FILTER (WHERE legacy_field IS NULL),
                                    count(*) FILTER (WHERE targeting IS NULL) FROM campaigns""")[0]
    assert all(0 < n < 800 for n in nulls)
    nested = query(pg, db, "SELECT count(*) FROM campaigns"
                           " WHERE jsonb_typeof(targeting -> 'geo' -> 'countries') = 'array'")
    assert nested[0][0] > 0


def test_same_seed_same_data_and_intact_dump_is_not_rebuilt(pg, base, tmp_path):
    result, _ = base
    copy = tmp_path / "media_tool.dump"
    shutil.copy(result.path, copy)
    shutil.copy(sidecar_path(result.path), sidecar_path(copy))

    kept = build_sample(pg.dsn(), copy, SEED, METRICS, "base")
    assert not kept.built and kept.tables == result.tables

    copy.write_bytes(copy.read_bytes()[:1000])  # a truncated dump no longer matches its sidecar
    again = build_sample(pg.dsn(), copy, SEED, METRICS, "base")
    assert again.built
    assert again.tables == result.tables  # byte-for-byte the same rows, by checksum


def test_another_seed_gives_other_data(pg, base, tmp_path):
    result, _ = base
    other = build_sample(pg.dsn(), tmp_path / "other.dump", SEED + 1, METRICS, "base")
    differs = [t for t in result.tables if other.tables[t]["checksum"] != result.tables[t]["checksum"]]
    # platforms is a fixed list; everything generated must move with the seed.
    assert set(result.tables) - set(differs) == {"public.platforms"}


def test_changed_variant_differs_only_as_documented(pg, base, changed):
    base_result, _ = base
    result, db = changed
    campaigns = column_types(pg, db, "campaigns")
    assert campaigns["performance_score"] == "numeric(5,2)"
    assert "legacy_field" not in campaigns
    assert column_types(pg, db, "line_items")["rate"] == "text"
    assert column_types(pg, db, "advertisers")["name"] == "character varying(255)"
    assert "cancelled" in query(pg, db, "SELECT enum_range(NULL::campaign_status)::text")[0][0]
    assert query(pg, db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'media_buys_external_id_idx'")[0][0] == 1
    assert set(result.tables) - set(base_result.tables) == {"public.audiences"}
    same = {t for t in base_result.tables if result.tables[t] == base_result.tables[t]}
    assert set(base_result.tables) - same == {"public.campaigns", "public.line_items"}
    # The lossy type change has values a number column could not take back.
    assert query(pg, db, "SELECT count(*) FROM line_items WHERE rate LIKE '% net'")[0][0] > 0
    doc = (Path(__file__).resolve().parents[1] / "docs" / "sample-data.md").read_text()
    for name in ("performance_score", "legacy_field", "line_items.rate", "varchar(255)", "cancelled", "audiences",
                 "media_buys_external_id_idx"):
        assert name in doc, f"docs/sample-data.md does not describe {name}"


def test_upload_creates_bucket_and_is_idempotent(base, s3, monkeypatch, tmp_path):
    client, _, endpoint = s3
    result, _ = base
    bucket = f"sample-seed-{uuid.uuid4().hex[:10]}"  # not created yet: seed_s3 must make it
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("S3_BUCKET", bucket)
    monkeypatch.setenv("S3_PREFIX", "postgres-exports")
    cfg = load_config(root=tmp_path)

    first = seed_s3(cfg, result.path)
    assert first.uploaded
    assert first.key == f"postgres-exports/{SampleParams(SEED, METRICS, 'base').object_name}"
    head = client.head_object(Bucket=bucket, Key=first.key)
    assert head["ContentLength"] == result.size
    assert head["Metadata"]["sha256"] == result.sha256

    second = seed_s3(cfg, result.path)
    assert not second.uploaded and second.key == first.key
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [first.key]

    changed_dump = tmp_path / "x.dump"
    changed_dump.write_bytes(result.path.read_bytes() + b"\0")
    third = seed_s3(cfg, changed_dump, key=first.key)
    assert third.uploaded  # same key, other content: replaced, not skipped
    assert client.head_object(Bucket=bucket, Key=first.key)["Metadata"]["sha256"] == third.sha256


def test_cli_builds_uploads_then_does_nothing(project, s3, monkeypatch):
    client, bucket, _ = s3
    monkeypatch.setenv("S3_BUCKET", bucket)
    runner = CliRunner()
    first = runner.invoke(cli, ["sample", "--metrics-rows", "300", "--seed", "3", "--upload"])
    assert first.exit_code == 0, first.output
    assert "built in" in first.output and "uploaded" in first.output
    dump = default_out("base")
    assert dump == project / "data" / "sample" / "media_tool.dump" and dump.is_file()
    mtime = dump.stat().st_mtime_ns

    second = runner.invoke(cli, ["sample", "--metrics-rows", "300", "--seed", "3", "--upload"])
    assert second.exit_code == 0, second.output
    assert "up to date" in second.output and "not uploaded again" in second.output
    assert dump.stat().st_mtime_ns == mtime
    assert len(client.list_objects_v2(Bucket=bucket)["Contents"]) == 1


def test_unreachable_postgres_is_one_line_without_the_password(project, monkeypatch):
    from etl.adapters.services import free_port

    monkeypatch.setenv("LOCAL_PG_PORT", str(free_port()))
    monkeypatch.setenv("LOCAL_PG_PASSWORD", "hunter2-secret")
    result = CliRunner().invoke(cli, ["sample", "--metrics-rows", "10"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: cannot connect to PostgreSQL")
    assert "Traceback" not in result.output and "hunter2-secret" not in result.output


def test_upload_without_a_dump_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    from etl.core.errors import SampleError

    with pytest.raises(SampleError, match="no dump at"):
        seed_s3(load_config(root=tmp_path), tmp_path / "missing.dump")


def test_split_steps_keeps_order_and_statements_before_the_first_marker():
    text = ("-- intro\nCREATE TABLE a ();\n-- @step one\nSELECT 1;\n"
            "-- @step empty\n-- only a comment\n-- @step two\nSELECT 2;\n")
    assert split_steps(text, "schema") == [("schema", "-- intro\nCREATE TABLE a ();"), ("one", "SELECT 1;"),
                                           ("two", "SELECT 2;")]


def test_detector_finds_exactly_the_documented_changes(pg, base, changed):
    from etl.stages.detect import build_report
    from etl.stages.snapshot import take_snapshot

    report = build_report(take_snapshot(pg.dsn(changed[1])), take_snapshot(pg.dsn(base[1])))
    found = {(c["kind"], c["table"], c.get("column"), c["classification"]) for c in report["changes"]}
    assert found == {
        ("column_added", "public.campaigns", "performance_score", "safe"),
        ("column_type_changed", "public.line_items", "rate", "review"),
        ("column_removed", "public.campaigns", "legacy_field", "review"),
        ("column_type_changed", "public.advertisers", "name", "safe"),
        ("enum_value_added", "public.campaigns", "status", "safe"),
        ("table_added", "public.audiences", None, "safe"),
        ("foreign_key_added", "public.audiences", "advertiser_id", "safe"),
        ("index_added", "public.media_buys", "external_id", "safe"),
    }
    assert report["warnings"] == []  # every type in the sample is one the pipeline knows


def test_failed_generation_keeps_the_previous_dump_and_drops_the_scratch_database(pg, base, tmp_path, monkeypatch):
    import etl.stages.sample as sample
    from etl.core.errors import SampleError

    result, _ = base
    sql_dir = tmp_path / "sql"
    shutil.copytree(sample.SQL_DIR, sql_dir)
    with open(sql_dir / "sample_data.sql", "a", encoding="utf-8") as fh:
        fh.write("\n-- @step broken\nINSERT INTO campaigns (id) VALUES (1);\n")
    monkeypatch.setattr(sample, "SQL_DIR", sql_dir)
    out = tmp_path / "media_tool.dump"
    shutil.copy(result.path, out)
    before = out.read_bytes()

    with pytest.raises(SampleError, match=r"sample_data\.sql step 'broken': null value in column"):
        build_sample(pg.dsn(), out, SEED, METRICS, "base")
    assert out.read_bytes() == before
    assert list(tmp_path.glob(".media_tool.dump.*")) == []
    leftover = query(pg, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'media\\_tool\\_sample\\_%'")
    assert leftover == []


def test_uploaded_sample_travels_through_acquire_and_restore_unchanged(project, pg, s3, monkeypatch):
    _, bucket, _ = s3
    monkeypatch.setenv("S3_BUCKET", bucket)
    runner = CliRunner()
    built = runner.invoke(cli, ["sample", "--metrics-rows", "400", "--seed", "11", "--upload"])
    assert built.exit_code == 0, built.output
    for args in (["acquire", "--source", "s3", "--auto-latest"], ["restore", "-j", "1"]):
        step = runner.invoke(cli, args)
        assert step.exit_code == 0, step.output
    side = json.loads(sidecar_path(default_out("base")).read_text())
    cfg = load_config()
    with psycopg.connect(pg.dsn(cfg["LOCAL_PG_DB"])) as conn:
        assert table_stats(conn) == side["tables"]


@pytest.mark.parametrize("sidecar", ["[1, 2]", "{not json", '{"format_version": 1, "dump": "x"}'])
def test_unreadable_sidecar_means_rebuild_not_crash(pg, base, tmp_path, sidecar):
    from etl.stages.sample import up_to_date

    result, _ = base
    copy = tmp_path / "media_tool.dump"
    shutil.copy(result.path, copy)
    sidecar_path(copy).write_text(sidecar)
    assert up_to_date(copy, SampleParams(SEED, METRICS, "base")) is None
    shutil.copy(sidecar_path(result.path), sidecar_path(copy))
    assert up_to_date(copy, SampleParams(SEED, METRICS, "base")) is not None
    assert up_to_date(copy, SampleParams(SEED, METRICS + 1, "base")) is None
