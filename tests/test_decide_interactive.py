"""etl decide --interactive: the seed's list and menu, one question per change, driven through
the real command line (CliRunner with typed input, and a pseudo-terminal for Ctrl-C)."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest
from test_decide import (Project, base_changes, base_snapshots, change, col, make_project, mongo_state, run,
                         seed_mongo, snapshot, table)

from etl.formats.migration import parse_script

MENU = ("Detected Schema Changes:\n"
        "- New field: campaigns.performance_score (number)\n"
        "- New required field: campaigns.priority (number)\n"
        "- Type change: line_items.rate (string → number)\n"
        "- Dropped: campaigns.legacy_field\n"
        "- Possible rename: campaigns.name → campaigns.title (string)\n"
        "\n"
        "How should we handle these changes?\n"
        "[1] Apply all changes automatically\n"
        "[2] Review each change individually\n"
        "[3] Skip schema updates\n"
        "[4] Abort ETL process\n")


@pytest.fixture
def proj(tmp_path, monkeypatch, mongo_db) -> Project:
    return make_project(tmp_path, monkeypatch, mongo_db)


def setup(proj: Project):
    before, after = base_snapshots()
    changes = base_changes()
    proj.setup(before, after, changes)
    return before, after, {c["column"]: c["id"] for c in changes}


def answers(proj: Project) -> dict[str, dict]:
    keep = ("action", "default", "backfill", "strategy", "on_failure")
    return {cid: {k: v for k, v in e.items() if k in keep} for cid, e in proj.decisions().items()}


def test_menu_is_the_seeds_and_apply_all_asks_only_what_has_no_safe_answer(proj):
    _, after, ids = setup(proj)

    result = run("--interactive", "--no-counts", "--by", "dana", input="1\n1\n5\n")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(MENU)
    assert "campaigns.priority (number): no automatic answer for a required field without a default" in result.output
    assert answers(proj) == {
        ids["priority"]: {"default": 5},
        ids["rate"]: {"strategy": "cast", "on_failure": "fail"},
        ids["legacy_field"]: {"action": "archive"},
        ids["name"]: {"action": "rename"},
    }
    assert {e["decided_by"] for e in proj.decisions().values()} == {"dana"}
    assert proj.read("schemas/accepted.json")["hash"] == after["hash"]


def test_review_asks_each_question_type(proj):
    _, after, ids = setup(proj)
    typed = ["2",           # review each change
             "1",           # performance_score: load as is
             "2", "id * 2",  # priority: backfill expression
             "3",           # rate: keep the old value on failure
             "1",           # legacy_field: drop
             "2"]           # name → title: drop + add

    result = run("--interactive", "--no-counts", input="\n".join(typed) + "\n")

    assert result.exit_code == 0, result.output
    out = result.output
    assert "How should the new field campaigns.performance_score be mapped?" in out
    assert "New required field campaigns.priority (int): what do existing documents get?" in out
    assert "Migration strategy for line_items.rate (text → numeric(12,2)): values are cast." in out
    assert "campaigns.legacy_field no longer exists in PostgreSQL. What happens to it?" in out
    assert "Is name → title a rename, or a drop plus an add?" in out
    assert "UI/API impact: API breaking, UI breaking" in out  # the rename's row of the matrix
    assert answers(proj) == {
        ids["priority"]: {"backfill": "id * 2"},
        ids["rate"]: {"strategy": "cast", "on_failure": "keep_old"},
        ids["legacy_field"]: {"action": "drop"},
        ids["name"]: {"action": "drop_add"},
    }
    script = next((proj.root / "data/migrations").glob("*.js"))
    ops = [(s.op, s.collection, s.update) for s in parse_script(script.read_text()).steps]
    assert ("updateMany", "campaigns", {"$unset": {"name": ""}}) in ops
    assert ("updateMany", "campaigns", {"$unset": {"legacy_field": ""}}) in ops
    assert ("updateMany", "campaigns", [{"$set": {"priority": {"$multiply": ["$_id", 2]}}}]) in ops


def test_a_recorded_rename_is_shown_not_asked(proj):
    _, _, ids = setup(proj)
    rename = next(c for c in base_changes() if c["kind"] == "column_renamed")
    proj.write("schemas/decisions.yaml",
               f"format_version: 1\ndecisions:\n  {rename['id']}:\n    kind: column_renamed\n"
               "    table: public.campaigns\n    column: name\n    action: rename\n    decided_by: alice\n"
               "    decided_at: '2026-11-20T09:00:00Z'\n")

    result = run("--interactive", "--no-counts", input="2\n1\n1\n7\n1\n2\n")

    assert result.exit_code == 0, result.output
    assert "Possible rename: campaigns.name → campaigns.title (string): recorded decision {'action': 'rename'} " \
           "by alice" in result.output
    assert "Is name → title a rename" not in result.output
    assert "[4/4]" in result.output and "[5/" not in result.output
    recorded = proj.decisions()
    assert recorded[ids["name"]]["decided_by"] == "alice"
    assert answers(proj)[ids["priority"]] == {"default": 7}
    assert answers(proj)[ids["legacy_field"]] == {"action": "archive"}


def test_answers_out_of_range_or_malformed_are_asked_again(proj):
    _, _, ids = setup(proj)
    typed = ["7", "four", "2",    # menu: out of range, not a number, then review
             "0", "1",            # performance_score
             "1", "high", "4",    # priority: a default that is not a whole number, then 4
             "9", "2",            # rate
             "",                  # legacy_field: Enter takes the default (archive)
             "1"]                 # rename

    result = run("--interactive", "--no-counts", input="\n".join(typed) + "\n")

    assert result.exit_code == 0, result.output
    assert result.output.count("is not in the range") == 3
    assert "'four' is not a valid integer" in result.output
    assert "'high' is not a whole number" in result.output
    assert answers(proj) == {
        ids["priority"]: {"default": 4},
        ids["rate"]: {"strategy": "cast", "on_failure": "set_null"},
        ids["legacy_field"]: {"action": "archive"},
        ids["name"]: {"action": "rename"},
    }


def test_bad_backfill_expression_is_asked_again(proj):
    _, _, ids = setup(proj)
    result = run("--interactive", "--no-counts", input="1\n2\nid +* 2\nid + 1\n")
    assert result.exit_code == 0, result.output
    assert "not a valid expression" in result.output
    assert answers(proj)[ids["priority"]] == {"backfill": "id + 1"}


def test_skip_keeps_the_accepted_schema_and_says_so(proj, mongo_db):
    before, after, _ = setup(proj)
    seed_mongo(mongo_db)
    files, mongo = proj.files(), mongo_state(mongo_db)

    result = run("--interactive", input="3\n")

    assert result.exit_code == 0, result.output
    assert "Skipped schema updates: this run loads with the previously accepted schema " \
           f"{before['hash'][:12]}" in result.output
    marker = proj.read("data/changes/skipped.json")
    assert marker["accepted_hash"] == before["hash"] and marker["to_hash"] == after["hash"]
    assert "Warning: 3 of them remove, rename or retype something the accepted schema reads" in result.output
    assert set(proj.files()) - set(files) == {"data/changes/skipped.json"}
    assert all(proj.files()[k] == v for k, v in files.items())
    assert mongo_state(mongo_db) == mongo


def test_abort_changes_nothing(proj, mongo_db):
    setup(proj)
    seed_mongo(mongo_db)
    files, mongo = proj.files(), mongo_state(mongo_db)

    result = run("--interactive", input="4\n")

    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: aborted at the prompt; nothing was changed"
    assert proj.files() == files
    assert mongo_state(mongo_db) == mongo


def test_input_ending_mid_review_writes_nothing(proj):
    setup(proj)
    files = proj.files()
    result = run("--interactive", input="2\n1\n2\n")  # stops at the backfill question
    assert result.exit_code == 1
    assert "Aborted!" in result.output
    assert proj.files() == files


def test_table_level_questions(proj):
    before = snapshot([table("public.campaigns", [col("id", "bigint", False), col("code")]),
                       table("public.old_reports", [col("id", "bigint", False)])])
    unique = {"name": "campaigns_code_key", "columns": ["code"], "unique": True, "predicate": None,
              "method": "btree", "definition": "CREATE UNIQUE INDEX campaigns_code_key ON campaigns (code)"}
    after = snapshot([table("public.campaigns", [col("id", "bigint", False), col("code")], [unique]),
                      table("public.audit_log", [col("id", "bigint", False)])])
    changes = [
        change("table_added", "public.audit_log", None, None, {"kind": "table", "columns": ["id"]}, "review",
               "New table: audit_log (1 fields)", "new_table", "strict mode"),
        change("table_removed", "public.old_reports", None, {"kind": "table", "columns": ["id"]}, None, "review",
               "Dropped table: old_reports", "dropped"),
        change("index_added", "public.campaigns", None, None, unique, "review",
               "New unique index: campaigns(code)", "index", "breaking constraint"),
    ]
    proj.setup(before, after, changes)

    result = run("--interactive", "--no-counts", input="2\n2\n\n2\n")

    assert result.exit_code == 0, result.output
    assert "New table public.audit_log:" in result.output
    assert "archive: keep existing values as old_reports__archived" in result.output
    assert "index added on campaigns:" in result.output
    assert [e["action"] for e in proj.decisions().values()] == ["ignore", "archive", "reject"]
    script = next((proj.root / "data/migrations").glob("*.js"))
    steps = parse_script(script.read_text()).steps
    assert [(s.op, s.collection, s.target) for s in steps] == [("rename", "old_reports", "old_reports__archived")]


# --- a real terminal: Ctrl-C --------------------------------------------------------------------

def _read_until(fd: int, needle: bytes, seen: bytearray, deadline: float) -> None:
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; got {bytes(seen)[-300:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"process ended before {needle!r}; got {bytes(seen)[-300:]!r}"
            seen.extend(chunk)


def test_ctrl_c_during_review_writes_nothing(proj):
    setup(proj)
    files = proj.files()
    etl = Path(sys.executable).with_name("etl")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command on a terminal of its own
        os.execve(str(etl), [str(etl), "decide"], dict(os.environ))
    seen = bytearray()
    status = None
    deadline = time.monotonic() + 60
    try:
        _read_until(fd, b"[4] Abort ETL process", seen, deadline)  # no flag: a terminal means asking
        _read_until(fd, b"Choice:", seen, deadline)
        os.write(fd, b"2\r")
        _read_until(fd, b"How should the new field", seen, deadline)
        _read_until(fd, b"Choice [1]:", seen, deadline)
        # The terminal turns ^C into SIGINT. A SIGINT that lands between the prompt being
        # written and input() blocking in read() is only noticed at the next keystroke (a
        # CPython race), so press it again after a while, as a person would.
        next_press = time.monotonic()
        while status is None:
            assert time.monotonic() < deadline, f"still running after Ctrl-C: {bytes(seen)[-300:]!r}"
            if time.monotonic() >= next_press:
                os.write(fd, b"\x03")
                next_press = time.monotonic() + 3
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen.extend(os.read(fd, 4096))
                except OSError:  # the terminal closed: the command has ended
                    pass
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 1
    assert b"Aborted!" in seen
    assert proj.files() == files
