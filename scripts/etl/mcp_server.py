"""`etl mcp`: the schema review as tools an agent calls, over the Model Context Protocol (stdio).

`etl decide --json` serves programs that learn its output from `--help`; an MCP client (Claude
Code, or any other) instead lists these tools with their input schemas and calls them:

* `pending_changes` — the schema changes the next run would meet, each with its classification,
  impact on Zod/MongoDB/API/UI/Tests, and for those that wait for a decision the allowed answers
  (a JSON Schema) and the recommended one;
* `explain_change` — one change in depth: the evidence (from/to, reason, a rename's evidence),
  the artifacts it touches (canonical schema, generated files, OpenAPI paths, MongoDB
  collection), and the migration script the answer would generate, with document counts;
* `record_decision` — an answer, validated exactly as schemas/decisions.yaml is (the same JSON
  Schema, the same checks against the change, the same type check of a default), then merged
  into schemas/decisions.yaml, comments kept;
* `show_plan` — `etl plan`: what `make all` would do now;
* `run_pipeline` — `etl run`, unattended, with its exit code, summary and audit record.

The server reads the project at ETL_ROOT (or the one it is installed in) with the usual
settings; everything it answers comes from the same code the pipeline runs. Nothing but the
protocol goes to stdout.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from etl.cli import config_options
from etl.config import Config, load_config
from etl.errors import EtlError
from etl.paths import paths

log = logging.getLogger("etl.mcp")

INSTRUCTIONS = """\
Reviews schema changes of the media_tool → bravo-1 pipeline before the nightly run applies them.
Start with pending_changes. For each change that waits for a decision, explain_change shows its
evidence, what it touches and the migration it would generate; record_decision stores an answer
(it must match the change's `answers` schema, e.g. {"strategy": "cast", "on_failure": "set_null"}
or {"action": "archive"}). show_plan tells what the next run would do and its exit code
(3: decisions missing, 5: the anomaly guard would stop it); run_pipeline runs it unattended."""


def _tool_error(message: str):
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(message)


class Review:
    """The state behind the tools: the settings and the last plan's view of the changes."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.inputs: dict[str, Any] | None = None

    def config(self) -> Config:
        # Read again for each call: a changed pipeline.local.env applies without a restart.
        try:
            return load_config()
        except EtlError:
            return self.cfg

    def plan(self, accept: list[str] | None = None) -> dict[str, Any]:
        from etl.plan_run import Options, plan_and_inputs

        plan, inputs = plan_and_inputs(self.config(), Options(accept=tuple(accept or ())))
        self.inputs = inputs
        return plan

    def changes(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if self.inputs is None or self.inputs.get("changes_doc") is None:
            self.plan()
        doc = (self.inputs or {}).get("changes_doc")
        if doc is None:
            raise _tool_error("no schema changes are known yet: the source could not be read (see show_plan)")
        return doc, doc.get("changes") or []

    def change(self, change_id: str) -> dict[str, Any]:
        _, changes = self.changes()
        for change in changes:
            if change["id"] == change_id:
                return change
        known = ", ".join(c["id"] for c in changes) or "none"
        raise _tool_error(f"{change_id!r} is not one of the detected changes (known: {known})")


def _validated_entry(review: Review, change_id: str, answer: dict[str, Any], decided_by: str,
                     note: str | None = None) -> dict[str, Any]:
    """The decisions.yaml entry for `answer`, checked exactly as a decisions file is."""
    from etl import decide as dcd
    from etl import decisions as dec

    doc, changes = review.changes()
    review.change(change_id)
    if not isinstance(answer, dict):
        raise _tool_error("the answer must be an object, for example {\"action\": \"archive\"}")
    body = dict(answer) | ({"note": note} if note else {})
    with tempfile.TemporaryDirectory(prefix="etl-mcp-") as tmp:
        path = Path(tmp) / "answer.json"
        path.write_text(json.dumps({"decisions": {change_id: body}}, indent=2), encoding="utf-8")
        try:
            entries = dec.load_answers(path, changes, decided_by)
            recorded = dec.load_decisions()
            inputs = dcd.Inputs(doc, review.inputs["snapshot"], b"", review.inputs.get("accepted"), recorded)
            dcd._check_defaults(inputs, entries, lambda cid: "answer")
        except EtlError as exc:
            # The file is this call's own: its name and line say nothing to the caller.
            raise _tool_error(re.sub(r"^answer\.json(:\d+)?: ", "", exc.line())) from None
    return entries[change_id]


def record(review: Review, change_id: str, answer: dict[str, Any], decided_by: str,
           note: str | None = None) -> dict[str, Any]:
    from etl import decisions as dec
    from etl.fsutil import write_if_changed

    entry = _validated_entry(review, change_id, answer, decided_by, note)
    path = dec.decisions_path()
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    text = dec.render(existing, {change_id: entry})
    _, changes = review.changes()
    try:
        # The whole file as the next run will read it, before it is written.
        dec.check_against_changes(dec.parse_decisions(text, path.name), changes)
    except EtlError as exc:
        raise _tool_error(exc.line()) from None
    write_if_changed(path, text)
    recorded = dec.load_decisions().entries
    waiting = [c["id"] for c in dec.pending(changes, dec.load_decisions())]
    return {"recorded": {change_id: recorded[change_id]}, "file": str(path.relative_to(paths.root)),
            "still_pending": waiting,
            "next": "run_pipeline (or `make all`) applies it" if not waiting else
            f"{len(waiting)} changes still wait for a decision"}


def explain(review: Review, change_id: str, answer: dict[str, Any] | None = None) -> dict[str, Any]:
    from etl import decisions as dec
    from etl.decide import _counting_db
    from etl.mapping import collection_name
    from etl.migrate import render_script
    from etl.plan import build_plan
    from etl.rules import load_rules

    doc, _ = review.changes()
    change = review.change(change_id)
    recorded = dec.load_decisions().entries
    if answer is not None:
        entry = _validated_entry(review, change_id, answer, "preview")
        used, why = dec.answer_of(entry), "the answer given"
    elif change_id in recorded:
        used, why = dec.answer_of(recorded[change_id]), f"the recorded decision ({recorded[change_id].get('decided_by')})"
    else:
        used, why = dec.recommended(change), "the recommended answer"
        if used is None:
            used, why = {"default": None}, "no answer: a new required column needs a default or a backfill"
    entries = {**recorded, change_id: {**dec.make_entry(change, used, "preview")}} if used else recorded
    single = {**doc, "changes": [change]}
    db = _counting_db(review.config(), True)
    try:
        plan, steps = build_plan(single, {change_id: used}, review.inputs.get("accepted"), review.inputs["snapshot"],
                                 rules=load_rules(), decisions_doc={"decisions": entries}, db=db,
                                 openapi_before=paths.generated / "openapi.yaml", tests_dir=paths.generated / "tests")
    except EtlError as exc:
        raise _tool_error(exc.line()) from None
    finally:
        if db is not None:
            db.client.close()
    collections = sorted(set(plan["schema_diff"]) | {collection_name(change["table"])})
    artifacts = []
    for coll in collections:
        slug = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in coll)
        for rel in (f"schemas/collections/{coll}.schema.json", f"generated/jsonschema/{coll}.schema.json",
                    f"generated/typescript/{slug}.ts", f"generated/zod/{slug}.ts", f"generated/models/{slug}.py",
                    f"generated/tests/test_{slug}.py"):
            artifacts.append({"path": rel, "exists": (paths.root / rel).is_file()})
    script = render_script(steps, [f"{change.get('summary')} — {json.dumps(used)}"]) if steps else None
    return {
        "change": {k: change.get(k) for k in ("id", "kind", "table", "column", "summary", "classification",
                                              "reason", "impact", "matrix_row")},
        "evidence": {"from": change.get("from"), "to": change.get("to"), "details": change.get("details")},
        "decision": {"answer": used, "source": why, "allowed": dec.answer_schema(change["kind"]),
                     "recommended": dec.recommended(change), "recorded": recorded.get(change_id)},
        "affects": {"collections": collections, "schema_diff": plan["schema_diff"],
                    "mongodb": plan["mongodb"]["validators_and_indexes"], "api": plan["api"],
                    "artifacts": artifacts},
        "migration": {"statements": plan["mongodb"]["document_updates"], "script": script,
                      "notes": plan["changes"][0]["notes"] if plan["changes"] else []},
    }


def pending(review: Review) -> dict[str, Any]:
    plan = review.plan()
    schema = plan.get("schema")
    doc = (review.inputs or {}).get("changes_doc") or {}
    out: dict[str, Any] = {"from_hash": doc.get("from_hash"), "to_hash": doc.get("to_hash"),
                           "next_run_exit_code": plan["exit_code"], "next_run_stops_at": plan["stops_at"]}
    if schema is None:
        out.update(pending=[], changes=[], note="no schema change to decide: the next run's decide is up to date")
        return out
    out["pending"] = schema["pending"]
    out["changes"] = [{k: c[k] for k in ("id", "kind", "summary", "classification", "decision", "answer", "impact")}
                      for c in schema["changes"]]
    out["how_to_answer"] = "record_decision(change_id, answer) with an answer matching the change's `answers` schema"
    return out


def run_pipeline(review: Review, accept_shrink: list[str] | None = None) -> dict[str, Any]:
    etl = Path(sys.executable).with_name("etl")
    cmd = [str(etl), "run"] + [arg for name in accept_shrink or [] for arg in ("--accept-shrink", name)]
    env = dict(os.environ, ETL_ROOT=str(paths.root))
    proc = subprocess.run(cmd, cwd=paths.root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    runs = sorted((paths.run / "runs").iterdir()) if (paths.run / "runs").is_dir() else []
    audit = {}
    if runs:
        try:
            audit = json.loads((runs[-1] / "audit.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            audit = {}
    review.inputs = None  # the run moved things on
    keep = ("run_id", "status", "exit_code", "error", "changes", "decisions", "collections", "backup_version",
            "validation", "guard", "notes", "log_file", "report_file")
    return {"exit_code": proc.returncode, "summary": lines[-40:], "audit": {k: audit.get(k) for k in keep}}


def build_server(cfg: Config):
    from mcp.server.mcpserver import MCPServer

    review = Review(cfg)
    server = MCPServer("media-tool-etl", instructions=INSTRUCTIONS)

    @server.tool()
    def pending_changes() -> dict[str, Any]:
        """The schema changes the next run would meet, with their impact; for each change that
        waits for a decision, the allowed answers (JSON Schema) and the recommended one."""
        return _guarded(lambda: pending(review))

    @server.tool()
    def explain_change(change_id: str, answer: dict[str, Any] | None = None) -> dict[str, Any]:
        """One change: evidence, affected collections and artifacts, and the migration its
        answer would generate (the given answer, else the recorded one, else the recommended)."""
        return _guarded(lambda: explain(review, change_id, answer))

    @server.tool()
    def record_decision(change_id: str, answer: dict[str, Any], decided_by: str = "mcp",
                        note: str | None = None) -> dict[str, Any]:
        """Record an answer for a change in schemas/decisions.yaml, validated exactly as that
        file is. Example answers: {"action": "archive"}, {"strategy": "cast", "on_failure": "fail"}."""
        return _guarded(lambda: record(review, change_id, answer, decided_by, note))

    @server.tool()
    def show_plan(accept_shrink: list[str] | None = None) -> dict[str, Any]:
        """What `make all` would do now (etl plan): stages, changes, counts, exit code."""
        from etl.plan_run import render_text

        plan = _guarded(lambda: review.plan(accept_shrink))
        return {"plan": plan, "text": "\n".join(render_text(plan))}

    @server.tool(name="run_pipeline")
    def run_pipeline_tool(accept_shrink: list[str] | None = None) -> dict[str, Any]:
        """Run the pipeline unattended (etl run): exit code, summary and audit record.
        accept_shrink names collections the anomaly guard may load although they shrank."""
        return run_pipeline(review, accept_shrink)

    return server


def _guarded(fn):
    """An EtlError (a source that cannot be read, a malformed decisions file) becomes the
    tool's error message rather than a crash."""
    try:
        return fn()
    except EtlError as exc:
        raise _tool_error(exc.line()) from None


@click.command("mcp")
@config_options
def mcp_cmd(cfg: Config):
    """Serve the schema review to an agent over MCP (stdio): pending changes, explain, record
    a decision, the plan, and the run.

    An MCP client (such as Claude Code) starts it as a command in the project's folder, or
    with ETL_ROOT pointing there; nothing but the protocol goes to stdout.

    Example: {"command": "/srv/media-tool-etl/.venv/bin/etl", "args": ["mcp"]}
    """
    build_server(cfg).run("stdio")
