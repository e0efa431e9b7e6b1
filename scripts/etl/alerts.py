"""Alerts at the end of a run: a webhook and an e-mail, so nobody has to read cron's mail.

`notify(cfg, audit, redact, summary)` is called once by the master run after its audit record
is complete. Which outcomes alert is ALERT_ON (events `failure` — exit 1, 4 or an interrupted
run —, `pending` — exit 3 —, `guard` — exit 5 — and `success`; default the first three). The
channels:

* ALERT_WEBHOOK_URL: a JSON POST. ALERT_WEBHOOK_FORMAT=json sends the run's facts
  (event, run id, status, exit code, error, pending changes, the guard's findings, the summary);
  `slack` sends `{"text": …}`, which Slack's incoming webhooks and compatible chat tools show.
* ALERT_SMTP_HOST + ALERT_SMTP_TO: a plain-text mail (ALERT_SMTP_PORT, ALERT_SMTP_TLS
  starttls|ssl|none, ALERT_SMTP_USER / ALERT_SMTP_PASSWORD, ALERT_SMTP_FROM).

An alert never holds up or fails the run: each attempt has ALERT_TIMEOUT seconds, a failed
attempt is retried ALERT_RETRIES times with a short pause, the channels are sent side by side
and waited for at most their combined budget, and a receiver that is down becomes a note in
the audit record. Nothing secret leaves: the message is built from the redacted audit record,
and the webhook URL (its token) and the SMTP password never appear in logs or errors.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any, Callable

from etl.config import Config, mask_webhook

log = logging.getLogger("etl.alerts")

BACKOFF_S = (0.5, 1.0, 2.0)  # pause before the 2nd, 3rd, 4th … attempt


def event_for(audit: dict[str, Any]) -> str:
    code = audit.get("exit_code")
    if audit.get("status") == "interrupted":
        return "failure"
    return {0: "success", 3: "pending", 5: "guard"}.get(code, "failure")


def _pending(audit: dict[str, Any]) -> list[dict[str, Any]]:
    changes = audit.get("changes") or {}
    waiting = set(changes.get("pending") or [])
    return [{"id": c.get("id"), "summary": c.get("summary"), "kind": c.get("kind")}
            for c in changes.get("items") or [] if c.get("id") in waiting]


def _guard(audit: dict[str, Any]) -> dict[str, Any] | None:
    guard = audit.get("guard")
    if not isinstance(guard, dict):
        return None
    found = {name: c.get("problems") for name, c in (guard.get("collections") or {}).items() if c.get("problems")}
    return {"stopped": guard.get("stopped") or [], "accepted": guard.get("accepted") or [], "problems": found}


def headline(audit: dict[str, Any]) -> str:
    return (f"{audit.get('database')} ETL run {audit.get('run_id')}: {audit.get('status')} "
            f"(exit {audit.get('exit_code')}) on {audit.get('host')}")


def message(audit: dict[str, Any], summary: list[str]) -> dict[str, Any]:
    """What every channel says, from the (already redacted) audit record."""
    event = event_for(audit)
    lines = [headline(audit)]
    if audit.get("error"):
        lines.append(f"error: {audit['error']}")
    pending = _pending(audit)
    if pending:
        lines.append(f"{len(pending)} schema changes wait for a decision (data/changes/pending.md):")
        lines += [f"  - {p['summary']} [{p['id']}]" for p in pending]
    guard = _guard(audit)
    if guard and guard["problems"]:
        lines.append("anomaly guard:")
        lines += [f"  - {name}: {'; '.join(problems)}" for name, problems in guard["problems"].items()]
        if guard["stopped"]:
            lines.append(f"  accept with: make all ACCEPT_SHRINK={','.join(guard['stopped'])}")
    lines += [line for line in summary if line]
    text = "\n".join(lines)
    payload = {
        "event": event, "run_id": audit.get("run_id"), "status": audit.get("status"),
        "exit_code": audit.get("exit_code"), "database": audit.get("database"), "host": audit.get("host"),
        "started_at": audit.get("started_at"), "ended_at": audit.get("ended_at"),
        "duration_s": audit.get("duration_s"), "error": audit.get("error"), "pending": pending,
        "guard": guard, "log_file": audit.get("log_file"), "report_file": audit.get("report_file"),
        "text": text,
    }
    return {"event": event, "subject": headline(audit), "text": text, "payload": payload}


# --- channels ---------------------------------------------------------------------------------


class _Permanent(Exception):
    """A failure a retry cannot fix (the receiver refused the request)."""


def _post(url: str, body: bytes, timeout: float) -> str:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "media-tool-etl alerts"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked by config
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 429) or exc.code >= 500:
            raise OSError(f"HTTP {exc.code}") from None
        raise _Permanent(f"HTTP {exc.code}") from None


def send_webhook(cfg: Config, msg: dict[str, Any]) -> str:
    body = msg["payload"] if cfg["ALERT_WEBHOOK_FORMAT"] == "json" else {"text": msg["text"]}
    return _post(cfg["ALERT_WEBHOOK_URL"], json.dumps(body, default=str).encode("utf-8"), cfg["ALERT_TIMEOUT"])


def send_mail(cfg: Config, msg: dict[str, Any]) -> str:
    mail = EmailMessage()
    mail["Subject"] = msg["subject"]
    mail["From"] = cfg["ALERT_SMTP_FROM"] or f"etl@{socket.gethostname()}"
    mail["To"] = ", ".join(cfg["ALERT_SMTP_TO"])
    mail["X-ETL-Event"] = msg["event"]
    mail.set_content(msg["text"] + "\n")
    host, port, timeout, tls = cfg["ALERT_SMTP_HOST"], cfg["ALERT_SMTP_PORT"], cfg["ALERT_TIMEOUT"], cfg["ALERT_SMTP_TLS"]
    smtp_cls = smtplib.SMTP_SSL if tls == "ssl" else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if tls == "ssl" else {}
    try:
        with smtp_cls(host, port, timeout=timeout, **kwargs) as smtp:
            if tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if cfg["ALERT_SMTP_USER"]:
                smtp.login(cfg["ALERT_SMTP_USER"], cfg["ALERT_SMTP_PASSWORD"])
            refused = smtp.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise _Permanent(f"login refused ({exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused:
        raise _Permanent("every recipient was refused") from None
    if refused:
        return f"sent; refused by the server for {', '.join(sorted(refused))}"
    return f"sent to {len(cfg['ALERT_SMTP_TO'])} recipient(s)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc):
        return "timed out"  # the server accepted the connection and never greeted
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0][:200]


def _attempts(send: Callable[[], str], retries: int, redact: Callable[[str], str]) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "attempts": 0, "error": None}
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
        result["attempts"] = attempt + 1
        try:
            result["detail"] = redact(send())
            result.update(ok=True, error=None)
            return result
        except _Permanent as exc:
            result["error"] = redact(str(exc))
            return result
        except Exception as exc:  # noqa: BLE001 - any failure of a receiver is only a note
            result["error"] = redact(_describe(exc))
    return result


def channels(cfg: Config) -> dict[str, tuple[str, Callable[[dict[str, Any]], str]]]:
    """The configured channels: name -> (where, in words without secrets; sender)."""
    found: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {}
    if cfg["ALERT_WEBHOOK_URL"]:
        found["webhook"] = (mask_webhook(cfg["ALERT_WEBHOOK_URL"]), lambda m: send_webhook(cfg, m))
    if cfg["ALERT_SMTP_HOST"] and cfg["ALERT_SMTP_TO"]:
        found["email"] = (f"{cfg['ALERT_SMTP_HOST']}:{cfg['ALERT_SMTP_PORT']} to {', '.join(cfg['ALERT_SMTP_TO'])}",
                          lambda m: send_mail(cfg, m))
    return found


def budget_s(cfg: Config) -> float:
    """The longest the run waits for its alerts: every attempt's timeout plus the pauses."""
    retries = cfg["ALERT_RETRIES"]
    pauses = sum(BACKOFF_S[min(i, len(BACKOFF_S) - 1)] for i in range(retries))
    # An SMTP attempt may spend the timeout on connect, STARTTLS, login and sending alike.
    return (retries + 1) * cfg["ALERT_TIMEOUT"] * 2 + pauses + 1.0


def notify(cfg: Config, audit: dict[str, Any], redact: Callable[[str], str], summary: list[str] | None = None,
           note: Callable[[str], None] | None = None, event: str | None = None) -> list[dict[str, Any]]:
    """Send the alert for this run on every configured channel, if ALERT_ON wants its event.
    Returns one result per channel ({channel, to, ok, attempts, error}); never raises for a
    receiver's failure, and returns within `budget_s(cfg)`."""
    note = note or (lambda text: log.warning("%s", text))
    event = event or event_for(audit)
    found = channels(cfg)
    if event not in cfg["ALERT_ON"] or not found:
        return []
    msg = message(audit, summary or [])
    results: dict[str, dict[str, Any]] = {}

    def work(name: str, send: Callable[[dict[str, Any]], str]) -> None:
        results[name] = _attempts(lambda: send(msg), cfg["ALERT_RETRIES"], redact)

    threads = {name: threading.Thread(target=work, args=(name, send), name=f"alert-{name}", daemon=True)
               for name, (_, send) in found.items()}
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + budget_s(cfg)
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    out = []
    for name, (where, _) in found.items():
        result = results.get(name) or {"ok": False, "attempts": None,
                                        "error": f"no answer within {budget_s(cfg):.0f}s; the run went on"}
        entry = {"channel": name, "to": redact(where), "event": event, **result}
        out.append(entry)
        if result["ok"]:
            log.info("alert (%s) sent by %s to %s: %s", event, name, entry["to"], result.get("detail"))
        else:
            note(f"alert ({event}) by {name} to {entry['to']} not delivered: {result['error']}"
                 + (f" after {result['attempts']} attempts" if result.get("attempts") and result["attempts"] > 1 else ""))
    return out
