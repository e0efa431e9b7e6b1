"""The master run (`etl run`) against a tiny Makefile in a scratch project: exit codes pass
through, a failed run still leaves its log, audit record and report, cron-style runs never
prompt, one run at a time, no secret anywhere, CloudWatch events land in moto."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.core import redact
from etl.core import lock
from etl.run import runlog
from etl.cli import cli
from etl.adapters.mongodb import connect

REPO = Path(__file__).resolve().parents[1]
ETL = Path(sys.executable).parent / "etl"

# A stage as the real ones are: joins the run through runlog.stage, logs, prints, fills in
# counts, and turns an EtlError into its exit code.
FAKE_STAGE = textwrap.dedent('''
    import logging, sys
    from etl.run import runlog
    from etl.core.config import load_config
    from etl.core.errors import EtlError, LoadError, PendingDecisions, ValidationFailed

    name, outcome = sys.argv[1], sys.argv[2]
    cfg = load_config()
    log = logging.getLogger("etl." + name)
    try:
        with runlog.stage(name, cfg) as st:
            log.info("connecting to %s with password %s", cfg["MONGO_URI"], cfg["LOCAL_PG_PASSWORD"])
            print(f"{name}: working (pg password {cfg['LOCAL_PG_PASSWORD']})", flush=True)
            st.counts["rows"] = 1200
            st.counts["documents"] = 1200
            if name == "backup":
                st.info["backup_version"] = "2026-11-26-001"
            if outcome == "invalid":
                raise ValidationFailed("3 documents in campaigns differ from the source")
            if outcome == "pending":
                raise PendingDecisions("2 breaking changes wait for a decision")
            if outcome == "fail":
                raise LoadError("bulk write refused")
    except EtlError as exc:
        print(f"Error: {exc.line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
''')


def write_makefile(root: Path, recipe_lines: list[str]) -> None:
    body = "\n".join("\t" + line for line in recipe_lines)
    (root / "Makefile").write_text(
        f"PY := {sys.executable}\n.PHONY: pipeline\npipeline:\n{body}\n", encoding="utf-8")


def stage_line(name: str, outcome: str = "ok") -> str:
    return f"$(PY) fake_stage.py {name} {outcome}"


@pytest.fixture
def root(tmp_path, monkeypatch, mongo_db):
    """A scratch project: pipeline.env, a fake stage script, MongoDB from the fixture."""
    uri, db = mongo_db
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(REPO / "pipeline.env", root / "pipeline.env")
    (root / "fake_stage.py").write_text(FAKE_STAGE, encoding="utf-8")
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", db)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "scripts"))
    for key in ("ETL_RUN_ID", "ETL_RUN_LOG", "CLOUDWATCH_LOG_GROUP", "CLOUDWATCH_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return root


def invoke(*args: str):
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def only_run_id(root: Path) -> str:
    runs = sorted((root / ".run" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0].name


def audit_in_mongo(db_name: str, run_id: str) -> dict | None:
    client = connect(os.environ["MONGO_URI"])
    try:
        return client[db_name][runlog.AUDIT_COLLECTION].find_one({"_id": run_id})
    finally:
        client.close()


def test_successful_run_records_stages_summary_audit_and_report(root):
    write_makefile(root, [stage_line("transform"), stage_line("backup"), stage_line("load")])
    result = invoke()
    assert result.exit_code == 0, result.output
    run_id = only_run_id(root)
    # The summary table names every stage with its counts.
    assert f"Run {run_id}: ok (exit 0)" in result.output
    for name in ("transform", "backup", "load"):
        assert any(line.strip().startswith(name) and "ok" in line and "1,200" in line
                   for line in result.output.splitlines()), result.output
    assert "backup 2026-11-26-001" in result.output
    log_text = (root / "logs" / "etl" / f"{run_id}.log").read_text()
    assert "stage load ok" in log_text and "load: working" in log_text
    audit = audit_in_mongo(os.environ["MONGO_DB_NAME"], run_id)
    assert audit["status"] == "ok" and audit["exit_code"] == 0
    assert [s["name"] for s in audit["stages"]] == ["transform", "backup", "load"]
    assert audit["backup_version"] == "2026-11-26-001"
    assert audit["ended_at"] >= audit["started_at"]
    assert (root / "reports" / f"run-{run_id}.html").is_file()
    # The lock is given back: a second run may start.
    assert lock.read_holder(root / ".run" / "etl.lock") is None


def test_failed_run_still_writes_log_audit_and_report(root):
    write_makefile(root, [stage_line("transform"), stage_line("load", "fail"), stage_line("validate")])
    result = invoke()
    assert result.exit_code == 1, result.output
    run_id = only_run_id(root)
    log_text = (root / "logs" / "etl" / f"{run_id}.log").read_text()
    assert "stage load failed" in log_text and "bulk write refused" in log_text
    audit = audit_in_mongo(os.environ["MONGO_DB_NAME"], run_id)
    assert audit["status"] == "failed" and audit["exit_code"] == 1
    assert "stage load: bulk write refused" in audit["error"]
    assert [(s["name"], s["status"]) for s in audit["stages"]] == [("transform", "ok"), ("load", "failed")]
    local = json.loads((root / ".run" / "runs" / run_id / "audit.json").read_text())
    assert local["status"] == "failed"
    assert (root / "reports" / f"run-{run_id}.html").is_file()


@pytest.mark.parametrize("outcome, code, status", [("invalid", 4, "invalid"), ("pending", 3, "pending")])
def test_stage_exit_code_passes_through_make(root, outcome, code, status):
    # make itself exits 2 for any failed recipe; cron must still see 3 or 4.
    write_makefile(root, [stage_line("decide" if code == 3 else "validate", outcome)])
    result = invoke()
    assert result.exit_code == code, result.output
    audit = audit_in_mongo(os.environ["MONGO_DB_NAME"], only_run_id(root))
    assert audit["status"] == status and audit["exit_code"] == code


def test_exit_code_of_a_recipe_outside_any_stage_is_read_from_make(root):
    write_makefile(root, ["@echo checking decisions", "@echo 'Error: 1 change waits for a decision' >&2",
                          "exit 3"])
    result = invoke()
    assert result.exit_code == 3, result.output
    assert "(no stage reported)" in result.output
    # The recipe's own error line, not make's "*** [pipeline] Error 3", is the run's error.
    assert "  error: 1 change waits for a decision" in result.output


def test_make_failure_with_its_own_code_2_is_an_error_not_changes_found(root):
    (root / "Makefile").write_text("pipeline: missing-file\n\ttrue\n", encoding="utf-8")
    result = invoke()
    assert result.exit_code == 1, result.output
    assert "No rule to make target" in result.output


def test_flags_become_make_variables_and_environment(root):
    # The recipe prints what it received, so the test sees what the stages would see.
    decisions = root / "answers.yaml"
    decisions.write_text("decisions: []\n")
    write_makefile(root, ['@echo "vars SOURCE=$(SOURCE) DB=$(DB) AUTO_LATEST=$(AUTO_LATEST) KEY=$(KEY) '
                          'DECISIONS_FILE=$(DECISIONS_FILE) DECISIONS=$(DECISIONS)"',
                          '@echo "env MONGO_DB_NAME=$$MONGO_DB_NAME ETL_RUN_ID=$$ETL_RUN_ID"'])
    parallel = f"etltest-{uuid.uuid4().hex[:8]}-p"
    result = invoke("--source", "s3", "--auto-latest", "--db", parallel, "--decisions", str(decisions))
    assert result.exit_code == 0, result.output
    run_id = only_run_id(root)
    assert (f"vars SOURCE=s3 DB={parallel} AUTO_LATEST=1 KEY= DECISIONS_FILE={decisions} DECISIONS="
            in result.output)
    assert f"env MONGO_DB_NAME={parallel} ETL_RUN_ID={run_id}" in result.output
    # The run belongs to the database it loaded.
    assert audit_in_mongo(parallel, run_id)["options"]["db"] == parallel
    connect(os.environ["MONGO_URI"]).drop_database(parallel)


def test_bad_flags_are_refused_in_one_line(root):
    write_makefile(root, ["true"])
    result = invoke("--db", "bad/name")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    result = invoke("--key", "x.dump", "--auto-latest")
    assert result.exit_code == 1 and "exclude each other" in result.output
    assert not (root / ".run" / "runs").exists()


def test_missing_makefile_and_missing_make_are_named(root, monkeypatch):
    result = invoke()
    assert result.exit_code == 1 and "no Makefile in" in result.output
    write_makefile(root, ["true"])
    monkeypatch.setenv("PATH", str(root))  # a PATH without make
    result = invoke()
    assert result.exit_code == 1 and "make is not installed" in result.output


def test_cron_style_run_without_tty_and_stdin_closed(root):
    """Under cron: no terminal, stdin closed, output to a file. Nothing prompts, the exit code
    says what happened, and everything is in the log file too."""
    write_makefile(root, [stage_line("detect"), stage_line("decide", "pending")])
    out = root / "cron.out"
    cmd = f"exec 0<&- ; exec {ETL} run > {out} 2>&1"
    proc = subprocess.run(["bash", "-c", cmd], env=os.environ.copy(), timeout=120)
    assert proc.returncode == 3
    text = out.read_text()
    assert "decide: working" in text and "pending (exit 3)" in text
    assert "\r" not in text and "\x1b[" not in text  # no terminal control sequences
    run_id = only_run_id(root)
    log_text = (root / "logs" / "etl" / f"{run_id}.log").read_text()
    assert "2 breaking changes wait for a decision" in log_text
    assert audit_in_mongo(os.environ["MONGO_DB_NAME"], run_id)["status"] == "pending"
    # --interactive makes no sense without a terminal: refused before anything starts.
    proc = subprocess.run(["bash", "-c", f"exec 0<&- ; exec {ETL} run --interactive"],
                          env=os.environ.copy(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: --interactive needs a terminal on stdin")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_second_run_is_refused_naming_the_holder(root):
    write_makefile(root, ["true"])
    with lock.acquire("2026-11-26-01-02-03") as held:
        result = invoke()
    assert result.exit_code == 1
    line = result.output.strip()
    assert line.startswith("Error: another run holds the lock")
    assert f"pid {os.getpid()}" in line and held.holder["started_at"] in line
    assert not (root / ".run" / "runs").exists()


def test_stale_lock_from_a_dead_process_is_recovered(root):
    write_makefile(root, ["true"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = root / ".run" / "etl.lock"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename,
                                "started_at": "2026-11-25T02:00:00Z", "run_id": None}))
    result = invoke()
    assert result.exit_code == 0, result.output
    assert f"recovered a stale lock: pid {dead.pid}" in result.output
    audit = json.loads((root / ".run" / "runs" / only_run_id(root) / "audit.json").read_text())
    assert any("recovered a stale lock" in note for note in audit["notes"])


def test_no_secret_in_log_audit_report_or_console(root, monkeypatch, mongo_db):
    pg_secret = f"pg-{uuid.uuid4().hex}"
    mongo_secret = f"mg-{uuid.uuid4().hex}"
    monkeypatch.setenv("LOCAL_PG_PASSWORD", pg_secret)
    if os.environ.get("MONGO_TEST_URI"):
        uri = os.environ["MONGO_TEST_URI"]
    else:
        # Nothing listens there: the audit cannot reach MongoDB, and the error path must not
        # leak the password either.
        from etl.adapters.services import free_port
        uri = f"mongodb://etl:{mongo_secret}@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500"
    monkeypatch.setenv("MONGO_URI", uri)
    import etl.adapters.mongodb

    real = etl.adapters.mongodb.connect  # a shorter wait for the server that is not there
    monkeypatch.setattr(etl.adapters.mongodb, "connect", lambda u, **kw: real(u, **(kw | {"timeout_ms": 300})))
    write_makefile(root, [stage_line("load"), stage_line("validate", "invalid")])
    result = invoke()
    assert result.exit_code == 4, result.output
    run_id = only_run_id(root)
    texts = {
        "console": result.output,
        "log": (root / "logs" / "etl" / f"{run_id}.log").read_text(),
        "audit": (root / ".run" / "runs" / run_id / "audit.json").read_text(),
        "stages": (root / ".run" / "runs" / run_id / "stages.jsonl").read_text(),
        "report": (root / "reports" / f"run-{run_id}.html").read_text(),
    }
    assert "load: working (pg password ***)" in texts["log"]  # the line is there, redacted
    for where, text in texts.items():
        assert pg_secret not in text, where
        assert mongo_secret not in text, where
    if not os.environ.get("MONGO_TEST_URI"):
        assert "audit record not written to MongoDB" in texts["console"]
        assert any("audit record not written to MongoDB" in n for n in json.loads(texts["audit"])["notes"])


def test_cloudwatch_events_land_in_moto(root, monkeypatch, s3_server):
    import boto3

    group = f"/etl/test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CLOUDWATCH_LOG_GROUP", group)
    monkeypatch.setenv("CLOUDWATCH_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("LOCAL_PG_PASSWORD", "cw-secret-1234")
    write_makefile(root, [stage_line("transform"), stage_line("load")])
    result = invoke()
    assert result.exit_code == 0, result.output
    run_id = only_run_id(root)
    logs = boto3.client("logs", endpoint_url=s3_server.url, region_name="us-east-1")
    events = logs.get_log_events(logGroupName=group, logStreamName=f"etl-{run_id}",
                                 startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert any("stage transform ok" in m for m in messages)
    assert any("load: working" in m for m in messages)
    audit = json.loads(next(m for m in messages if m.startswith("ETL_AUDIT "))[len("ETL_AUDIT "):])
    assert audit["run_id"] == run_id and audit["status"] == "ok"
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert not any("cw-secret-1234" in m for m in messages)
    stored = audit_in_mongo(os.environ["MONGO_DB_NAME"], run_id)
    assert stored["cloudwatch"] == {"group": group, "stream": f"etl-{run_id}"}


def test_unreachable_cloudwatch_is_a_note_not_a_failure(root, monkeypatch):
    from etl.adapters.services import free_port

    monkeypatch.setenv("CLOUDWATCH_LOG_GROUP", "/etl/nowhere")
    monkeypatch.setenv("CLOUDWATCH_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    write_makefile(root, [stage_line("load")])
    result = invoke()
    assert result.exit_code == 0, result.output
    assert "note: CloudWatch not reached" in result.output


def test_sigterm_stops_the_pipeline_and_still_closes_the_run(root):
    from etl.core.lock import pid_alive
    from etl.adapters.services import wait_until

    marker = root / "recipe.pid"
    # The recipe records its shell's pid, then works "forever".
    write_makefile(root, [f"echo $$$$ > {marker}.tmp && mv {marker}.tmp {marker} && sleep 300"])
    proc = subprocess.Popen([str(ETL), "run"], env=os.environ.copy(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(marker.exists, timeout=60, what="the pipeline recipe")
        recipe_pid = int(marker.read_text())
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "interrupted" in output
    wait_until(lambda: not pid_alive(recipe_pid), timeout=30, what="the recipe to stop")
    audit = audit_in_mongo(os.environ["MONGO_DB_NAME"], only_run_id(root))
    assert audit["status"] == "interrupted" and audit["exit_code"] == 1
    assert lock.read_holder(root / ".run" / "etl.lock") is None


def test_interactive_run_shows_a_prompt_without_newline_and_passes_the_answer(root):
    import pty
    import select
    import time

    write_makefile(root, ['@read -p "rename users.name? [y/n] " x; echo "answer was $$x"'])
    pid, fd = pty.fork()
    if pid == 0:  # the child: `etl run --interactive` on a terminal
        os.execve(str(ETL), [str(ETL), "run", "--interactive"], os.environ.copy())
    seen, answered = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closes when the run ends
                break
            if not chunk:
                break
            seen += chunk
            if not answered and seen.endswith(b"[y/n] "):
                os.write(fd, b"y\n")
                answered = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode()
    assert answered, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "answer was y" in text
    log_text = (root / "logs" / "etl" / f"{only_run_id(root)}.log").read_text()
    # The prompt and what followed it are one line in the log, as on the screen.
    assert "etl.run.output: rename users.name? [y/n] answer was y" in log_text


def test_bookkeeping_failures_do_not_hide_the_pipeline_exit_code(root):
    # `reports` is a file, so the report cannot be written; a garbled stage line is skipped.
    (root / "reports").write_text("not a folder")
    write_makefile(root, ["echo '{garbled' >> $$ETL_ROOT/.run/runs/$$ETL_RUN_ID/stages.jsonl",
                          stage_line("validate", "invalid")])
    result = invoke()
    assert result.exit_code == 4, result.output
    assert "note: report not written" in result.output
    audit = audit_in_mongo(os.environ["MONGO_DB_NAME"], only_run_id(root))
    assert audit["status"] == "invalid" and [s["name"] for s in audit["stages"]] == ["validate"]
    assert any(n.startswith("report not written") for n in audit["notes"])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


BAR_SCRIPT = ("import sys\n"
              "for pct in (10, 60, 100):\n"
              "    sys.stderr.write(f'\\r\\x1b[Kload [{pct}%] secret-77'); sys.stderr.flush()\n"
              "sys.stderr.write('\\n'); print('done \\xe9t\\xe9', flush=True)\n")


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bars_reach_a_terminal_and_the_log_gets_their_last_state(terminal):
    from etl.run.master import stream_process

    console = _Terminal() if terminal else io.StringIO()
    lines: list[str] = []
    code = stream_process([sys.executable, "-c", BAR_SCRIPT], os.environ.copy(), False, lines.append,
                          console, redact.Redactor(["secret-77"]))
    assert code == 0
    # The log sees what a screen finally shows, without control sequences or secrets.
    assert lines == ["load [100%] ***", "done été"]
    shown = console.getvalue()
    if terminal:
        assert "\r\x1b[Kload [10%] ***" in shown and "\r\x1b[Kload [100%] ***\n" in shown
    else:
        assert shown == "load [100%] ***\ndone été\n"
    assert "secret-77" not in shown


def test_stages_draw_bars_only_when_the_run_is_on_a_terminal(monkeypatch):
    from etl.core.progress import PROGRESS_TTY_ENV, Progress
    from etl.run.master import RunOptions, child_environment

    run = types.SimpleNamespace(run_id="2026-11-26-02-00-00", log_path=Path("/x.log"))
    assert child_environment(run, RunOptions(), _Terminal())[PROGRESS_TTY_ENV] == "1"
    assert PROGRESS_TTY_ENV not in child_environment(run, RunOptions(), io.StringIO())
    monkeypatch.setenv(PROGRESS_TTY_ENV, "1")
    assert Progress("load", total=10).tty is True
    assert Progress("load", total=10, stream=io.StringIO()).tty is False  # an explicit stream decides
    monkeypatch.delenv(PROGRESS_TTY_ENV)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert Progress("load", total=10).tty is False


def test_summary_says_when_nothing_was_stale():
    from etl.run.master import summary_lines

    base = {"run_id": "2026-11-26-02-30-00", "status": "ok", "exit_code": 0, "duration_s": 0.8,
            "database": "bravo-1", "log_file": "x.log", "report_file": "x.html"}
    idle = summary_lines(base | {"stages": [{"name": "acquire", "status": "ok", "duration_s": 0.3}]})
    assert "  nothing to do: the source was checked, no stage was stale" in idle
    busy = summary_lines(base | {"stages": [{"name": "acquire", "status": "ok", "duration_s": 0.3},
                                            {"name": "transform", "status": "ok", "duration_s": 9.0}]})
    assert not any("nothing to do" in line for line in busy)
