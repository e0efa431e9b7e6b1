"""`etl plan` (make plan) against what `make all` then did, on a copy of the tracked tree with
this session's PostgreSQL, S3 and MongoDB: the sample's schema release (eight changes, two
waiting), then the decisions, then the quiet nights, then a new dump. Each plan is checked
against the stage records, the audit record and MongoDB after the run, and each plan must
leave every file, the bucket and MongoDB exactly as they were."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from etl.adapters.mongodb import connect
from test_e2e import make, mongo_counts, tree  # noqa: F401 - `tree` is a fixture

pytestmark = pytest.mark.slow

ETL = REPO / ".venv" / "bin" / "etl"
SHARED = (".venv", "node_modules", ".venv-mongo")


def plan(root: Path, env: dict, *args: str) -> dict:
    proc = subprocess.run([str(ETL), "plan", "--json", *args], cwd=root, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def plan_text(root: Path, env: dict, *args: str) -> str:
    proc = make(root, env, "plan", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def tree_state(root: Path) -> dict[str, tuple[int, str]]:
    """Every file of the project (tracked or not) with its mtime and content hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in SHARED or not path.is_file() or path.is_symlink():
            continue
        state[str(rel)] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def mongo_state(env: dict) -> dict:
    client = connect(env["MONGO_URI"])
    try:
        databases = sorted(client.list_database_names())
        db = client[env["MONGO_DB_NAME"]]
        colls = {}
        if env["MONGO_DB_NAME"] in databases:
            for name in sorted(db.list_collection_names()):
                ids = sorted(str(d["_id"]) for d in db[name].find({}, {"_id": 1}))
                colls[name] = (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest(),
                               json.dumps(db.command("listCollections", filter={"name": name})["cursor"]["firstBatch"],
                                          default=str, sort_keys=True))
        return {"databases": [d for d in databases if d == env["MONGO_DB_NAME"]], "collections": colls}
    finally:
        client.close()


def bucket_state(client, bucket: str) -> list[tuple[str, str]]:
    return sorted((o["Key"], o["ETag"]) for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def planned_without_writing(root, env, s3client, bucket, *args) -> dict:
    before = (tree_state(root), mongo_state(env), bucket_state(s3client, bucket))
    result = plan(root, env, *args)
    after = (tree_state(root), mongo_state(env), bucket_state(s3client, bucket))
    assert after[0] == before[0], "the plan changed files: " + ", ".join(
        sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)))
    assert after[1] == before[1], "the plan changed MongoDB"
    assert after[2] == before[2], "the plan changed the bucket"
    return result


def last_run(root: Path) -> tuple[list[str], dict]:
    runs = sorted((root / ".run" / "runs").iterdir())
    folder = runs[-1]
    stages = [json.loads(line)["name"] for line in (folder / "stages.jsonl").read_text().splitlines()]
    return stages, json.loads((folder / "audit.json").read_text())


def build_sample(root: Path, env: dict, out: str, *args: str) -> Path:
    dump = root / out
    built = subprocess.run([str(ETL), "sample", "--out", str(dump), *args], cwd=root, env=env,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return dump


def loaded_counts(env: dict) -> dict[str, int]:
    return {n: c for n, c in mongo_counts(env).items() if not n.startswith("_")}


def test_plan_predicts_what_make_all_then_does(tree):
    root, env, s3client, bucket = tree
    changed = build_sample(root, env, "changed.dump", "--variant", "changed", "--metrics-rows", "2000")
    s3client.upload_file(str(changed), bucket, "postgres-exports/media_tool-2026-11-27.dump")

    # 1. The schema release on a fresh clone: the plan stops where the run stops.
    first = planned_without_writing(root, env, s3client, bucket)
    assert first["exit_code"] == 3 and first["stops_at"] == "decide"
    assert first["runs"] == ["acquire", "restore", "snapshot", "detect", "decide"]
    schema = first["schema"]
    assert len(schema["changes"]) == 8
    missing = {c["kind"]: c for c in schema["missing_decisions"]}
    assert sorted(missing) == ["column_removed", "column_type_changed"]
    assert missing["column_type_changed"]["summary"] == "Type change: line_items.rate (number → string)"
    assert {c["decision"] for c in schema["changes"] if c["classification"] == "safe"} == {"automatic"}
    assert first["collections"]["audiences"] == {"mongodb": None, "dump": 300, "difference": 300, "loaded": False}
    assert first["collections"]["daily_metrics"]["dump"] == 2000
    assert first["mongodb"]["load"] == {} and first["mongodb"]["backup"] == []
    text = plan_text(root, env)
    assert "the run would exit 3" in text and "MISSING DECISION" in text and "2 decisions missing" in text

    proc = make(root, env, "all")
    assert proc.returncode != 0
    stages, audit = last_run(root)
    assert stages == first["runs"]
    assert audit["exit_code"] == first["exit_code"] == 3
    assert sorted(audit["changes"]["pending"]) == sorted(c["id"] for c in schema["missing_decisions"])
    assert sorted(c["id"] for c in audit["changes"]["items"]) == sorted(c["id"] for c in schema["changes"])
    assert env["MONGO_DB_NAME"] not in connect(env["MONGO_URI"]).list_database_names() or \
        loaded_counts(env) == {}

    # 2. With the two answers in a decisions file, as `make all DECISIONS_FILE=…` gets them.
    answers = root / "answers.json"
    answers.write_text(json.dumps({"decisions": {
        missing["column_type_changed"]["id"]: {"strategy": "cast", "on_failure": "set_null"},
        missing["column_removed"]["id"]: {"action": "archive"}}}))
    second = planned_without_writing(root, env, s3client, bucket, "--decisions", str(answers))
    assert second["exit_code"] == 0 and second["stops_at"] is None
    assert {"decide", "canonical", "transform", "guard", "load", "validate", "push"} <= set(second["runs"])
    assert second["schema"]["missing_decisions"] == []
    # mongo-schema creates the collections, empty, before the load backs them up.
    assert second["mongodb"]["backup"] == sorted(second["mongodb"]["load"])
    assert second["mongodb"]["load"]["audiences"] == 300
    proc = make(root, env, "all", f"DECISIONS_FILE={answers}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages, audit = last_run(root)
    assert stages == second["runs"]
    assert audit["exit_code"] == second["exit_code"]
    assert loaded_counts(env) == second["mongodb"]["load"]
    backup = json.loads((root / "backups" / env["MONGO_DB_NAME"] / audit["backup_version"] / "manifest.json").read_text())
    assert sorted(backup["collections"]) == second["mongodb"]["backup"]
    script = sorted((root / "data" / "migrations").glob("*.js"))
    assert len(script) == 1
    statements = [line for line in script[0].read_text().splitlines() if line.startswith(("db.", "print(", "if ("))]
    assert len(statements) == len(second["mongodb"]["migration_script"]) > 0
    accepted = json.loads((root / "schemas" / "accepted.json").read_text())
    assert accepted["hash"] == second["schema"]["to_hash"]

    # 3. The night after: decide accepted a new schema, so detect and decide look again, and
    # the transform finds every table unchanged. 4. Then nothing is stale at all.
    for expected_only_acquire in (False, True):
        quiet = planned_without_writing(root, env, s3client, bucket)
        assert quiet["exit_code"] == 0
        assert (quiet["runs"] == ["acquire"]) is expected_only_acquire
        assert quiet["mongodb"]["load"] == {}
        counts = loaded_counts(env)
        proc = make(root, env, "all")
        assert proc.returncode == 0, proc.stdout[-3000:]
        stages, audit = last_run(root)
        assert stages == quiet["runs"]
        assert loaded_counts(env) == counts
    assert "nothing to do" in quiet["exit_reason"]
    assert all(c["difference"] == 0 for n, c in quiet["collections"].items() if c["dump"] is not None)

    # 5. A new dump with more metrics: restored, transformed, backed up and loaded.
    grown = build_sample(root, env, "grown.dump", "--variant", "changed", "--metrics-rows", "2100")
    s3client.upload_file(str(grown), bucket, "postgres-exports/media_tool-2026-11-28.dump")
    fifth = planned_without_writing(root, env, s3client, bucket)
    assert fifth["collections"]["daily_metrics"] == {"mongodb": 2000, "dump": 2100, "difference": 100, "loaded": True}
    assert fifth["guard"]["stopped"] == []
    before = loaded_counts(env)
    proc = make(root, env, "all")
    assert proc.returncode == 0, proc.stdout[-3000:]
    stages, audit = last_run(root)
    assert stages == fifth["runs"]
    assert loaded_counts(env) == fifth["mongodb"]["load"]
    backup = json.loads((root / "backups" / env["MONGO_DB_NAME"] / audit["backup_version"] / "manifest.json").read_text())
    assert sorted(backup["collections"]) == fifth["mongodb"]["backup"]
    assert {n: e["count"] for n, e in backup["collections"].items()} == {n: before[n] for n in fifth["mongodb"]["backup"]}
    # The scratch database the plans read the new dumps from is gone.
    import psycopg

    with psycopg.connect(env_dsn(env)) as conn:
        leftovers = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%%__plan_%%'")]
    assert leftovers == []


def env_dsn(env: dict) -> str:
    return f"host={env['LOCAL_PG_HOST']} port={env['LOCAL_PG_PORT']} user={env['LOCAL_PG_USER']} dbname=postgres"
