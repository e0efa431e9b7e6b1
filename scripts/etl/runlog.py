"""Run bookkeeping: run id, the log file per run, secret redaction, per-stage records, the audit
collection and CloudWatch Logs.

A run (`etl run`) gets an id, `YYYY-MM-DD-HH-mm-ss` in UTC, and a log file
`logs/etl/<run id>.log`. It exports ETL_RUN_ID and ETL_RUN_LOG to the `make pipeline` it
starts, so each stage process joins the run:

    with runlog.stage("transform", cfg) as st:
        ...
        st.counts["rows"] = n              # numbers for the summary table and the audit
        st.info["backup_version"] = ver    # anything else worth recording

`stage()` appends the stage's log records to the run's log file (secrets redacted) and, when
it ends, one JSON line to `.run/runs/<run id>/stages.jsonl` with its status, duration and
counts. Run alone (no ETL_RUN_ID), a stage still gets a log file of its own under logs/etl/,
but no stage record and no audit record: those belong to runs.

At the end, `build_audit` turns the stage records plus what the stages left on disk (the
changes, the transform manifest, the backup version, the validation report) into one audit
record, kept in `.run/runs/<run id>/audit.json` and the `etl_audit` collection of the target
database, and pushed to CloudWatch Logs when CLOUDWATCH_LOG_GROUP is set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from etl.config import Config, mask_uri, secrets_of
from etl.errors import EXIT_CHANGES, EXIT_GUARD, EXIT_INVALID, EXIT_OK, EXIT_PENDING, EtlError, RunError
from etl.fsutil import read_json, write_atomic
from etl.paths import paths

log = logging.getLogger("etl.run")

AUDIT_COLLECTION = "etl_audit"
RUN_ID_ENV = "ETL_RUN_ID"
RUN_LOG_ENV = "ETL_RUN_LOG"
# The pipeline's stages in order; commands outside this list (status, compare, config) are
# not stages and leave no stage record.
STAGES = ("acquire", "restore", "snapshot", "detect", "decide", "canonical", "generate",
          "mongo-schema", "transform", "guard", "backup", "load", "validate", "test-data", "push")
RUN_ID_RE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}(?:-\d{1,3})?")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_URI_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


# --- redaction -------------------------------------------------------------------------------


class Redactor:
    """Replaces every configured secret, and any password inside a URI or DSN, with ***."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _URI_PASSWORD.sub(r"\1***\3", text)
        return _KV_PASSWORD.sub(r"\1***", text)

    def obj(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


def redactor_for(cfg: Config | None) -> Redactor:
    return Redactor(secrets_of(cfg) if cfg is not None else ())


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted record, traceback included (a filter sees only the message)."""

    def __init__(self, redact: Redactor, fmt: str = LOG_FORMAT):
        super().__init__(fmt)
        self.converter = time.gmtime
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class RedactFilter(logging.Filter):
    """For handlers with their own formatter (a console handler): redacts message and args."""

    def __init__(self, redact: Redactor):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def attach_log_file(path: Path, redact: Redactor) -> logging.Handler:
    """Send the `etl` loggers' records to `path` (appending: the run and its stages share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(RedactingFormatter(redact))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("etl")
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("etl").removeHandler(handler)
    handler.close()


# --- ids and places --------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if ts else None


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_run_id(run_id: str) -> str:
    # The id becomes a file and a folder name: anything else is refused, never joined to a path.
    if not RUN_ID_RE.fullmatch(run_id):
        raise RunError(f"run id {run_id[:40]!r} is not YYYY-MM-DD-HH-mm-ss")
    return run_id


def run_dir(run_id: str) -> Path:
    return paths.run / "runs" / check_run_id(run_id)


def log_file(run_id: str) -> Path:
    return paths.logs / f"{check_run_id(run_id)}.log"


def new_run_id(now: datetime | None = None) -> str:
    """`YYYY-MM-DD-HH-mm-ss` (UTC); a suffix `-2`, `-3` … only when that second is taken."""
    base = (now or utcnow()).astimezone(timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    candidate, n = base, 1
    while (paths.logs / f"{candidate}.log").exists() or (paths.run / "runs" / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def current_run_id() -> str | None:
    value = os.environ.get(RUN_ID_ENV, "").strip()
    return check_run_id(value) if value else None


# --- stages ----------------------------------------------------------------------------------


def status_for(exit_code: int) -> str:
    return {EXIT_OK: "ok", EXIT_CHANGES: "changes", EXIT_PENDING: "pending",
            EXIT_INVALID: "invalid", EXIT_GUARD: "anomaly"}.get(exit_code, "failed")


def exit_code_of(exc: BaseException) -> int:
    """The exit code the CLI will turn `exc` into."""
    if isinstance(exc, EtlError):
        return exc.exit_code
    code = getattr(exc, "exit_code", None)  # click.exceptions.Exit, ClickException, StageExit
    if isinstance(code, int):
        return code
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 1


@dataclass
class StageRecord:
    name: str
    run_id: str | None
    started_at: datetime
    pid: int = field(default_factory=os.getpid)
    ended_at: datetime | None = None
    duration_s: float | None = None
    status: str = "running"
    exit_code: int | None = None
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"], data["ended_at"] = iso(self.started_at), iso(self.ended_at)
        return data


_active: list[StageRecord] = []


def current_stage() -> StageRecord | None:
    """The innermost stage open in this process, for code that fills in counts."""
    return _active[-1] if _active else None


@contextmanager
def stage(name: str, cfg: Config | None = None) -> Iterator[StageRecord]:
    """Time a stage, log it to the run's log file, and record it in the run (if one is active).

    Re-entering the stage already open (a command wrapped once by the CLI and once by itself)
    yields the same record, so a stage is recorded once.
    """
    if _active and _active[-1].name == name:
        yield _active[-1]
        return
    run_id = current_run_id()
    redact = redactor_for(cfg)
    handler = None
    if not _active:
        if run_id:
            path = Path(os.environ.get(RUN_LOG_ENV) or log_file(run_id))
        else:
            path = paths.logs / f"{new_run_id()}.log"
        handler = attach_log_file(path, redact)
    record = StageRecord(name=name, run_id=run_id, started_at=utcnow())
    _active.append(record)
    started = time.monotonic()
    log.info("stage %s started%s", name, f" (run {run_id})" if run_id else "")
    try:
        yield record
        record.exit_code = 0
    except BaseException as exc:
        record.exit_code = exit_code_of(exc)
        if record.exit_code != 0:
            record.error = redact(_one_line(exc))
        raise
    finally:
        record.ended_at = utcnow()
        record.duration_s = round(time.monotonic() - started, 3)
        record.status = status_for(record.exit_code if record.exit_code is not None else 1)
        (log.info if record.status == "ok" else log.warning)(
            "stage %s %s in %.1fs%s", name, record.status, record.duration_s,
            f": {record.error}" if record.error else "")
        _active.pop()
        try:
            if run_id:
                append_stage_record(run_id, record, redact)
        finally:
            if handler is not None:
                detach_log_file(handler)


def command_stage(name: str, cfg: Config | None = None):
    """For the CLI's shared decorator: a stage() for pipeline stages, a no-op for other
    commands (status, compare, config), which are not part of a run's record."""
    if name in STAGES:
        return stage(name, cfg)
    return nullcontext(None)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, EtlError):
        return exc.line()
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0] if str(text) else type(exc).__name__


def append_stage_record(run_id: str, record: StageRecord, redact: Redactor) -> None:
    path = run_dir(run_id) / "stages.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(redact.obj(record.to_json()), default=str, sort_keys=True) + "\n"
    # One write with O_APPEND: stages of one run may end at the same moment in parallel makes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_stage_records(run_id: str) -> list[dict[str, Any]]:
    path = run_dir(run_id) / "stages.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("skipped an unreadable line in %s", path)
    return sorted(records, key=lambda r: r.get("started_at") or "")


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Run:
    run_id: str
    started_at: datetime
    database: str
    options: dict[str, Any]
    command: list[str]
    log_path: Path
    redact: Redactor
    handler: logging.Handler | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)  # bookkeeping problems, shown in the summary

    @property
    def dir(self) -> Path:
        return run_dir(self.run_id)


def start_run(cfg: Config, options: dict[str, Any], command: list[str],
              run_id: str | None = None) -> Run:
    """Open the run's log file and record it as running (locally, and in MongoDB if reachable)."""
    run_id = check_run_id(run_id) if run_id else new_run_id()
    redact = redactor_for(cfg)
    run = Run(run_id=run_id, started_at=utcnow(), database=cfg["MONGO_DB_NAME"],
              options=redact.obj(options), command=redact.obj(list(command)),
              log_path=log_file(run_id), redact=redact)
    run.dir.mkdir(parents=True, exist_ok=True)
    run.handler = attach_log_file(run.log_path, redact)
    log.info("run %s started: %s", run_id, " ".join(run.command))
    log.info("database %s, MongoDB %s", run.database, mask_uri(cfg["MONGO_URI"]))
    save_audit(cfg, running_audit(run), run)
    return run


def running_audit(run: Run) -> dict[str, Any]:
    return {
        "_id": run.run_id, "run_id": run.run_id, "status": "running",
        "started_at": iso(run.started_at), "ended_at": None, "duration_s": None,
        "exit_code": None, "database": run.database, "host": socket.gethostname(),
        "pid": os.getpid(), "command": run.command, "options": run.options,
        "log_file": _rel(run.log_path), "stages": [],
    }


def build_audit(run: Run, cfg: Config, exit_code: int, error: str | None = None,
                ended_at: datetime | None = None) -> dict[str, Any]:
    """The completed audit record: the stage records plus what the stages left on disk."""
    ended_at = ended_at or utcnow()
    stages = read_stage_records(run.run_id)
    facts = collect_facts(cfg, run.database, run.started_at, stages)
    audit = running_audit(run) | {
        "status": status_for(exit_code),
        "ended_at": iso(ended_at),
        "duration_s": round((ended_at - run.started_at).total_seconds(), 3),
        "exit_code": exit_code,
        "error": error,
        "stages": [_stage_summary(s) for s in stages],
        "report_file": _rel(paths.reports / f"run-{run.run_id}.html"),
        "notes": list(run.notes),
    } | facts
    return run.redact.obj(audit)


def _stage_summary(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "status", "started_at", "ended_at", "duration_s", "exit_code", "error",
            "counts", "info", "pid")
    return {k: record.get(k) for k in keep}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(paths.root))
    except ValueError:
        return str(path)


def _newer(path: Path, since: datetime) -> bool:
    # A second of slack: some filesystems keep whole-second mtimes.
    return path.exists() and path.stat().st_mtime >= since.timestamp() - 1


def collect_facts(cfg: Config, db: str, since: datetime,
                  stages: list[dict[str, Any]]) -> dict[str, Any]:
    """What this run changed, read from the files the stages exchange (docs/architecture.md).

    A stage may state a fact itself in its record's `info` (backup_version, validation, …);
    that wins over what the files suggest.
    """
    info: dict[str, Any] = {}
    for record in stages:
        info.update(record.get("info") or {})
    facts: dict[str, Any] = {
        "changes": _changes(since),
        "collections": _collections(db),
        "backup_version": info.get("backup_version") or _backup_version(db, since),
        "validation": info.get("validation") or _validation(db, since),
        "push": info.get("push"),
        "guard": info.get("guard"),
    }
    decided = facts["changes"].pop("decided", None)
    facts["decisions"] = info.get("decisions") or decided or _decisions(
        {c["id"] for c in facts["changes"]["items"]})
    if "changes_applied" in info:
        facts["changes"]["applied"] = info["changes_applied"]
    return facts


def _changes(since: datetime) -> dict[str, Any]:
    latest = paths.changes / "latest.json"
    out: dict[str, Any] = {"from_hash": None, "to_hash": None, "items": [], "applied": [],
                           "pending": []}
    try:
        data = read_json(latest)
    except (OSError, ValueError):
        return out
    items = []
    for change in data.get("changes") or []:
        if isinstance(change, dict):
            items.append({k: change.get(k) for k in ("id", "kind", "table", "column",
                                                     "classification", "summary", "impact")})
    out.update(from_hash=data.get("from_hash"), to_hash=data.get("to_hash"), items=items)
    pending_ids: set[str] = set()
    pending_file = paths.changes / "pending.json"
    if _newer(pending_file, since):
        try:
            pending = read_json(pending_file)
            listed = (pending.get("pending") or pending.get("changes") or []
                      if isinstance(pending, dict) else pending)
            pending_ids = {c.get("id") for c in listed or [] if isinstance(c, dict)}
        except (OSError, ValueError):
            pass
    out["pending"] = sorted(i for i in pending_ids if i)
    decided_file = paths.changes / "decided.json"
    if _newer(decided_file, since):
        # decide's own record of what it accepted during this run, with who decided each.
        try:
            decided = read_json(decided_file)
            if decided.get("to_hash") == data.get("to_hash"):
                done = [c for c in decided.get("changes") or [] if isinstance(c, dict) and c.get("id")]
                out["applied"] = [c["id"] for c in done]
                out["decided"] = [{"id": c["id"], "answer": c.get("answer"), "decided_by": c.get("decided_by")}
                                  for c in done if c.get("decided_by") not in (None, "auto")]
                return out
        except (OSError, ValueError, AttributeError):
            pass
    accepted = paths.schemas / "accepted.json"
    # Changes count as applied by this run when decide accepted the new snapshot during it.
    if items and _newer(accepted, since):
        try:
            if read_json(accepted).get("hash") == data.get("to_hash"):
                out["applied"] = [c["id"] for c in items if c["id"] not in pending_ids]
        except (OSError, ValueError, AttributeError):
            pass
    return out


def _decisions(change_ids: set[str]) -> list[dict[str, Any]]:
    path = paths.schemas / "decisions.yaml"
    if not change_ids or not path.is_file():
        return []
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    entries: list[Any] = []
    if isinstance(data, dict):
        raw = data.get("decisions", data)
        entries = list(raw.items()) if isinstance(raw, dict) else list(raw or [])
    elif isinstance(data, list):
        entries = data
    found = []
    for entry in entries:
        if isinstance(entry, tuple):
            key, body = entry
            body = body if isinstance(body, dict) else {"decision": body}
            body = {"id": key} | body
        elif isinstance(entry, dict):
            body = entry
        else:
            continue
        change_id = body.get("id") or body.get("change") or body.get("change_id")
        if change_id in change_ids:
            found.append({k: v for k, v in body.items() if isinstance(v, (str, int, float, bool))}
                         | {"id": change_id})
    return found


def _collections(db: str) -> dict[str, dict[str, Any]]:
    manifest = paths.transformed / db / "manifest.json"
    try:
        data = read_json(manifest)
    except (OSError, ValueError):
        return {}
    found: dict[str, dict[str, Any]] = {}
    collections = data.get("collections")
    if isinstance(collections, dict):
        for name, body in collections.items():
            if isinstance(body, dict):
                found[name] = {k: v for k, v in body.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)}
                if "count" in found[name]:  # the transform manifest's name for documents written
                    found[name].setdefault("documents", found[name].pop("count"))
            elif isinstance(body, int):
                found[name] = {"documents": body}
    counts = data.get("counts")
    if isinstance(counts, dict):
        for name, value in counts.items():
            if isinstance(value, int):
                found.setdefault(name, {})["documents"] = value
    return found


BACKUP_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{3}")


def backup_versions(db: str) -> list[Path]:
    folder = paths.backups / db
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and BACKUP_VERSION_RE.fullmatch(p.name))


def _backup_version(db: str, since: datetime) -> str | None:
    made = [p for p in backup_versions(db) if _newer(p, since)]
    return made[-1].name if made else None


def _validation(db: str, since: datetime) -> dict[str, Any] | None:
    reports = sorted(paths.reports.glob(f"validation-{db}-*.json")) if paths.reports.is_dir() else []
    for path in reversed([p for p in reports if _newer(p, since)]):
        try:
            data = read_json(path)
        except (OSError, ValueError):
            return {"report": _rel(path), "ok": None}
        # bravo-1's pattern also matches bravo-1-20261126's reports.
        if data.get("database", db) != db:
            continue
        ok = data.get("ok", data.get("passed"))
        if ok is None and isinstance(data.get("status"), str):
            ok = data["status"].lower() in ("ok", "passed", "pass")
        return {"report": _rel(path), "ok": ok}
    return None


# --- where the audit goes --------------------------------------------------------------------


def save_audit(cfg: Config, audit: dict[str, Any], run: Run) -> None:
    """Write the record to `.run/runs/<id>/audit.json`, then to MongoDB. A MongoDB that cannot be
    reached is noted (the run goes on and keeps its local copy), never fatal."""
    local = run.dir / "audit.json"
    write_atomic(local, json.dumps(audit, indent=2, default=str) + "\n")
    try:
        write_audit_mongo(cfg, audit)
    except Exception as exc:  # noqa: BLE001 - any MongoDB failure: the local copy stands
        note = f"audit record not written to MongoDB: {run.redact(_one_line(exc))}"
        log.warning(note)
        if note not in run.notes:
            run.notes.append(note)
        audit["notes"] = list(run.notes)
        write_atomic(local, json.dumps(audit, indent=2, default=str) + "\n")


def write_audit_mongo(cfg: Config, audit: dict[str, Any]) -> None:
    from etl.mongo import connect

    doc = dict(audit)
    for key in ("started_at", "ended_at"):
        doc[key] = parse_iso(doc.get(key))  # real dates, so the collection sorts and filters
    client = connect(cfg["MONGO_URI"])
    try:
        client[cfg["MONGO_DB_NAME"]][AUDIT_COLLECTION].replace_one({"_id": audit["_id"]}, doc,
                                                                  upsert=True)
    finally:
        client.close()


def last_audit(cfg: Config, db: str) -> tuple[dict[str, Any] | None, str]:
    """The most recent run of `db`: from MongoDB, else from the local copies. (record, where)."""
    try:
        from etl.mongo import connect

        client = connect(cfg["MONGO_URI"])
        try:
            docs = list(client[db][AUDIT_COLLECTION].find().sort("started_at", -1).limit(1))
        finally:
            client.close()
        if docs:
            doc = docs[0]
            for key in ("started_at", "ended_at"):
                if isinstance(doc.get(key), datetime):
                    doc[key] = iso(doc[key])
            return doc, AUDIT_COLLECTION
    except Exception as exc:  # noqa: BLE001 - fall back to the local copies
        log.info("audit collection not readable: %s", type(exc).__name__)
    runs = paths.run / "runs"
    for folder in sorted(runs.iterdir(), reverse=True) if runs.is_dir() else []:
        try:
            doc = read_json(folder / "audit.json")
        except (OSError, ValueError):
            continue
        if doc.get("database") == db:
            return doc, _rel(folder / "audit.json")
    return None, ""


# --- CloudWatch Logs -------------------------------------------------------------------------

_LINE_TS = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")
_MAX_BATCH_EVENTS = 10_000
_MAX_BATCH_BYTES = 1_000_000  # the API's limit is 1,048,576 including 26 bytes per event


def cloudwatch_events(log_text: str, audit: dict[str, Any], fallback_ms: int) -> list[dict[str, Any]]:
    """One event per log line, in order, then the audit record as a JSON event.

    Lines without a timestamp of their own (stage output copied into the log) take the last
    one seen, because CloudWatch wants events in non-decreasing time order.
    """
    events: list[dict[str, Any]] = []
    last = fallback_ms
    for line in log_text.splitlines():
        if not line.strip():
            continue
        match = _LINE_TS.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            last = max(last, int(stamp.timestamp() * 1000) + int(match.group(2)))
        events.append({"timestamp": last, "message": line[:200_000]})
    end = max([last] + [e["timestamp"] for e in events])
    events.append({"timestamp": end, "message": "ETL_AUDIT " + json.dumps(audit, default=str)})
    return events


def push_cloudwatch(cfg: Config, run: Run, audit: dict[str, Any]) -> str | None:
    """Send the run's log and audit record to CLOUDWATCH_LOG_GROUP, stream
    `<CLOUDWATCH_LOG_STREAM>-<run id>`. Returns the stream name, or None when not configured."""
    group = cfg["CLOUDWATCH_LOG_GROUP"]
    if not group:
        return None
    from etl import s3

    stream = f"{cfg['CLOUDWATCH_LOG_STREAM']}-{run.run_id}"
    client = s3.client(cfg, service="logs", endpoint_url=cfg["CLOUDWATCH_ENDPOINT_URL"])
    for call, kwargs in ((client.create_log_group, {"logGroupName": group}),
                         (client.create_log_stream, {"logGroupName": group, "logStreamName": stream})):
        try:
            call(**kwargs)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
    text = run.log_path.read_text(encoding="utf-8", errors="replace") if run.log_path.exists() else ""
    events = cloudwatch_events(run.redact(text), run.redact.obj(audit),
                               int(run.started_at.timestamp() * 1000))
    batch: list[dict[str, Any]] = []
    size = 0
    for event in events:
        cost = len(event["message"].encode("utf-8")) + 26
        if batch and (len(batch) >= _MAX_BATCH_EVENTS or size + cost > _MAX_BATCH_BYTES):
            client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            batch, size = [], 0
        batch.append(event)
        size += cost
    if batch:
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
    return stream


def finish_run(run: Run) -> None:
    """Close the run's log file."""
    if run.handler is not None:
        detach_log_file(run.handler)
        run.handler = None
