"""`etl decide`: safe schema changes go through; breaking ones wait for a recorded decision.

Three ways to decide, with the same effects:

- automated (cron; the default without a terminal, or --yes-safe): safe changes apply, review
  changes replay `schemas/decisions.yaml`; if one has no decision, the pending list is written
  (`data/changes/pending.json` + `.md`) and the run stops with exit 3 before anything else;
- interactive (--interactive): the seed's "Detected Schema Changes" list and menu, then one
  question per change; answers are written only once all are given (Ctrl-C writes nothing);
- agent (--json / --decisions FILE): the pending changes with the allowed answers as JSON, and
  a file of answers applied after validation.

When every change is decided, the current snapshot becomes `schemas/accepted.json`,
`data/changes/decided.json` records what was accepted, and the update plan
(`reports/update-plan-<ts>.md/.json`) and migration script (`data/migrations/<ts>.js`) are
written. decide never writes to MongoDB; it only counts documents for the plan.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pymongo.errors import OperationFailure, PyMongoError

from etl.adapters.mongodb import connect, describe
from etl.core.errors import (
    DatabaseError,
    DecisionError,
    PendingDecisions,
    SnapshotError,
)
from etl.core.fsutil import read_json, write_if_changed, write_json_if_changed
from etl.core.paths import paths
from etl.formats import decisions as dec
from etl.formats.migration import migrations_dir, write_script
from etl.formats.rules import load_rules
from etl.model.migration import Step
from etl.model.plan import build_plan, check_default, field_index, render_md

log = logging.getLogger("etl.decide")

FORMAT_VERSION = 1
# Kinds after which the previously accepted mapping reads a column or table that is gone or
# has another type: skipping them leaves the load to fail or mistype values.
READS_MISSING = {"column_removed", "column_renamed", "table_removed", "table_renamed", "column_type_changed"}
IMPACT_NAMES = (("zod", "Zod"), ("mongodb", "MongoDB"), ("api", "API"), ("ui", "UI"), ("tests", "Tests"))


def latest_path() -> Path:
    return paths.changes / "latest.json"


def accepted_path() -> Path:
    return paths.schemas / "accepted.json"


def current_path() -> Path:
    return paths.snapshots / "current.json"


def pending_path() -> Path:
    return paths.changes / "pending.json"


def decided_path() -> Path:
    return paths.changes / "decided.json"


def skipped_path() -> Path:
    return paths.changes / "skipped.json"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

@dataclass
class Inputs:
    changes_doc: dict[str, Any]
    current: dict[str, Any]
    current_bytes: bytes
    accepted: dict[str, Any] | None
    decisions: dec.Decisions

    @property
    def changes(self) -> list[dict[str, Any]]:
        return self.changes_doc["changes"]


def _read(path: Path, what: str, hint: str) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise DecisionError(f"{what} ({path.relative_to(paths.root)}) does not exist", hint=hint)
    data = path.read_bytes()
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SnapshotError(f"{path.relative_to(paths.root)} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(f"{path.relative_to(paths.root)}: unsupported format_version "
                            f"{doc.get('format_version') if isinstance(doc, dict) else None!r}")
    return doc, data


def load_inputs() -> Inputs:
    """Detected changes, the snapshots and the recorded decisions, checked against each other."""
    changes_doc, _ = _read(latest_path(), "detected changes", "run `etl detect` first")
    current, raw = _read(current_path(), "the current snapshot", "run `etl snapshot` first")
    accepted = _read(accepted_path(), "the accepted snapshot", "")[0] if accepted_path().is_file() else None
    return check_inputs(changes_doc, current, raw, accepted, dec.load_decisions())


def check_inputs(changes_doc: dict[str, Any], current: dict[str, Any], current_bytes: bytes,
                 accepted: dict[str, Any] | None, decisions: dec.Decisions) -> Inputs:
    """The inputs of decide, checked against each other (`etl plan` checks what it computed)."""
    if changes_doc.get("to_hash") != current.get("hash"):
        raise DecisionError(
            f"data/changes/latest.json was detected for schema {str(changes_doc.get('to_hash'))[:12]} "
            f"but the current snapshot is {str(current.get('hash'))[:12]}", hint="run `etl detect`")
    if accepted is not None:
        from_hash = changes_doc.get("from_hash")
        if from_hash not in (None, accepted.get("hash")) and not _already_accepted(changes_doc, accepted):
            raise DecisionError(
                f"data/changes/latest.json compares against schema {str(changes_doc.get('from_hash'))[:12]} "
                f"but the accepted one is {str(accepted.get('hash'))[:12]}", hint="run `etl detect`")
    changes = changes_doc.get("changes")
    if not isinstance(changes, list) or any(not isinstance(c, dict) or "id" not in c for c in changes):
        raise SnapshotError("data/changes/latest.json: `changes` must be a list of changes with ids")
    dec.check_against_changes(decisions, changes)
    inputs = Inputs(changes_doc, current, current_bytes, accepted, decisions)
    check_defaults(inputs, {cid: e for cid, e in decisions.entries.items()}, decisions.where)
    return inputs


def _already_accepted(changes_doc: dict[str, Any], accepted: dict[str, Any]) -> bool:
    # A rerun after accepting: latest.json still describes the step just taken.
    return changes_doc.get("to_hash") == accepted.get("hash")


def after_index(inputs: Inputs):
    return field_index(inputs.current, _rules(), None)


def _rules() -> dict[str, Any] | None:
    return load_rules()


def check_defaults(inputs: Inputs, entries: dict[str, dict[str, Any]], where: Callable[[str], str]) -> None:
    by_id = {c["id"]: c for c in inputs.changes}
    relevant = {cid: e for cid, e in entries.items() if cid in by_id and "default" in e}
    if not relevant:
        return
    after = after_index(inputs)
    for cid, entry in relevant.items():
        check_default(by_id[cid], entry, after, where(cid))


# ---------------------------------------------------------------------------------------------
# Pending
# ---------------------------------------------------------------------------------------------

def allowed_answers(change: dict[str, Any]) -> dict[str, Any]:
    return dec.answer_schema(change["kind"])


def pending_item(change: dict[str, Any]) -> dict[str, Any]:
    item = {k: change.get(k) for k in ("id", "kind", "table", "column", "summary", "classification",
                                       "reason", "impact", "from", "to")}
    item["answers"] = allowed_answers(change)
    rec = dec.recommended(change)
    if rec is not None:
        item["recommended"] = rec
    return item


def pending_payload(inputs: Inputs, pend: list[dict[str, Any]]) -> dict[str, Any]:
    example = {c["id"]: dec.recommended(c) or {"default": "<value>"} for c in pend[:2]}
    return {
        "format_version": FORMAT_VERSION,
        "status": "pending",
        "from_hash": inputs.changes_doc.get("from_hash"),
        "to_hash": inputs.changes_doc.get("to_hash"),
        "pending": [pending_item(c) for c in pend],
        "how_to_answer": {
            "command": "etl decide --decisions answers.json",
            "example": {"decisions": example},
            "note": "kind/table/column and decided_by/decided_at may be left out; they are filled in",
        },
    }


def answers_text(change: dict[str, Any]) -> str:
    kind = change["kind"]
    if kind == "column_added":
        return "`default: <value>` or `backfill: <expression>`" + (
            " or `action: accept`" if (change.get("to") or {}).get("nullable", True) else "")
    if kind == "column_type_changed":
        return "`strategy: cast` with `on_failure: fail | set_null | keep_old`"
    return "`action: " + " | ".join(dec.ACTIONS.get(kind, ("accept", "reject"))) + "`"


def render_pending_md(payload: dict[str, Any]) -> str:
    lines = ["# Schema changes waiting for a decision", "",
             f"Schema {str(payload['from_hash'] or 'none')[:12]} → {str(payload['to_hash'])[:12]}. "
             "MongoDB was not touched.", "",
             "Answer with `etl decide --interactive`, `etl decide --decisions FILE`, or add entries to "
             "`schemas/decisions.yaml` (see docs/decisions.md).", ""]
    for item in payload["pending"]:
        lines.append(f"- **{item['summary'] or item['kind']}** (`{item['id']}`, {item['kind']})")
        lines.append(f"  - why: {item.get('reason') or 'review'}")
        lines.append(f"  - impact: {impact_line(item.get('impact'))}")
        lines.append(f"  - answers: {answers_text(item)}")
        if "recommended" in item:
            lines.append(f"  - recommended: `{json.dumps(item['recommended'])}`")
    return "\n".join(lines) + "\n"


def write_pending(payload: dict[str, Any]) -> tuple[Path, Path]:
    json_path = pending_path()
    md_path = json_path.with_suffix(".md")
    write_json_if_changed(json_path, payload)
    write_if_changed(md_path, render_pending_md(payload))
    return json_path, md_path


def impact_line(impact: dict[str, Any] | None) -> str:
    if not impact:
        return "not given"
    return " · ".join(f"{label} {impact.get(key, '?')}" for key, label in IMPACT_NAMES)


# ---------------------------------------------------------------------------------------------
# Accepting
# ---------------------------------------------------------------------------------------------

def _timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    path, n = folder / f"{stem}{suffix}", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}{suffix}", n + 1
    return path


def document_counter(cfg, counts: bool) -> Callable[[Step], int | str] | None:
    """Counts of the documents each migration statement would touch, in the target database;
    None when not wanted, not reachable, or not there yet (counting must not create it)."""
    if not counts or cfg is None:
        return None
    try:
        client = connect(cfg["MONGO_URI"], timeout_ms=2000)
        if cfg["MONGO_DB_NAME"] not in client.list_database_names():
            return None
    except (DatabaseError, PyMongoError) as exc:  # counts are an extra: an unreachable server only loses them
        log.info("documents not counted for the plan: %s", exc)
        return None
    db = client[cfg["MONGO_DB_NAME"]]

    def count(step: Step) -> int | str:
        try:
            if step.op in ("updateMany", "count", "assert_none"):
                return db[step.collection].count_documents(step.filter or {})
            return db[step.collection].estimated_document_count()
        except OperationFailure as exc:  # a refused filter only loses a number in a report
            return f"not counted: {describe(exc)}"

    return count


@dataclass
class Acceptance:
    """What accepting would record, computed before anything is written."""

    entries: dict[str, dict[str, Any]]  # the decisions after it (applied_in filled in)
    answers: dict[str, dict[str, Any]]
    decided: list[dict[str, Any]]
    record: dict[str, Any]  # data/changes/decided.json
    new_acceptance: bool  # decided.json changes
    plan: dict[str, Any] | None  # the update plan, when there is something new to decide
    steps: list[Step]  # the migration script's statements

    @property
    def automatic(self) -> int:
        return sum(1 for d in self.decided if d["decided_by"] == "auto")


def acceptance(inputs: Inputs, new_entries: dict[str, dict[str, Any]], *, cfg=None, counts: bool = True,
               ) -> Acceptance:
    """What `accept` would write, without writing it. Every review change must be decided."""
    entries = {**inputs.decisions.entries, **new_entries}
    answers: dict[str, dict[str, Any]] = {}
    decided: list[dict[str, Any]] = []
    for change in inputs.changes:
        entry = entries.get(change["id"])
        if entry is None:
            if change.get("classification") == "review":
                raise PendingDecisions(f"{change['id']} ({change.get('summary')}) has no decision")
            answer, by = dec.recommended(change) or {}, "auto"
        else:
            answer, by = dec.answer_of(entry), entry.get("decided_by", "?")
        answers[change["id"]] = answer
        decided.append({"id": change["id"], "kind": change["kind"], "table": change["table"],
                        "column": change.get("column"), "classification": change.get("classification"),
                        "summary": change.get("summary"), "answer": answer, "decided_by": by})
    to_hash = str(inputs.changes_doc.get("to_hash"))
    applied = to_hash[:12]
    after = {cid: {**e, "applied_in": e.get("applied_in") or applied} if cid in answers else e
             for cid, e in entries.items()}
    record = {"format_version": FORMAT_VERSION, "from_hash": inputs.changes_doc.get("from_hash"),
              "to_hash": to_hash, "changes": decided}
    try:
        previous = read_json(decided_path()) if decided_path().is_file() else None
    except ValueError:  # a damaged record is simply rewritten
        previous = None
    new_acceptance = previous != json.loads(json.dumps(record, default=str))
    plan, steps = None, []
    if decided and new_acceptance:
        # Built before anything is written: a bad answer (a default that does not fit) must not
        # leave a half-accepted state behind.
        plan, steps = build_plan(inputs.changes_doc, answers, inputs.accepted, inputs.current,
                                 rules=_rules(), decisions_doc={"decisions": entries},
                                 count=document_counter(cfg, counts))
    return Acceptance(after, answers, decided, record, new_acceptance, plan, steps)


def accept(inputs: Inputs, new_entries: dict[str, dict[str, Any]], *, cfg=None, counts: bool = True,
           ) -> dict[str, Any]:
    """Record `new_entries`, make the current snapshot the accepted one and write decided.json,
    the update plan and the migration script. Every review change must be decided."""
    done = acceptance(inputs, new_entries, cfg=cfg, counts=counts)
    to_hash = done.record["to_hash"]
    applied = to_hash[:12]
    result: dict[str, Any] = {"status": "accepted", "to_hash": to_hash, "changes": len(done.decided),
                              "automatic": done.automatic, "plan": None, "plan_json": None, "migration": None}
    if done.plan is not None:
        plan, steps = done.plan, done.steps
        stamp = _timestamp()
        migration = None
        if steps:
            migration = _free_name(migrations_dir(), stamp, ".js")
            write_script(migration, steps, [
                f"schema {str(inputs.changes_doc.get('from_hash') or 'none')[:12]} -> {applied}",
                "written by `etl decide`; run with `etl migrate` or `mongosh <uri>/<db> <this file>`"])
            result["migration"] = str(migration.relative_to(paths.root))
        md = _free_name(paths.reports, f"update-plan-{stamp}", ".md")
        plan["migration"] = result["migration"]
        write_if_changed(md, render_md(plan, result["migration"], stamp))
        write_json_if_changed(md.with_suffix(".json"), plan)
        result["plan"] = str(md.relative_to(paths.root))
        result["plan_json"] = str(md.with_suffix(".json").relative_to(paths.root))

    updates = {cid: e for cid, e in done.entries.items() if cid in done.answers}
    path = dec.decisions_path()
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    if updates or existing is None:
        write_if_changed(path, dec.render(existing, updates))
    write_json_if_changed(decided_path(), done.record)
    # Compared by schema hash, not bytes: a new snapshot of the same schema differs only in
    # when it was taken, and the tracked accepted.json must not churn every night.
    same_schema = inputs.accepted is not None and inputs.accepted.get("hash") == inputs.current.get("hash")
    result["accepted_written"] = False if same_schema else write_if_changed(accepted_path(), inputs.current_bytes)
    for stale in (pending_path(), pending_path().with_suffix(".md"), skipped_path()):
        stale.unlink(missing_ok=True)
    log.info("accepted schema %s: %d changes (%d automatic)", applied, result["changes"], result["automatic"])
    return result


def skip(inputs: Inputs) -> dict[str, Any]:
    """Keep the accepted schema for this run; later stages load with it."""
    if inputs.accepted is None:
        raise DecisionError("there is no accepted schema yet, so schema updates cannot be skipped",
                            hint="apply or review the changes once")
    marker = {"format_version": FORMAT_VERSION, "accepted_hash": inputs.accepted.get("hash"),
              "to_hash": inputs.changes_doc.get("to_hash"),
              "changes": [c["id"] for c in inputs.changes]}
    write_json_if_changed(skipped_path(), marker)
    log.info("schema updates skipped; loading with accepted schema %s", str(inputs.accepted.get("hash"))[:12])
    return marker
