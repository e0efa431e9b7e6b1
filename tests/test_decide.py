"""etl decide: automated (cron) and agent modes, the decisions file, accepting, the plan.

Detected changes and snapshots are written here in their documented formats
(docs/architecture.md) rather than produced by detection, so these tests pin decide's contract.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.core.hashing import content_hash
from etl.adapters.mongodb import connect

REPO = Path(__file__).resolve().parents[1]

IMPACT = {
    "optional": {"zod": "auto", "mongodb": "auto", "api": "auto", "ui": "review", "tests": "update"},
    "required": {"zod": "review", "mongodb": "review", "api": "breaking", "ui": "breaking", "tests": "update"},
    "type": {"zod": "review", "mongodb": "migration", "api": "review", "ui": "review", "tests": "update"},
    "rename": {"zod": "review", "mongodb": "migration", "api": "breaking", "ui": "breaking", "tests": "update"},
    "dropped": {"zod": "review", "mongodb": "migration", "api": "breaking", "ui": "breaking", "tests": "update"},
    "new_table": {"zod": "auto", "mongodb": "auto", "api": "auto", "ui": "review", "tests": "update"},
    "index": {"zod": "none", "mongodb": "index", "api": "none", "ui": "none", "tests": "none"},
}


# --- builders for the documented formats ------------------------------------------------------

def col(name: str, type_: str = "text", nullable: bool = True, position: int = 1,
        default: str | None = None) -> dict[str, Any]:
    return {"name": name, "position": position, "type": type_, "type_kind": "base", "base_type": type_,
            "element_type": None, "nullable": nullable, "default": default, "identity": None,
            "generated": None, "comment": None}


def table(qname: str, columns: list[dict[str, Any]], indexes: list | None = None) -> dict[str, Any]:
    schema, name = qname.split(".")
    for i, c in enumerate(columns, 1):
        c["position"] = i
    return {"schema": schema, "name": name, "kind": "table", "comment": None, "columns": columns,
            "primary_key": {"name": f"{name}_pkey", "columns": ["id"]}, "foreign_keys": [],
            "unique": [], "checks": [], "indexes": indexes or [], "partitions": []}


def snapshot(tables: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"tables": {f"{t['schema']}.{t['name']}": t for t in tables}, "enums": {}, "domains": {},
            "views": {}}
    return {"format_version": 1, "hash": content_hash(body), "database": "media_tool",
            "taken_at": "2026-11-26T10:00:00Z", **body}


def change(kind: str, tbl: str, column: str | None, frm: Any, to: Any, classification: str,
           summary: str, impact: str, reason: str = "") -> dict[str, Any]:
    key = "|".join([kind, tbl, column or "", json.dumps(frm, sort_keys=True), json.dumps(to, sort_keys=True)])
    return {"id": "c-" + hashlib.sha256(key.encode()).hexdigest()[:12], "kind": kind, "table": tbl,
            "column": column, "from": frm, "to": to, "classification": classification,
            "reason": reason or classification, "impact": IMPACT[impact], "summary": summary, "details": {}}


def changes_doc(before: dict | None, after: dict, changes: list[dict]) -> dict[str, Any]:
    return {"format_version": 1, "from_hash": before["hash"] if before else None, "to_hash": after["hash"],
            "initial": before is None, "strict_mode": False, "changes": changes}


def base_snapshots() -> tuple[dict, dict]:
    before = snapshot([
        table("public.campaigns", [col("id", "bigint", False), col("name"), col("budget", "numeric(14,2)"),
                                   col("legacy_field")]),
        table("public.line_items", [col("id", "bigint", False), col("rate")]),
    ])
    after = snapshot([
        table("public.campaigns", [col("id", "bigint", False), col("title"), col("budget", "numeric(14,2)"),
                                   col("performance_score", "numeric(5,2)"),
                                   col("priority", "integer", nullable=False)]),
        table("public.line_items", [col("id", "bigint", False), col("rate", "numeric(12,2)")]),
    ])
    return before, after


def base_changes() -> list[dict[str, Any]]:
    """The seed's example plus a rename and a required field, in detection order."""
    return [
        change("column_added", "public.campaigns", "performance_score", None,
               {"type": "numeric(5,2)", "nullable": True, "default": None}, "safe",
               "New field: campaigns.performance_score (number)", "optional", "new optional field"),
        change("column_added", "public.campaigns", "priority", None,
               {"type": "integer", "nullable": False, "default": None}, "review",
               "New required field: campaigns.priority (number)", "required",
               "new required field (NOT NULL, without a default)"),
        change("column_type_changed", "public.line_items", "rate", {"type": "text"},
               {"type": "numeric(12,2)"}, "review", "Type change: line_items.rate (string → number)", "type",
               "type change that may lose data"),
        change("column_removed", "public.campaigns", "legacy_field",
               {"type": "text", "nullable": True}, None, "review", "Dropped: campaigns.legacy_field", "dropped",
               "dropped field"),
        change("column_renamed", "public.campaigns", "name", {"name": "name", "type": "text"},
               {"name": "title", "type": "text"}, "review",
               "Possible rename: campaigns.name → campaigns.title (string)",
               "rename", "rename candidate"),
    ]


class Project:
    """A scratch project root (ETL_ROOT) holding the files decide reads."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, rel: str, data: Any) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, (dict, list)):
            data = json.dumps(data, indent=2)
        path.write_text(data, encoding="utf-8")
        return path

    def setup(self, before: dict | None, after: dict, changes: list[dict]) -> None:
        if before is not None:
            self.write("schemas/accepted.json", before)
        self.write("schemas/snapshots/current.json", after)
        self.write("data/changes/latest.json", changes_doc(before, after, changes))

    def files(self) -> dict[str, bytes]:
        """Every file under the root with its content: 'nothing changed' made checkable. The
        run log (logs/) is left out: every command writes one, and it changes no state."""
        return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.root.rglob("*"))
                if p.is_file() and p.relative_to(self.root).parts[0] != "logs"}

    def read(self, rel: str) -> Any:
        return json.loads((self.root / rel).read_text(encoding="utf-8"))

    def decisions(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.root / "schemas/decisions.yaml").read_text(encoding="utf-8"))["decisions"] or {}


def make_project(tmp_path: Path, monkeypatch, mongo_db) -> Project:
    """A scratch root with the tracked config and decisions, MongoDB settings at `mongo_db`."""
    root = tmp_path / "project"
    (root / "schemas").mkdir(parents=True)
    shutil.copy(REPO / "pipeline.env", root / "pipeline.env")
    shutil.copy(REPO / "schemas" / "decisions.yaml", root / "schemas" / "decisions.yaml")
    uri, name = mongo_db
    monkeypatch.setenv("ETL_ROOT", str(root))
    monkeypatch.setenv("MONGO_URI", uri)
    monkeypatch.setenv("MONGO_DB_NAME", name)
    monkeypatch.delenv("ETL_DEBUG", raising=False)
    return Project(root)


@pytest.fixture
def proj(tmp_path, monkeypatch, mongo_db) -> Project:
    return make_project(tmp_path, monkeypatch, mongo_db)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["decide", *args], input=input)


def answers_for(changes: list[dict]) -> dict[str, dict]:
    by_kind = {c["column"]: c["id"] for c in changes}
    return {
        by_kind["priority"]: {"default": 3},
        by_kind["rate"]: {"strategy": "cast", "on_failure": "keep_old"},
        by_kind["legacy_field"]: {"action": "archive"},
        by_kind["name"]: {"action": "rename"},
    }


def seed_mongo(mongo_db) -> None:
    uri, name = mongo_db
    db = connect(uri)[name]
    db.campaigns.insert_many([{"_id": 1, "name": "Spring", "legacy_field": "x"},
                              {"_id": 2, "name": "Fall"}])
    db.line_items.insert_many([{"_id": 1, "rate": "1.50"}, {"_id": 2, "rate": "n/a"}])


def mongo_state(mongo_db) -> dict[str, list]:
    uri, name = mongo_db
    db = connect(uri)[name]
    return {c: list(db[c].find({}, sort=[("_id", 1)])) for c in sorted(db.list_collection_names())}


# --- automated (cron) mode ------------------------------------------------------------------

@pytest.mark.parametrize("flags", [[], ["--yes-safe"]], ids=["no-terminal", "yes-safe"])
def test_cron_stops_with_exit_3_and_writes_only_the_pending_list(proj, mongo_db, flags):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    seed_mongo(mongo_db)
    files_before, mongo_before = proj.files(), mongo_state(mongo_db)

    result = run(*flags)

    assert result.exit_code == 3, result.output
    assert "Error: 4 schema changes wait for a decision; MongoDB was not touched" in result.output
    assert "Type change: line_items.rate (string → number)" in result.stdout
    pending = proj.read("data/changes/pending.json")
    assert [p["id"] for p in pending["pending"]] == [c["id"] for c in changes if c["classification"] == "review"]
    type_item = next(p for p in pending["pending"] if p["kind"] == "column_type_changed")
    assert type_item["answers"]["properties"]["on_failure"]["enum"] == ["fail", "set_null", "keep_old"]
    assert "`strategy: cast` with `on_failure: fail | set_null | keep_old`" in \
        (proj.root / "data/changes/pending.md").read_text()
    files_after = proj.files()
    new_files = set(files_after) - set(files_before)
    assert new_files == {"data/changes/pending.json", "data/changes/pending.md"}
    assert all(files_after[k] == v for k, v in files_before.items())  # accepted.json, decisions.yaml…
    assert mongo_state(mongo_db) == mongo_before


def test_recorded_decisions_are_replayed_without_asking(proj, mongo_db):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    entries = "\n".join(
        f"  {cid}:\n    kind: {c['kind']}\n    table: {c['table']}\n    column: {c['column']}\n"
        + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in answers_for(changes)[cid].items())
        + "    decided_by: alice  # approved in the weekly review\n    decided_at: 2026-11-20T09:00:00Z"
        for c in changes if (cid := c["id"]) in answers_for(changes))
    proj.write("schemas/decisions.yaml", f"format_version: 1\ndecisions:\n{entries}\n")

    result = run("--no-counts")  # no input given: a prompt would fail the run

    assert result.exit_code == 0, result.output
    assert "Accepted schema" in result.stdout and "5 changes (1 safe" in result.stdout
    current = (proj.root / "schemas/snapshots/current.json").read_bytes()
    assert (proj.root / "schemas/accepted.json").read_bytes() == current
    text = (proj.root / "schemas/decisions.yaml").read_text()
    assert "# approved in the weekly review" in text  # comments survive the rewrite
    assert all(e["applied_in"] == after["hash"][:12] for e in proj.decisions().values())
    decided = proj.read("data/changes/decided.json")
    assert {d["id"]: d["decided_by"] for d in decided["changes"]}[changes[0]["id"]] == "auto"
    assert "decided_at" not in json.dumps(decided)
    assert not (proj.root / "data/changes/pending.json").exists()
    script = next((proj.root / "data/migrations").glob("*.js")).read_text()
    assert '"$rename": {"name": "title"}' in script
    assert '"$rename": {"legacy_field": "legacy_field__archived"}' in script
    assert '"$set": {"priority": {"$numberInt": "3"}}' in script


def test_rerun_after_accepting_writes_nothing_new(proj):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    proj.write("answers.json", {"decisions": answers_for(changes)})
    assert run("--decisions", str(proj.root / "answers.json"), "--no-counts").exit_code == 0
    files = proj.files()
    mtimes = {p: (proj.root / p).stat().st_mtime_ns for p in files}

    again = run("--no-counts")

    assert again.exit_code == 0, again.output
    assert proj.files() == files
    assert {p: (proj.root / p).stat().st_mtime_ns for p in files} == mtimes


def test_accepted_entries_are_history_not_stale(proj):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    proj.write("answers.json", {"decisions": answers_for(changes)})
    assert run("--decisions", str(proj.root / "answers.json"), "--no-counts").exit_code == 0
    # The next night: the accepted schema is `after`; detection finds nothing new.
    proj.write("data/changes/latest.json", changes_doc(after, after, []))

    result = run()

    assert result.exit_code == 0, result.output
    assert "No schema changes" in result.stdout


def test_a_new_snapshot_of_the_same_schema_leaves_accepted_untouched(proj):
    # The accepted snapshot is tracked in git: a nightly snapshot of an unchanged schema differs
    # only in when it was taken, and must not rewrite it.
    _, after = base_snapshots()
    proj.setup(after, after | {"taken_at": "2026-11-27T02:30:00Z"}, [])
    accepted = (proj.root / "schemas/accepted.json").read_bytes()

    result = run("--no-counts")

    assert result.exit_code == 0, result.output
    assert (proj.root / "schemas/accepted.json").read_bytes() == accepted


def test_first_run_with_nothing_accepted_accepts_current(proj):
    _, after = base_snapshots()
    proj.setup(None, after, [change("table_added", "public.campaigns", None, None, {"kind": "table", "columns": []},
                                    "safe", "New table: campaigns (5 fields)", "new_table")])
    result = run("--no-counts")
    assert result.exit_code == 0, result.output
    assert proj.read("schemas/accepted.json")["hash"] == after["hash"]


def test_changes_detected_for_another_snapshot_are_refused(proj):
    before, after = base_snapshots()
    proj.setup(before, after, base_changes())
    doc = proj.read("data/changes/latest.json")
    doc["to_hash"] = "0" * 64
    proj.write("data/changes/latest.json", doc)
    result = run()
    assert result.exit_code == 1
    assert "was detected for schema 000000000000 but the current snapshot is" in result.output
    assert "run `etl detect`" in result.output


# --- the decisions file ---------------------------------------------------------------------

def _entry_yaml(cid: str, body: str) -> str:
    return f"format_version: 1\ndecisions:\n  {cid}:\n{body}"


def test_stale_decision_is_one_error_naming_its_line(proj):
    before, after = base_snapshots()
    proj.setup(before, after, base_changes())
    proj.write("schemas/decisions.yaml", "# reviewed\n" + _entry_yaml(
        "c-0123456789ab", "    kind: column_renamed\n    table: public.campaigns\n    column: nom\n"
        "    action: rename\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n"))
    files = proj.files()

    result = run()

    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(
        "Error: decisions.yaml:4: decision c-0123456789ab (column_renamed public.campaigns.nom) names a "
        "change that no longer exists")
    assert "Traceback" not in result.output
    assert proj.files() == files


def test_entry_whose_id_now_names_another_change(proj):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    rename = changes[4]
    proj.write("schemas/decisions.yaml", _entry_yaml(
        rename["id"], "    kind: column_renamed\n    table: public.line_items\n    column: name\n"
        "    action: rename\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n"))
    result = run()
    assert result.exit_code == 1
    assert (f"Error: decisions.yaml:3: decision {rename['id']} says column_renamed public.line_items.name "
            "but that change is column_renamed public.campaigns.name") in result.output


@pytest.mark.parametrize("body, message", [
    ("    kind: column_type_changed\n    table: public.line_items\n    column: rate\n    strategy: cast\n"
     "    on_failure: explode\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n",
     "decisions.yaml:8: decisions.{id}.on_failure: 'explode' is not one of fail, set_null, keep_old"),
    ("    kind: column_type_changed\n    table: public.line_items\n    column: rate\n    strategy: cast\n"
     "    on_failure: fail\n    decided_at: '2026-11-20T09:00:00Z'\n",
     "decisions.yaml:3: decisions.{id}: 'decided_by' is a required property"),
    ("    kind: column_type_changed\n    table: public.line_items\n    column: rate\n    strategy: cast\n"
     "    on_failure: fail\n    approved: yes\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n",
     "decisions.yaml:9: decisions.{id}.approved: unknown key"),
    ("    kind: column_added\n    table: public.campaigns\n    column: priority\n    default: 1\n"
     "    backfill: id\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n",
     "decisions.yaml:3: decisions.{id}: a column_added decision needs exactly one of default, backfill or action"),
    ("    kind: column_type_changed\n    table: public.line_items\n    column: rate\n    strategy: [cast\n",
     "decisions.yaml:8: not valid YAML/JSON: expected ',' or ']'"),
])
def test_malformed_decisions_file(proj, body, message):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    proj.write("schemas/decisions.yaml", _entry_yaml(changes[2]["id"], body))
    result = run()
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: " + message.format(id=changes[2]["id"])), last
    assert "Traceback" not in result.output


def test_default_that_does_not_fit_the_column_names_its_line(proj):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    proj.write("schemas/decisions.yaml", _entry_yaml(
        changes[1]["id"], "    kind: column_added\n    table: public.campaigns\n    column: priority\n"
        "    default: high\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n"))
    result = run()
    assert result.exit_code == 1
    assert ("Error: decisions.yaml:3: default for campaigns.priority (int): 'high' is not a whole number"
            in result.output)


def test_accept_on_a_required_column_is_refused(proj):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    proj.write("schemas/decisions.yaml", _entry_yaml(
        changes[1]["id"], "    kind: column_added\n    table: public.campaigns\n    column: priority\n"
        "    action: accept\n    decided_by: bob\n    decided_at: '2026-11-20T09:00:00Z'\n"))
    result = run()
    assert result.exit_code == 1
    assert "is a required column: give a default or a backfill expression" in result.output


# --- agent mode -----------------------------------------------------------------------------

def test_agent_reads_json_and_answers_with_a_file(proj, mongo_db):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    seed_mongo(mongo_db)
    mongo_before = mongo_state(mongo_db)

    asked = run("--json")
    assert asked.exit_code == 3
    payload = json.loads(asked.stdout)
    assert payload["status"] == "pending"
    by_kind = {p["kind"]: p for p in payload["pending"]}
    assert by_kind["column_renamed"]["answers"]["properties"]["action"]["enum"] == ["rename", "drop_add"]
    assert by_kind["column_removed"]["recommended"] == {"action": "archive"}
    assert "recommended" not in by_kind["column_added"]  # required, no constant default

    answers = {p["id"]: (p.get("recommended") or {"backfill": "id * 10"}) for p in payload["pending"]}
    proj.write("answers.json", json.dumps({"decisions": answers}))
    done = run("--decisions", str(proj.root / "answers.json"), "--json", "--by", "agent-7")

    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["status"] == "accepted" and result["changes"] == 5 and result["automatic"] == 1
    recorded = proj.decisions()
    assert {cid: recorded[cid]["decided_by"] for cid in answers} == {cid: "agent-7" for cid in answers}
    assert recorded[by_kind["column_added"]["id"]]["backfill"] == "id * 10"
    plan = proj.read(result["plan_json"])
    assert {"op": "renamed", "from": "name", "field": "title", "bson": "string"} in plan["schema_diff"]["campaigns"]
    changed = next(e for e in plan["schema_diff"]["line_items"] if e["op"] == "changed")
    assert changed["from"]["bson"] == "string" and changed["to"]["bson"] == "decimal"
    counts = {row["what"]: row["documents"] for row in plan["mongodb"]["document_updates"]}
    assert counts["campaigns.name: renamed to title"] == 2
    assert counts["campaigns.priority: backfill id * 10"] == 2
    # Named as generate names them, from the affected collections (no generated file is read).
    assert plan["api"]["paths"] == ["/campaigns", "/campaigns/{id}", "/line_items", "/line_items/{id}"]
    assert plan["api"]["components"] == ["Campaigns", "LineItems"]
    assert "Possible rename: campaigns.name → campaigns.title (string)" in plan["api"]["breaking"]
    assert plan["tests"] == [{"collection": "campaigns", "test": "generated/tests/test_campaigns.py"},
                             {"collection": "line_items", "test": "generated/tests/test_line_items.py"}]
    md = (proj.root / result["plan"]).read_text()
    assert "## Canonical schema / Zod" in md and "renamed: `name` → `title`" in md
    assert mongo_state(mongo_db) == mongo_before  # counting only


def test_partial_answers_are_kept_and_the_rest_stays_pending(proj):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    rename = changes[4]
    proj.write("answers.yaml", f"decisions:\n  {rename['id']}:\n    action: drop_add\n")
    result = run("--decisions", str(proj.root / "answers.yaml"))
    assert result.exit_code == 3
    assert proj.decisions()[rename["id"]]["action"] == "drop_add"
    assert rename["id"] not in [p["id"] for p in proj.read("data/changes/pending.json")["pending"]]
    assert not (proj.root / "schemas/decisions.yaml").read_text().count("applied_in")


@pytest.mark.parametrize("answers, message", [
    ("decisions:\n  c-ffffffffffff:\n    action: rename\n",
     "answers.yaml:2: c-ffffffffffff is not one of the detected changes"),
    ("decisions:\n  {rename}:\n    action: maybe\n",
     "answers.yaml:3: decisions.{rename}.action: 'maybe' is not one of rename, drop_add"),
    ("decisions:\n  {rename}:\n    table: public.other\n    action: rename\n",
     "answers.yaml:2: {rename} is column_renamed public.campaigns.name, not 'public.other' (table)"),
    ("decisions: [1, 2\n", "answers.yaml:2: not valid YAML/JSON"),
])
def test_bad_answers_file_changes_nothing(proj, answers, message):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    proj.write("answers.yaml", answers.format(rename=changes[4]["id"]))
    files = proj.files()
    result = run("--decisions", str(proj.root / "answers.yaml"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: " + message.format(rename=changes[4]["id"]))
    assert proj.files() == files
