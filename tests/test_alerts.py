"""Alerts at the end of `etl run`, against a local HTTP receiver (http.server) and a local SMTP
server (aiosmtpd) started here on free ports: what each says for a failed run, a stop for a
decision, a guard stop and (when asked) a success; the Slack-shaped body; retries; and that a
receiver that is down or hangs changes neither the run's exit code nor, beyond its budget, the
run's duration. No secret (the webhook's token, the SMTP password) appears anywhere."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default as default_policy
import os
import shutil
import socket
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner

from etl import alerts
from etl.cli import cli
from etl.config import load_config
from etl.errors import ConfigError
from etl.services import free_port

REPO = Path(__file__).resolve().parents[1]
TOKEN = "T0123/B4567/s3cr3tT0kenValue"
SMTP_PASSWORD = "smtp-pa55w0rd-x9"

STAGE = textwrap.dedent('''
    import sys
    from etl import runlog
    from etl.config import load_config
    from etl.errors import EtlError, GuardStop, LoadError, PendingDecisions

    name, outcome = sys.argv[1], sys.argv[2]
    cfg = load_config()
    try:
        with runlog.stage(name, cfg) as st:
            print(f"{name}: working", flush=True)
            if outcome == "fail":
                raise LoadError("bulk write refused")
            if outcome == "pending":
                raise PendingDecisions("2 schema changes wait for a decision; MongoDB was not touched")
            if outcome == "guard":
                st.info["guard"] = {"stopped": ["daily_metrics"], "accepted": [], "collections": {
                    "daily_metrics": {"problems": ["shrank by 99.5% (2,000 → 10 documents), more than the 50% allowed"]}}}
                raise GuardStop("the new dump looks wrong: daily_metrics shrank by 99.5%")
    except EtlError as exc:
        print(f"Error: {exc.line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
''')


class Receiver:
    """A webhook receiver: records each POST; answers with `codes` in turn, then 200."""

    def __init__(self, codes=()):
        self.codes = list(codes)
        self.posts: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                    "body": json.loads(body)})
                code = outer.codes.pop(0) if outer.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self):
        self.messages = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        mail = message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "mail": mail,
                              "content": mail.get_content()})
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password.decode() == SMTP_PASSWORD)


@pytest.fixture
def receiver():
    made = []

    def start(codes=()):
        made.append(Receiver(codes))
        return made[-1]

    yield start
    for r in made:
        r.close()


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=box.authenticate,
                            auth_require_tls=False)
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def root(tmp_path, monkeypatch, mongo_db):
    uri, db = mongo_db
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(REPO / "pipeline.env", root / "pipeline.env")
    (root / "stage.py").write_text(STAGE, encoding="utf-8")
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", db)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "scripts"))
    for key in ("ETL_RUN_ID", "ETL_RUN_LOG", "CLOUDWATCH_LOG_GROUP") + tuple(k for k in os.environ if k.startswith("ALERT_")):
        monkeypatch.delenv(key, raising=False)
    return root


def pipeline(root: Path, *stages: tuple[str, str]) -> None:
    body = "\n".join(f"\t$(PY) stage.py {name} {outcome}" for name, outcome in stages)
    (root / "Makefile").write_text(f"PY := {sys.executable}\n.PHONY: pipeline\npipeline:\n{body}\n", encoding="utf-8")


def run(*args):
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def the_run(root: Path) -> tuple[str, dict]:
    folder = sorted((root / ".run" / "runs").iterdir())[-1]
    return folder.name, json.loads((folder / "audit.json").read_text())


def configure(monkeypatch, webhook_url: str | None = None, smtp_port: int | None = None, **more):
    if webhook_url:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", webhook_url)
    if smtp_port:
        for key, value in {"ALERT_SMTP_HOST": "127.0.0.1", "ALERT_SMTP_PORT": str(smtp_port), "ALERT_SMTP_TLS": "none",
                           "ALERT_SMTP_USER": "etl", "ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
                           "ALERT_SMTP_FROM": "etl@example.com", "ALERT_SMTP_TO": "data-eng@example.com"}.items():
            monkeypatch.setenv(key, value)
    for key, value in more.items():
        monkeypatch.setenv(key, value)


def everything_written(root: Path, output: str) -> str:
    """Every place a run leaves text: console, log, stage records, audit, report."""
    texts = [output]
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".jsonl", ".html"):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def test_a_failed_run_posts_to_the_webhook_and_sends_a_mail(root, receiver, mailbox, monkeypatch):
    hook = receiver()
    configure(monkeypatch, hook.url, mailbox.port)
    pipeline(root, ("transform", "ok"), ("load", "fail"))
    result = run()
    assert result.exit_code == 1, result.output
    run_id, audit = the_run(root)

    assert len(hook.posts) == 1
    post = hook.posts[0]
    assert post["path"] == f"/hooks/{TOKEN}" and post["type"] == "application/json"
    body = post["body"]
    assert body["event"] == "failure" and body["run_id"] == run_id and body["exit_code"] == 1
    assert body["status"] == "failed" and body["error"] == "stage load: bulk write refused"
    assert f"Run {run_id}: failed (exit 1)" in body["text"]

    assert len(mailbox.messages) == 1
    mail = mailbox.messages[0]
    assert mail["to"] == ["data-eng@example.com"] and mail["from"] == "etl@example.com"
    assert mail["mail"]["Subject"] == f"{os.environ['MONGO_DB_NAME']} ETL run {run_id}: failed (exit 1) on {socket.gethostname()}"
    assert "error: stage load: bulk write refused" in mail["content"]
    assert mailbox.logins == [("etl", SMTP_PASSWORD)]

    assert [(a["channel"], a["ok"], a["attempts"]) for a in audit["alerts"]] == [("webhook", True, 1), ("email", True, 1)]
    assert audit["alerts"][0]["to"] == f"http://127.0.0.1:{hook.server.server_port}/***"
    written = everything_written(root, result.output)
    config = CliRunner().invoke(cli, ["config"]).output
    for secret in ("s3cr3tT0kenValue", SMTP_PASSWORD):
        assert secret not in written and secret not in config
    assert "ALERT_WEBHOOK_URL" in config and "/***" in config


def test_slack_payload_and_an_alert_on_success_when_asked(root, receiver, monkeypatch):
    hook = receiver()
    configure(monkeypatch, hook.url, ALERT_WEBHOOK_FORMAT="slack", ALERT_ON="success")
    pipeline(root, ("transform", "ok"))
    result = run()
    assert result.exit_code == 0
    run_id, _ = the_run(root)
    assert len(hook.posts) == 1
    body = hook.posts[0]["body"]
    assert set(body) == {"text"}
    assert body["text"].startswith(f"{os.environ['MONGO_DB_NAME']} ETL run {run_id}: ok (exit 0)")


def test_success_does_not_alert_by_default(root, receiver, monkeypatch):
    hook = receiver()
    configure(monkeypatch, hook.url)
    pipeline(root, ("transform", "ok"))
    assert run().exit_code == 0
    assert hook.posts == []
    assert the_run(root)[1]["alerts"] == []


@pytest.mark.parametrize("outcome, code, event, says", [
    ("pending", 3, "pending", "2 schema changes wait for a decision"),
    ("guard", 5, "guard", "accept with: make all ACCEPT_SHRINK=daily_metrics"),
])
def test_a_stop_for_a_decision_or_by_the_guard_alerts_with_its_own_event(root, receiver, mailbox, monkeypatch,
                                                                       outcome, code, event, says):
    hook = receiver()
    configure(monkeypatch, hook.url, mailbox.port)
    pipeline(root, ("decide" if outcome == "pending" else "guard", outcome))
    result = run()
    assert result.exit_code == code
    body = hook.posts[0]["body"]
    assert body["event"] == event and body["exit_code"] == code
    assert says in body["text"] and says in mailbox.messages[0]["content"]
    if outcome == "guard":
        assert body["guard"]["stopped"] == ["daily_metrics"]
        assert mailbox.messages[0]["mail"]["X-ETL-Event"] == "guard"


def test_receivers_that_are_down_change_no_exit_code(root, monkeypatch):
    closed_http, closed_smtp = free_port(), free_port()
    configure(monkeypatch, f"http://127.0.0.1:{closed_http}/hooks/{TOKEN}", closed_smtp,
              ALERT_ON="failure,success", ALERT_RETRIES="1", ALERT_TIMEOUT="2")
    pipeline(root, ("load", "fail"))
    result = run()
    assert result.exit_code == 1
    _, audit = the_run(root)
    assert [(a["channel"], a["ok"], a["attempts"], a["error"]) for a in audit["alerts"]] == [
        ("webhook", False, 2, "connection refused"), ("email", False, 2, "connection refused")]
    assert any(n.startswith(f"alert (failure) by webhook to http://127.0.0.1:{closed_http}/*** not delivered: "
                            "connection refused after 2 attempts") for n in audit["notes"])
    assert "s3cr3tT0kenValue" not in everything_written(root, result.output)

    pipeline(root, ("transform", "ok"))
    result = run()
    assert result.exit_code == 0
    assert "not delivered" in result.output


def _silent_listener():
    """A port that accepts connections and never says a word (a hung receiver)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def test_a_receiver_that_hangs_is_cut_off_within_the_budget(root, monkeypatch):
    http_sock, smtp_sock = _silent_listener(), _silent_listener()
    try:
        configure(monkeypatch, f"http://127.0.0.1:{http_sock.getsockname()[1]}/hooks/{TOKEN}", smtp_sock.getsockname()[1],
                  ALERT_RETRIES="1", ALERT_TIMEOUT="1")
        cfg = load_config()
        audit = {"run_id": "2026-11-26-02-30-01", "status": "failed", "exit_code": 1, "database": "bravo-1",
                 "host": "h", "error": "stage load: bulk write refused"}
        started = time.monotonic()
        results = alerts.notify(cfg, audit, lambda s: s, [], note=lambda _n: None)
        took = time.monotonic() - started
        assert took < alerts.budget_s(cfg)
        assert [(r["channel"], r["ok"], r["error"]) for r in results] == [("webhook", False, "timed out"),
                                                                         ("email", False, "timed out")]
        pipeline(root, ("load", "fail"))
        assert run().exit_code == 1
        assert [a["ok"] for a in the_run(root)[1]["alerts"]] == [False, False]
    finally:
        http_sock.close()
        smtp_sock.close()


def test_a_server_error_is_retried_and_a_refusal_is_not(root, receiver, monkeypatch):
    flaky = receiver(codes=[503])
    configure(monkeypatch, flaky.url, ALERT_RETRIES="2")
    pipeline(root, ("load", "fail"))
    assert run().exit_code == 1
    assert len(flaky.posts) == 2
    assert the_run(root)[1]["alerts"][0] | {"detail": None} == {
        "channel": "webhook", "to": flaky.url.rsplit("/hooks", 1)[0] + "/***", "event": "failure", "ok": True,
        "attempts": 2, "error": None, "detail": None}

    refusing = receiver(codes=[404, 404, 404])
    monkeypatch.setenv("ALERT_WEBHOOK_URL", refusing.url)
    assert run().exit_code == 1
    assert len(refusing.posts) == 1
    assert the_run(root)[1]["alerts"][0]["error"] == "HTTP 404"


@pytest.mark.parametrize("key, value, message", [
    ("ALERT_ON", "failure,sometimes", "ALERT_ON (from environment): unknown event 'sometimes'"),
    ("ALERT_SMTP_TO", "data-eng", "ALERT_SMTP_TO (from environment): not an e-mail address: 'data-eng'"),
    ("ALERT_TIMEOUT", "0", "ALERT_TIMEOUT (from environment): must be more than 0"),
    ("ALERT_WEBHOOK_URL", "hooks.example.com/services/T/B/tok3n", "expected an http:// or https:// URL"),
])
def test_bad_alert_settings_are_one_line_without_the_secret(key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(environ={key: value}, root=REPO)
    text = str(err.value)
    assert message in text and "\n" not in text and "tok3n" not in text
