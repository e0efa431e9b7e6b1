"""The anomaly guard: its verdict on counts and timestamps, the settings that steer it, what it
reads from a real PostgreSQL and MongoDB, and, through the real Makefile, a dump whose
daily_metrics collapsed from 2,000 rows to 10: exit 5 with MongoDB unchanged, then loaded
once a person accepts it, with the acceptance in the audit record."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from etl.config import load_config
from etl.errors import ConfigError
from etl.guard import evaluate, gather, parse_accept, pct

from conftest import REPO
from test_e2e import make, tree  # noqa: F401 - `tree` is a fixture
from test_plan import build_sample, last_run, plan

ETL = REPO / ".venv" / "bin" / "etl"


def verdict(before, after, limit=0.5, **kw):
    return evaluate("bravo-1", before, after, default_limit=limit, **kw)


def test_a_drop_beyond_the_limit_stops_and_names_collection_and_amount():
    report = verdict({"daily_metrics": 2000, "campaigns": 800}, {"daily_metrics": 10, "campaigns": 800})
    assert [c.collection for c in report.stopped] == ["daily_metrics"]
    assert report.stop_message().startswith("the new dump looks wrong: daily_metrics shrank by 99.5% "
                                            "(2,000 → 10 documents), more than the 50% allowed")
    assert "MongoDB was not touched" in report.stop_message()


@pytest.mark.parametrize("before, after, stops", [
    (1000, 500, False),   # exactly the limit is allowed
    (1000, 499, True),
    (1000, 1500, False),  # growth is never a problem
    (0, 0, False),        # was empty, stays empty
    (None, 0, False),     # a new collection
    (5, 0, True),         # became empty: whatever the limit
])
def test_the_limit_is_a_fraction_of_the_count_in_mongodb(before, after, stops):
    report = verdict({"c": before} if before is not None else {}, {"c": after}, limit=0.5)
    assert bool(report.stopped) is stops


def test_empty_stops_even_with_a_limit_of_100_percent_and_per_collection_limits_apply():
    report = verdict({"a": 10, "b": 10, "c": 10}, {"a": 1, "b": 1, "c": 0}, limit=0.5,
                     limits={"a": 0.95, "c": 1.0})
    assert [c.collection for c in report.stopped] == ["b", "c"]
    assert "would become empty (10 → 0 documents)" in report.checks[2].problems[0]
    assert report.as_dict()["collections"]["a"]["limit"] == "95%"


def test_a_newest_timestamp_that_goes_back_stops():
    now = datetime(2025, 9, 30, 12, tzinfo=timezone.utc)
    report = verdict({"campaigns": 800}, {"campaigns": 800}, newest_fields={"campaigns": "updated_at"},
                     newest_before={"campaigns": now}, newest_after={"campaigns": now - timedelta(days=3)})
    assert report.stopped and "newest updated_at went back from 2025-09-30T12:00:00.000Z" in report.stopped[0].problems[0]
    # The same moment at another precision (PostgreSQL keeps microseconds, BSON milliseconds).
    same = verdict({"campaigns": 800}, {"campaigns": 800}, newest_fields={"campaigns": "updated_at"},
                   newest_before={"campaigns": now}, newest_after={"campaigns": now + timedelta(microseconds=400)})
    assert not same.stopped


def test_accepting_lets_it_through_and_records_who():
    report = verdict({"daily_metrics": 2000}, {"daily_metrics": 10}, accept=["daily_metrics"], accepted_by="alice")
    assert report.stopped == []
    record = report.as_dict()
    assert record["accepted"][0]["collection"] == "daily_metrics" and record["accepted"][0]["accepted_by"] == "alice"
    assert record["accepted"][0]["accepted_at"].endswith("Z")
    assert record["collections"]["daily_metrics"]["status"] == "accepted"


def test_accept_lists_and_percentages_parse():
    assert parse_accept(["daily_metrics, campaigns", "daily_metrics"]) == ["daily_metrics", "campaigns"]
    assert pct(0.995) == "99.5%" and pct(0.5) == "50%"


@pytest.mark.parametrize("key, value, message", [
    ("ETL_GUARD_MAX_SHRINK", "half", "ETL_GUARD_MAX_SHRINK (from environment): expected a percentage such as 50%"),
    ("ETL_GUARD_MAX_SHRINK", "150%", "between 0% and 100%"),
    ("ETL_GUARD_MAX_SHRINK_COLLECTIONS", "daily_metrics:90", "expected collection=percent"),
])
def test_bad_guard_settings_are_one_line_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(environ={key: value}, root=REPO)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_guard_settings_parse():
    cfg = load_config(environ={"ETL_GUARD_MAX_SHRINK": "80", "ETL_GUARD_MAX_SHRINK_COLLECTIONS": "a=90%, b=100%"},
                      root=REPO)
    assert cfg["ETL_GUARD_MAX_SHRINK"] == 0.8
    assert cfg["ETL_GUARD_MAX_SHRINK_COLLECTIONS"] == {"a": 0.9, "b": 1.0}
    assert load_config(environ={}, root=REPO)["ETL_GUARD_MAX_SHRINK"] == 0.5


def test_gather_reads_counts_and_newest_timestamps_from_the_servers(pg, mongo_db, monkeypatch):
    """Against a real PostgreSQL table and MongoDB collection: the newest updated_at of the
    rows to load is older than the one loaded, and the count dropped."""
    from etl.mongo import connect

    uri, name = mongo_db
    db = pg.create_db(sql="CREATE TABLE campaigns (id int PRIMARY KEY, updated_at timestamptz NOT NULL);"
                          "INSERT INTO campaigns SELECT g, '2025-09-01'::timestamptz + g * interval '1 hour' "
                          "FROM generate_series(1, 3) g")
    client = connect(uri)
    client[name]["campaigns"].insert_many([{"_id": i, "updated_at": datetime(2025, 9, 30, tzinfo=timezone.utc)}
                                           for i in range(10)])
    mapping = {"collections": {"campaigns": {"table": "public.campaigns", "fields": [
        {"name": "_id", "column": "id", "bson": "int"},
        {"name": "updated_at", "column": "updated_at", "bson": "date"}]}}}
    cfg = load_config(environ={"MONGO_URI": uri}, root=REPO)
    before = client[name]["campaigns"].find_one()
    report = gather(cfg, name, {"campaigns": 3}, mapping, pg.dsn(db))
    assert [c.collection for c in report.stopped] == ["campaigns"]
    problems = report.stopped[0].problems
    assert problems[0].startswith("shrank by 70% (10 → 3 documents)")
    assert problems[1] == ("newest updated_at went back from 2025-09-30T00:00:00.000Z to "
                           "2025-09-01T03:00:00.000Z (an older dump?)")
    assert client[name]["campaigns"].count_documents({}) == 10 and client[name]["campaigns"].find_one() == before
    with pytest.raises(Exception) as err:
        gather(cfg, name, {"campaigns": 3}, mapping, pg.dsn(db), accept=["campaign"])
    assert "--accept-shrink names 'campaign', which is not a collection of this load" in str(err.value)
    client.close()


# --- through the Makefile ------------------------------------------------------------------------

def _state(env) -> dict:
    """Every collection's documents (raw BSON, sorted) and options, to prove MongoDB unchanged."""
    import hashlib

    from etl.mongo import connect

    client = connect(env["MONGO_URI"])
    try:
        db = client[env["MONGO_DB_NAME"]]
        out = {}
        for name in sorted(db.list_collection_names()):
            if name == "etl_audit":
                continue
            raw = sorted(hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest() for d in db[name].find())
            info = db.command("listCollections", filter={"name": name})["cursor"]["firstBatch"][0]
            out[name] = (len(raw), hashlib.sha256("".join(raw).encode()).hexdigest(),
                         json.dumps(info.get("options"), default=str, sort_keys=True),
                         sorted(ix["name"] for ix in db[name].list_indexes()))
        return out
    finally:
        client.close()


@pytest.mark.slow
def test_a_collapsed_table_stops_the_run_until_a_person_accepts_it(tree):
    root, env, s3client, bucket = tree
    base = build_sample(root, env, "base.dump", "--metrics-rows", "2000")
    s3client.upload_file(str(base), bucket, "postgres-exports/media_tool-2026-11-26.dump")
    first = make(root, env, "all")
    assert first.returncode == 0, first.stdout[-3000:]
    collapsed = build_sample(root, env, "collapsed.dump", "--metrics-rows", "10")
    s3client.upload_file(str(collapsed), bucket, "postgres-exports/media_tool-2026-11-27.dump")

    predicted = plan(root, env)
    assert predicted["exit_code"] == 5 and predicted["stops_at"] == "guard"
    assert predicted["guard"]["stopped"] == ["daily_metrics"]

    before = _state(env)
    backups = sorted(p.name for p in (root / "backups" / env["MONGO_DB_NAME"]).iterdir())
    proc = subprocess.run([str(ETL), "run"], cwd=root, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "daily_metrics shrank by 99.5% (2,000 → 10 documents), more than the 50% allowed" in proc.stdout
    assert "make all ACCEPT_SHRINK=daily_metrics" in proc.stdout
    stages, audit = last_run(root)
    assert stages == predicted["runs"] and stages[-1] == "guard"
    assert audit["status"] == "anomaly" and audit["exit_code"] == 5
    assert audit["guard"]["stopped"] == ["daily_metrics"]
    assert audit["guard"]["collections"]["daily_metrics"]["before"] == 2000
    assert audit["guard"]["collections"]["daily_metrics"]["after"] == 10
    assert _state(env) == before
    assert sorted(p.name for p in (root / "backups" / env["MONGO_DB_NAME"]).iterdir()) == backups

    # A value that tries to leave its quotes reaches the guard as one word and is refused.
    sneaky = make(root, env, "all", "ACCEPT_SHRINK=daily_metrics'; touch pwned; echo '")
    assert sneaky.returncode != 0
    assert not (root / "pwned").exists()
    assert "is not a collection name" in sneaky.stdout + sneaky.stderr
    assert _state(env) == before

    accepted = make(root, env, "all", "ACCEPT_SHRINK=daily_metrics")
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    stages, audit = last_run(root)
    assert stages[:1] == ["acquire"] and "load" in stages
    record = audit["guard"]["accepted"][0]
    assert record["collection"] == "daily_metrics" and record["before"] == 2000 and record["after"] == 10
    assert record["accepted_by"] and record["accepted_by"] != "unknown"
    assert audit["options"]["accept_shrink"] == "daily_metrics"
    after = _state(env)
    assert after["daily_metrics"][0] == 10 and after["campaigns"] == before["campaigns"]

