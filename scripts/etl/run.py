"""`etl run` (= `make all`): the master run.

The Makefile knows which stages are stale; this command owns everything around it. It takes
the run lock, opens the run (id, log file, audit record "running"), runs `make pipeline` with
ETL_RUN_ID and ETL_RUN_LOG exported so each stage joins the run, copies the pipeline's output
to the console and the log, and then, whatever happened, closes the run: summary table, audit
record, HTML report, CloudWatch. It exits with the pipeline's own code, so 3 (decisions
pending) and 4 (validation failed) reach cron even though make itself only says "2".
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import click

from etl import lock, runlog
from etl.cli import config_options
from etl.config import SOURCES, Config
from etl.errors import EXIT_ERROR, EXIT_GUARD, EXIT_INVALID, EXIT_OK, EXIT_PENDING, RunError
from etl.mongo import check_db_name
from etl.paths import paths
from etl.progress import PROGRESS_TTY_ENV

log = logging.getLogger("etl.run")
out_log = logging.getLogger("etl.run.output")

PIPELINE_TARGET = "pipeline"
# Exit codes a stage may hand to cron through the run; anything else is "1, an error".
PASSED_THROUGH = (EXIT_PENDING, EXIT_INVALID, EXIT_GUARD)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MAKE_ERROR = re.compile(r"make(?:\[\d+\])?: \*\*\* \[[^\]]*\] Error (\d+)")


@dataclass(frozen=True)
class RunOptions:
    source: str | None = None
    auto_latest: bool = False
    key: str | None = None
    db: str | None = None
    interactive: bool = False
    yes_safe: bool = False
    decisions: Path | None = None
    accept_shrink: str | None = None  # collections the anomaly guard lets through, comma-separated

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}

    def argv(self) -> list[str]:
        """The command line that asks for these options, for the log and the audit."""
        args = ["etl", "run"]
        for name, value in self.__dict__.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value not in (None, False):
                args += [flag, str(value)]
        return args


def _make_value(value: str) -> str:
    if "\n" in value:
        raise RunError("a flag value may not contain a line break")
    return value.replace("$", "$$")  # make would expand $(…) in a command-line variable


def make_variables(opts: RunOptions) -> list[str]:
    """The flags as make variables (the Makefile passes them on to the stages)."""
    pairs: list[tuple[str, str]] = []
    if opts.source:
        pairs.append(("SOURCE", opts.source))
    if opts.auto_latest:
        pairs.append(("AUTO_LATEST", "1"))
    if opts.key:
        pairs.append(("KEY", opts.key))
    if opts.db:
        pairs.append(("DB", opts.db))
    if opts.interactive:
        pairs.append(("INTERACTIVE", "1"))
    if opts.yes_safe:
        pairs.append(("YES_SAFE", "1"))
    if opts.decisions:
        # DECISIONS_FILE, not DECISIONS: the Makefile's DECISIONS names the tracked
        # schemas/decisions.yaml, and a command-line variable would override it.
        pairs.append(("DECISIONS_FILE", str(opts.decisions)))
    if opts.accept_shrink:
        pairs.append(("ACCEPT_SHRINK", opts.accept_shrink))
    return [f"{name}={_make_value(value)}" for name, value in pairs]


def _accept_list(values) -> list[str]:
    from etl.guard import parse_accept

    names = parse_accept(values)
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", name):
            raise RunError(f"--accept-shrink: {name[:60]!r} is not a collection name")
    return names


def check_options(opts: RunOptions, stdin_tty: bool) -> None:
    if opts.source and opts.source not in SOURCES:
        raise RunError(f"--source must be one of {', '.join(SOURCES)}, got {opts.source!r}")
    if opts.db:
        check_db_name(opts.db)
    if opts.key and opts.source not in (None, "s3"):
        raise RunError("--key names an object in S3; it needs --source s3")
    if opts.key and opts.auto_latest:
        raise RunError("--key and --auto-latest exclude each other")
    if opts.interactive and opts.yes_safe:
        raise RunError("--interactive and --yes-safe exclude each other")
    if opts.interactive and not stdin_tty:
        raise RunError("--interactive needs a terminal on stdin",
                       hint="under cron, record decisions in schemas/decisions.yaml or pass --decisions FILE")


def make_command(opts: RunOptions, root: Path) -> list[str]:
    make = shutil.which("make")
    if make is None:
        raise RunError("make is not installed",
                       hint="apt-get install make, or run the stages one by one: etl acquire, etl restore, …")
    makefile = root / "Makefile"
    if not makefile.is_file():
        raise RunError(f"no Makefile in {root}", hint="run from the project, or set ETL_ROOT")
    return [make, "--no-print-directory", "-f", str(makefile), "-C", str(root), PIPELINE_TARGET,
            *make_variables(opts)]


def child_environment(run: runlog.Run, opts: RunOptions, console: TextIO | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if console is not None and _is_tty(console):
        # The stages write into a pipe, but the pipe ends on a terminal: draw bars.
        env[PROGRESS_TTY_ENV] = "1"
    env[runlog.RUN_ID_ENV] = run.run_id
    env[runlog.RUN_LOG_ENV] = str(run.log_path)
    env["PYTHONUNBUFFERED"] = "1"  # stage output reaches the log as it happens
    env["ETL_ROOT"] = str(paths.root)
    # Flags win over files and environment for every stage, not only the ones the Makefile
    # passes the variable to.
    if opts.db:
        env["MONGO_DB_NAME"] = opts.db
    if opts.source:
        env["ETL_SOURCE"] = opts.source
    return env


class _Interrupted(Exception):
    """SIGTERM (cron's timeout, a shutdown): stop make and still close the run."""


def _log_text(line: str) -> str:
    """What a terminal would finally show for one output line: the text after the last carriage
    return (a progress bar redraws itself with \\r), without colour or erase sequences."""
    line = line.rstrip("\r")
    return _ANSI.sub("", line.rsplit("\r", 1)[-1])


def stream_process(cmd: list[str], env: dict[str, str], interactive: bool,
                   on_line: Callable[[str], None], console: TextIO,
                   redact: Callable[[str], str]) -> int:
    """Run `cmd`, copying its output to `console` and each complete line to `on_line`.

    On a terminal (or with --interactive) output is passed through as it arrives, so progress
    bars animate and a prompt without a newline shows at once; elsewhere the console gets the
    same clean lines as the log. Without --interactive the child gets no stdin: no stage can
    wait for an answer that cron will never type.
    """
    live = interactive or _is_tty(console)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=None if interactive else subprocess.DEVNULL,
                            start_new_session=not interactive)
    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    try:
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            text = decoder.decode(chunk, final=not chunk)
            if live and text:
                # Redacted chunk by chunk: a secret split across two reads could reach the
                # terminal (never the log, which is redacted line by line).
                console.write(redact(text))
                console.flush()
            pending += text
            *lines, pending = pending.split("\n")
            for line in lines:
                clean = redact(_log_text(line))
                if not live:
                    console.write(clean + "\n")
                on_line(clean)
            if not chunk:
                break
        if pending:
            clean = redact(_log_text(pending))
            console.write("\n" if live else clean + "\n")
            on_line(clean)
        console.flush()
        return proc.wait()
    except BaseException:
        _stop(proc, interactive)
        raise
    finally:
        proc.stdout.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _stop(proc: subprocess.Popen, interactive: bool) -> None:
    if proc.poll() is not None:
        return
    try:
        if interactive:
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL) if not interactive else proc.kill()
        except ProcessLookupError:
            pass
        proc.wait()


def pipeline_exit_code(make_rc: int, stages: list[dict[str, Any]], output: list[str]) -> int:
    """make says 2 for any failed recipe; the run's exit code is the failing stage's own."""
    if make_rc == 0:
        return EXIT_OK
    failed = [s for s in stages if s.get("exit_code") not in (0, None)]
    if failed:
        code = max(failed, key=lambda s: s.get("ended_at") or "")["exit_code"]
    else:
        codes = [int(m.group(1)) for line in output if (m := _MAKE_ERROR.search(line))]
        code = codes[-1] if codes else make_rc
    return code if code in PASSED_THROUGH else EXIT_ERROR


def run_pipeline(cfg: Config, opts: RunOptions, command: list[str], *,
                 console: TextIO | None = None, stdin_tty: bool | None = None) -> tuple[int, dict[str, Any]]:
    """The whole run. Returns (exit code, audit record)."""
    console = console or sys.stdout
    stdin_tty = _stdin_is_tty() if stdin_tty is None else stdin_tty
    check_options(opts, stdin_tty)
    cfg = cfg.with_overrides({"MONGO_DB_NAME": opts.db, "ETL_SOURCE": opts.source})
    root = paths.root
    cmd = make_command(opts, root)
    run_id = runlog.new_run_id()
    held = lock.acquire(run_id)
    try:
        run = runlog.start_run(cfg, opts.as_dict(), command, run_id=run_id)
        if held.recovered:
            run.notes.append(f"recovered a stale lock: {lock.describe_holder(held.recovered)}")
        return _run_and_close(cfg, run, opts, cmd, console)
    finally:
        held.release()


def _run_and_close(cfg: Config, run: runlog.Run, opts: RunOptions, cmd: list[str],
                   console: TextIO) -> tuple[int, dict[str, Any]]:
    output: list[str] = []
    tail_size = 200

    def on_line(text: str) -> None:
        out_log.info("%s", text)
        output.append(text)
        del output[:-tail_size]

    error: str | None = None
    interrupted = False
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main_thread else None
    try:
        log.info("running: %s", " ".join(cmd))
        try:
            make_rc = stream_process(cmd, child_environment(run, opts, console), opts.interactive,
                                     on_line, console, run.redact)
        except OSError as exc:
            make_rc, error = EXIT_ERROR, f"make could not be started: {exc.strerror}"
        except (KeyboardInterrupt, _Interrupted):
            make_rc, error, interrupted = EXIT_ERROR, "interrupted; the pipeline was stopped", True
        stages = runlog.read_stage_records(run.run_id)
        code = pipeline_exit_code(make_rc, stages, output)
        if code and error is None:
            failed = [s for s in stages if s.get("exit_code") not in (0, None)]
            error = (f"stage {failed[-1]['name']}: {failed[-1].get('error') or 'failed'}" if failed
                     else _last_error_line(output) or f"make exited with {make_rc}")
        log.info("pipeline finished: make exit %s, run exit %s", make_rc, code)
        return code, close_run(cfg, run, code, error, interrupted, console)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _last_error_line(output: list[str]) -> str | None:
    """A stage's own `Error: …` line says more than make's `*** [target] Error 1` after it."""
    for line in reversed(output):
        if line.startswith("Error: "):
            return line[len("Error: "):]
    return next((line for line in reversed(output) if line.strip()), None)


def _raise_interrupted(signum, frame):
    raise _Interrupted()


def close_run(cfg: Config, run: runlog.Run, code: int, error: str | None, interrupted: bool,
              console: TextIO) -> dict[str, Any]:
    """Audit record, report, CloudWatch, summary. Each step's failure is noted, never fatal:
    a broken report must not hide the run's real exit code."""
    from etl.report import write_report

    try:
        try:
            audit = runlog.build_audit(run, cfg, code, error)
        except Exception as exc:  # noqa: BLE001 - a record without the facts beats no record
            _note(run, f"run facts not collected: {type(exc).__name__}: {exc}")
            audit = runlog.running_audit(run) | {
                "status": runlog.status_for(code), "exit_code": code, "error": error,
                "ended_at": runlog.iso(runlog.utcnow())}
        if interrupted:
            audit["status"] = "interrupted"
        try:
            write_report(audit, run.redact)
        except Exception as exc:  # noqa: BLE001
            _note(run, f"report not written: {type(exc).__name__}: {exc}")
        try:
            from etl import alerts

            # Bounded by ALERT_TIMEOUT and ALERT_RETRIES; a receiver that is down is a note.
            audit["alerts"] = alerts.notify(cfg, audit, run.redact, summary_lines(audit), note=lambda n: _note(run, n))
        except Exception as exc:  # noqa: BLE001
            _note(run, f"alerts not sent: {type(exc).__name__}: {exc}")
        try:
            stream = runlog.push_cloudwatch(cfg, run, audit)
            if stream:
                audit["cloudwatch"] = {"group": cfg["CLOUDWATCH_LOG_GROUP"], "stream": stream}
        except Exception as exc:  # noqa: BLE001
            from etl.s3 import describe_error

            _note(run, f"CloudWatch not reached: {describe_error(exc)}")
        audit["notes"] = list(run.notes)
        runlog.save_audit(cfg, audit, run)
        for line in summary_lines(audit):
            click.echo(line, file=console)
            if line:
                log.info("%s", line)
        return audit
    finally:
        runlog.finish_run(run)


def _note(run: runlog.Run, note: str) -> None:
    note = run.redact(note)
    log.warning(note)
    run.notes.append(note)


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:  # stdin closed, as under some cron setups
        return False


def _fmt_count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ("" if value is None else str(value))


def summary_lines(audit: dict[str, Any]) -> list[str]:
    """The table printed at the end of every run (and written to its log)."""
    stages = audit.get("stages") or []
    rows = [("stage", "status", "duration", "rows", "documents", "other")]
    for s in stages:
        counts = dict(s.get("counts") or {})
        rows_n, docs_n = counts.pop("rows", None), counts.pop("documents", None)
        other = ", ".join(f"{k} {_fmt_count(v)}" for k, v in sorted(counts.items()))
        duration = s.get("duration_s")
        rows.append((s.get("name") or "?", s.get("status") or "?",
                     f"{duration:.1f}s" if isinstance(duration, (int, float)) else "",
                     _fmt_count(rows_n), _fmt_count(docs_n), other))
    if len(rows) == 1:
        rows.append(("(no stage reported)", "", "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 4}
    lines = ["", f"Run {audit['run_id']}: {audit['status']} (exit {audit['exit_code']}) "
                 f"in {audit.get('duration_s') or 0:.1f}s, database {audit.get('database')}"]
    worked = {s.get("name") for s in stages} - {"acquire"}
    if audit.get("exit_code") == 0 and not worked:
        # acquire always asks the source; when it brought nothing new, Make found every
        # other stage up to date.
        lines.append("  nothing to do: the source was checked, no stage was stale")
    for i, row in enumerate(rows):
        cells = [c.rjust(widths[j]) if j in numeric and i else c.ljust(widths[j])
                 for j, c in enumerate(row)]
        lines.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    changes = audit.get("changes") or {}
    detected = len(changes.get("items") or [])
    lines.append(f"  changes: {len(changes.get('applied') or [])} applied, "
                 f"{len(changes.get('pending') or [])} pending, {detected} detected; "
                 f"decisions applied: {len(audit.get('decisions') or [])}")
    collections = audit.get("collections") or {}
    if collections:
        total = sum(c.get("documents", 0) for c in collections.values())
        lines.append(f"  documents: {total:,} in {len(collections)} collections")
    validation = audit.get("validation")
    verdict = ("not run" if not validation else
               "passed" if validation.get("ok") is True else
               "FAILED" if validation.get("ok") is False else "unknown")
    lines.append(f"  versions: schema {(changes.get('to_hash') or 'none')[:12]}, "
                 f"backup {audit.get('backup_version') or 'none'}; validation {verdict}")
    if audit.get("error"):
        lines.append(f"  error: {audit['error']}")
    for note in audit.get("notes") or []:
        lines.append(f"  note: {note}")
    lines.append(f"  log: {audit.get('log_file')}   report: {audit.get('report_file')}")
    return lines


@click.command("run")
@click.option("--source", type=click.Choice(SOURCES), help="Where the dump comes from (ETL_SOURCE).")
@click.option("--auto-latest", is_flag=True, help="Take the newest dump in S3 without asking.")
@click.option("--key", help="A specific S3 object key to acquire.")
@click.option("--db", help="Target MongoDB database (MONGO_DB_NAME), e.g. a parallel bravo-1-20261126.")
@click.option("--interactive", is_flag=True, help="Ask at the terminal about breaking changes.")
@click.option("--yes-safe", is_flag=True,
              help="Apply safe changes without asking; review changes need recorded decisions.")
@click.option("--decisions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A decisions file (YAML/JSON) to apply for this run.")
@click.option("--accept-shrink", "accept_shrink", multiple=True, metavar="COLLECTION[,…]",
              help="Let the anomaly guard load these collections although they shrank (recorded in the audit).")
@config_options
def run_cmd(cfg: Config, source, auto_latest, key, db, interactive, yes_safe, decisions, accept_shrink):
    """Run the whole pipeline: acquire → … → push; only stale stages do work.

    One run at a time (.run/etl.lock). Writes logs/etl/<run id>.log, an audit record in
    the etl_audit collection, reports/run-<run id>.html and, when CLOUDWATCH_LOG_GROUP is set,
    CloudWatch Logs, and alerts (ALERT_ON, ALERT_WEBHOOK_URL, ALERT_SMTP_*). Without
    --interactive nothing prompts (safe for cron). Exits with the pipeline's code: 0 ok,
    1 error, 3 decisions pending, 4 validation failed, 5 the anomaly guard stopped the load.

    Example: etl run --source s3 --auto-latest --db bravo-1-20261126
    """
    opts = RunOptions(source=source, auto_latest=auto_latest, key=key, db=db,
                      interactive=interactive, yes_safe=yes_safe,
                      decisions=decisions.resolve() if decisions else None,
                      accept_shrink=",".join(_accept_list(accept_shrink)) or None)
    code, _ = run_pipeline(cfg, opts, opts.argv())
    if code:
        raise click.exceptions.Exit(code)
