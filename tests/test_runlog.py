"""Run bookkeeping: redaction, stage records, a stage alone, the audit record from the files
the stages leave, the audit collection, CloudWatch events."""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from etl.core import runs
from etl.core import redact
from etl.core.redact import Redactor
from etl.run import runlog
from etl.core.config import load_config
from etl.core.errors import RunError, ValidationFailed
from etl.core.fsutil import write_json_if_changed
from etl.core.paths import paths


@pytest.fixture
def root(tmp_path, monkeypatch, mongo_db):
    uri, db = mongo_db
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", db)
    for key in (runs.RUN_ID_ENV, runs.RUN_LOG_ENV, "CLOUDWATCH_LOG_GROUP"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def test_redactor_hides_configured_secrets_and_uri_passwords():
    redact = Redactor(["pg-pass-123", "ab"])
    text = ("dsn host=db password=topsecret user=etl; uri mongodb://etl:mg%40pw@h:27017/x; "
            "pg-pass-123 and pg-pass-1234; PASSWORD = other")
    out = redact(text)
    for secret in ("topsecret", "mg%40pw", "pg-pass-123", "other"):
        assert secret not in out
    assert "mongodb://etl:***@h:27017/x" in out and "password=***" in out
    assert redact.obj({"a": ["pg-pass-123", 3], "b": None}) == {"a": ["***", 3], "b": None}


def test_log_file_redacts_messages_args_and_tracebacks(root, monkeypatch):
    monkeypatch.setenv("LOCAL_PG_PASSWORD", "s3cr3t-pg")
    cfg = load_config()
    path = root / "x.log"
    handler = runlog.attach_log_file(path, redact.redactor_for(cfg))
    logger = logging.getLogger("etl.test")
    try:
        logger.info("connecting with %s", "s3cr3t-pg")
        try:
            raise RuntimeError("auth failed for password s3cr3t-pg")
        except RuntimeError:
            logger.exception("boom")
    finally:
        runlog.detach_log_file(handler)
    text = path.read_text()
    assert "connecting with ***" in text and "RuntimeError: auth failed for password ***" in text
    assert "s3cr3t-pg" not in text


def test_stage_alone_writes_its_own_log_and_no_run_record(root):
    with runlog.stage("snapshot", load_config()) as st:
        logging.getLogger("etl.snapshot").info("took a snapshot")
        st.counts["tables"] = 12
    logs = list((root / "logs" / "etl").glob("*.log"))
    assert len(logs) == 1
    assert runs.RUN_ID_RE.fullmatch(logs[0].stem)
    text = logs[0].read_text()
    assert "took a snapshot" in text and "stage snapshot ok" in text
    assert not (root / ".run" / "runs").exists()
    # Handlers are detached: later records do not land in that file.
    logging.getLogger("etl.snapshot").info("after the stage")
    assert "after the stage" not in logs[0].read_text()


def test_stage_in_a_run_appends_its_record_and_reraises(root, monkeypatch):
    run_id = "2026-11-26-02-00-00"
    monkeypatch.setenv(runs.RUN_ID_ENV, run_id)
    monkeypatch.setenv(runs.RUN_LOG_ENV, str(runlog.log_file(run_id)))
    cfg = load_config()
    with runlog.stage("transform", cfg) as st:
        st.counts["rows"] = 5
        with runlog.stage("transform", cfg) as inner:  # the CLI hook plus the stage's own
            assert inner is st
            inner.counts["documents"] = 5
    with pytest.raises(ValidationFailed):
        with runlog.stage("validate", cfg):
            raise ValidationFailed("2 orphans in line_items")
    records = runlog.read_stage_records(run_id)
    assert [(r["name"], r["status"], r["exit_code"]) for r in records] == [
        ("transform", "ok", 0), ("validate", "invalid", 4)]
    assert records[0]["counts"] == {"rows": 5, "documents": 5}
    assert records[1]["error"] == "2 orphans in line_items"
    assert records[0]["duration_s"] >= 0 and records[0]["run_id"] == run_id
    text = runlog.log_file(run_id).read_text()
    assert "stage transform ok" in text and "stage validate invalid" in text


def test_command_stage_ignores_commands_that_are_not_stages(root, monkeypatch):
    monkeypatch.setenv(runs.RUN_ID_ENV, "2026-11-26-02-00-00")
    with runlog.command_stage("status") as st:
        assert st is None
    with runlog.command_stage("load") as st:
        assert st.name == "load"
    assert [r["name"] for r in runlog.read_stage_records("2026-11-26-02-00-00")] == ["load"]


@pytest.mark.parametrize("bad", ["../x", "a;b", "2026-11-26", "2026-11-26-02-00-00/../../etc"])
def test_run_ids_that_are_not_timestamps_are_refused(root, monkeypatch, bad):
    monkeypatch.setenv(runs.RUN_ID_ENV, bad)
    with pytest.raises(RunError):
        with runlog.stage("load"):
            pass


def test_new_run_id_does_not_reuse_a_second(root):
    now = datetime(2026, 11, 26, 2, 0, 0, tzinfo=timezone.utc)
    first = runlog.new_run_id(now)
    assert first == "2026-11-26-02-00-00"
    (root / ".run" / "runs" / first).mkdir(parents=True)
    assert runlog.new_run_id(now) == "2026-11-26-02-00-00-2"


def test_audit_collects_what_the_stages_left_on_disk(root):
    """Changes, decisions, counts, backup version and validation come from the stage files."""
    cfg = load_config()
    db = cfg["MONGO_DB_NAME"]
    write_json_if_changed(paths.changes / "latest.json", {
        "format_version": 1, "from_hash": "h1", "to_hash": "h2", "changes": [
            {"id": "c-aaaaaaaaaaaa", "kind": "column_added", "table": "public.campaigns",
             "column": "score", "classification": "safe", "summary": "New field", "impact": {"zod": "auto"}},
            {"id": "c-bbbbbbbbbbbb", "kind": "column_renamed", "table": "public.users",
             "column": "full_name", "classification": "review", "summary": "Rename", "impact": {}}]})
    run = runlog.start_run(cfg, {"db": None}, ["etl", "run"])
    try:
        old = paths.backups / db / "2026-11-20-001"
        old.mkdir(parents=True)
        os.utime(old, (0, 0))  # a backup from before the run is not this run's
        (paths.backups / db / "2026-11-26-001").mkdir()
        write_json_if_changed(paths.schemas / "accepted.json", {"hash": "h2", "tables": {}})
        (paths.schemas / "decisions.yaml").write_text(
            "decisions:\n  - change: c-bbbbbbbbbbbb\n    action: rename\n    by: ops\n"
            "  - change: c-000000000000\n    action: drop\n")
        write_json_if_changed(paths.transformed / db / "manifest.json",
                              {"collections": {"campaigns": {"count": 40, "rows": 41, "skipped": 1,
                                                             "sha256": "ab" * 32, "table": "public.campaigns"},
                                               "users": {"count": 7}}})
        write_json_if_changed(paths.reports / f"validation-{db}-20261126T020001000Z.json",
                              {"database": db, "ok": False})
        # A parallel database's report matches the same file pattern; it is not this run's.
        write_json_if_changed(paths.reports / f"validation-{db}-x-20261126T020002000Z.json",
                              {"database": f"{db}-x", "ok": True})
        audit = runlog.build_audit(run, cfg, 4, "stage validate: 1 orphan")
    finally:
        runlog.finish_run(run)
    assert audit["status"] == "invalid" and audit["exit_code"] == 4
    assert audit["changes"]["applied"] == ["c-aaaaaaaaaaaa", "c-bbbbbbbbbbbb"]
    assert audit["decisions"] == [{"change": "c-bbbbbbbbbbbb", "action": "rename", "by": "ops",
                                   "id": "c-bbbbbbbbbbbb"}]
    assert audit["collections"]["campaigns"] == {"documents": 40, "rows": 41, "skipped": 1}
    assert audit["backup_version"] == "2026-11-26-001"
    assert audit["collections"]["users"] == {"documents": 7}
    assert audit["validation"] == {"report": f"reports/validation-{db}-20261126T020001000Z.json", "ok": False}


def test_pending_changes_are_not_counted_as_applied(root):
    cfg = load_config()
    write_json_if_changed(paths.changes / "latest.json", {
        "from_hash": "h1", "to_hash": "h2",
        "changes": [{"id": "c-bbbbbbbbbbbb", "kind": "column_renamed", "classification": "review"}]})
    write_json_if_changed(paths.schemas / "accepted.json", {"hash": "h1"})
    run = runlog.start_run(cfg, {}, ["etl", "run"])
    try:
        write_json_if_changed(paths.changes / "pending.json",
                              {"status": "pending", "pending": [{"id": "c-bbbbbbbbbbbb"}]})
        audit = runlog.build_audit(run, cfg, 3)
    finally:
        runlog.finish_run(run)
    assert audit["status"] == "pending"
    assert audit["changes"]["applied"] == [] and audit["changes"]["pending"] == ["c-bbbbbbbbbbbb"]


def test_decide_record_names_applied_changes_and_who_decided(root):
    cfg = load_config()
    write_json_if_changed(paths.changes / "latest.json", {"from_hash": "h1", "to_hash": "h2", "changes": [
        {"id": "c-aaaaaaaaaaaa", "classification": "safe"}, {"id": "c-bbbbbbbbbbbb", "classification": "review"}]})
    write_json_if_changed(paths.changes / "decided.json", {"to_hash": "h0", "changes": []})
    os.utime(paths.changes / "decided.json", (0, 0))
    run = runlog.start_run(cfg, {}, ["etl", "run"])
    try:
        assert runlog.build_audit(run, cfg, 0)["changes"]["applied"] == []  # an old record
        write_json_if_changed(paths.changes / "decided.json", {"to_hash": "h2", "changes": [
            {"id": "c-aaaaaaaaaaaa", "answer": {"action": "accept"}, "decided_by": "auto"},
            {"id": "c-bbbbbbbbbbbb", "answer": {"rename": True}, "decided_by": "ops@example.com"}]})
        audit = runlog.build_audit(run, cfg, 0)
    finally:
        runlog.finish_run(run)
    assert audit["changes"]["applied"] == ["c-aaaaaaaaaaaa", "c-bbbbbbbbbbbb"]
    assert audit["decisions"] == [{"id": "c-bbbbbbbbbbbb", "answer": {"rename": True},
                                   "decided_by": "ops@example.com"}]
    assert "decided" not in audit["changes"]


def test_audit_record_round_trips_through_mongodb(root):
    cfg = load_config()
    run = runlog.start_run(cfg, {"source": "s3"}, ["etl", "run", "--source", "s3"])
    try:
        running, where = runlog.last_audit(cfg, cfg["MONGO_DB_NAME"])
        assert where == runlog.AUDIT_COLLECTION and running["status"] == "running"
        audit = runlog.build_audit(run, cfg, 0)
        runlog.save_audit(cfg, audit, run)
    finally:
        runlog.finish_run(run)
    stored, where = runlog.last_audit(cfg, cfg["MONGO_DB_NAME"])
    assert where == runlog.AUDIT_COLLECTION
    assert stored["_id"] == run.run_id and stored["status"] == "ok"
    assert stored["options"] == {"source": "s3"}
    local = json.loads((run.dir / "audit.json").read_text())
    assert local["status"] == "ok" and local["run_id"] == run.run_id


def test_cloudwatch_events_are_ordered_even_for_lines_without_a_time():
    text = ("2026-11-26 02:00:01,500 INFO etl.run: started\n"
            "plain output line\n"
            "2026-11-26 02:00:01,200 INFO etl.load: a line written a moment earlier by a stage\n"
            "2026-11-26 02:00:03,000 INFO etl.run: done\n")
    start = int(datetime(2026, 11, 26, 2, 0, 1, tzinfo=timezone.utc).timestamp() * 1000)
    events = runlog.cloudwatch_events(text, {"run_id": "r"}, start)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] == start + 500 and stamps[1] == start + 500 and stamps[3] == start + 2000
    assert events[-1]["message"] == 'ETL_AUDIT {"run_id": "r"}'


def test_push_cloudwatch_creates_group_and_stream_in_moto(root, monkeypatch, s3_server):
    import boto3

    group = f"/etl/{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CLOUDWATCH_LOG_GROUP", group)
    monkeypatch.setenv("CLOUDWATCH_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("LOCAL_PG_PASSWORD", "cw-pass-5678")
    cfg = load_config()
    run = runlog.start_run(cfg, {}, ["etl", "run"])
    logging.getLogger("etl.load").info("loaded with cw-pass-5678")
    runlog.finish_run(run)
    stream = runlog.push_cloudwatch(cfg, run, {"run_id": run.run_id, "status": "ok"})
    assert stream == f"etl-{run.run_id}"
    # A second push to the same stream (a rerun of the bookkeeping) must not fail either.
    runlog.push_cloudwatch(cfg, run, {"run_id": run.run_id, "status": "ok"})
    logs = boto3.client("logs", endpoint_url=s3_server.url, region_name="us-east-1")
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert any("loaded with ***" in m for m in messages)
    assert not any("cw-pass-5678" in m for m in messages)
    assert all(abs(e["timestamp"] / 1000 - run.started_at.timestamp()) < timedelta(hours=1).total_seconds()
               for e in events)
