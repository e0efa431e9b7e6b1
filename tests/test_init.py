"""`etl init`: what it removes, what it keeps, and that it asks first.

The whole path (`make init`, then `make all` adopting a database the project has never seen)
runs through the real Makefile in tests/test_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import cli

DERIVED = ("schemas/accepted.json", "schemas/mapping.json", "schemas/collections/index.json",
           "schemas/snapshots/current.json", "data/changes/latest.json", "data/dumps/current.json",
           "data/restored.json", "data/transformed/bravo-1/manifest.json", ".make/bravo-1/load.stamp",
           ".make/canonical.stamp", "generated/zod/campaigns.ts", "generated/.canonical-hash",
           "generated/openapi.yaml")
KEPT = ("backups/bravo-1/2026-11-26-001/manifest.json", "logs/etl/2026-11-26-02-30-01.log",
        "reports/run-2026-11-26-02-30-01.html", "data/sample/media_tool.dump", "pipeline.env")


def run(*args: str, expect: int | None = 0, **kw):
    result = CliRunner().invoke(cli, list(args), **kw)
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def used(project: Path) -> Path:
    """A project that has run: the sample's tracked state plus a run's untracked files."""
    for name in DERIVED + KEPT:
        path = project / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
    return project


def test_without_a_terminal_it_needs_yes_and_changes_nothing(used):
    rules_before = (used / "schemas/rules.yaml").read_text()
    result = run("init", expect=1)
    lines = result.output.strip().splitlines()
    assert lines[-1] == ("Error: etl init removes the accepted schema and the state derived from it; nothing was "
                         "changed (confirm at a terminal, or pass --yes (make init YES=1))")
    # it said what it would remove before refusing
    assert "  schemas/accepted.json" in result.output and "the accepted schema of media_tool: 12 tables" in result.output
    assert "  generated/zod/" in result.output and "  .make/" in result.output
    assert all((used / name).exists() for name in DERIVED)
    assert (used / "schemas/rules.yaml").read_text() == rules_before


def test_dry_run_only_describes(used):
    result = run("init", "--dry-run")
    assert "It removes:" in result.output and "Dry run: nothing was changed." in result.output
    assert all((used / name).exists() for name in DERIVED)


def test_yes_removes_the_derived_state_and_keeps_the_rest(used):
    from etl.formats.decisions import load_decisions
    from etl.formats.rules import load_rules

    result = run("init", "--yes")
    assert "Done:" in result.output
    assert [name for name in DERIVED if (used / name).exists()] == []
    assert [name for name in KEPT if not (used / name).exists()] == []
    assert not (used / "schemas/snapshots").exists() and not (used / "schemas/collections").exists()
    assert load_rules(used / "schemas/rules.yaml") == {"version": 1}
    assert load_decisions(used / "schemas/decisions.yaml").entries == {}
    assert "Already set up: nothing to change." in run("init", "--yes").output


def test_at_a_terminal_it_asks(used, monkeypatch):
    monkeypatch.setattr("etl.cli.init._at_terminal", lambda: True)
    declined = run("init", input="n\n")
    assert "Remove and reset these? [y/N]" in declined.output and "Nothing was changed." in declined.output
    assert all((used / name).exists() for name in DERIVED)
    run("init", input="y\n")
    assert [name for name in DERIVED if (used / name).exists()] == []


def test_a_running_pipeline_keeps_its_files(used):
    from etl.core import lock

    with lock.acquire("2026-11-26-02-30-01"):
        result = run("init", "--yes", expect=1)
    assert "another run holds the lock" in result.output.strip().splitlines()[-1]
    assert all((used / name).exists() for name in DERIVED)


def test_the_source_is_named_without_its_password(used, monkeypatch):
    monkeypatch.setenv("ETL_SOURCE", "direct")
    monkeypatch.setenv("PROD_PG_DSN", "postgresql://reader:hunter2-secret@10.0.0.12:5432/crm")
    result = run("init", "--dry-run")
    assert "pg_dump of postgresql://reader:***@10.0.0.12:5432/crm" in result.output
    assert "hunter2-secret" not in result.output
