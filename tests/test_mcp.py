"""`etl mcp` through the MCP SDK's own client over stdio, on a copy of the tracked tree with the
sample's schema release in this session's S3: an agent lists the pending changes, looks at one,
has a wrong answer refused, records both decisions, and the next unattended run accepts the
schema and loads it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import REPO
from test_e2e import mongo_counts, tree  # noqa: F401 - `tree` is a fixture
from test_plan import build_sample

pytestmark = pytest.mark.slow

ETL = REPO / ".venv" / "bin" / "etl"
TOOLS = {"pending_changes", "explain_change", "record_decision", "show_plan", "run_pipeline"}


def text_of(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def review(root: Path, env: dict) -> dict:
    seen: dict = {}
    params = StdioServerParameters(command=str(ETL), args=["mcp"], env=env, cwd=str(root))
    async with Client(params) as client:
        listed = await client.list_tools()
        seen["tools"] = {t.name: t for t in listed.tools}

        result = await client.call_tool("pending_changes", {})
        assert not result.is_error, text_of(result)
        seen["pending"] = result.structured_content

        rate = next(p for p in seen["pending"]["pending"] if p["kind"] == "column_type_changed")
        result = await client.call_tool("explain_change", {"change_id": rate["id"],
                                                           "answer": {"strategy": "cast", "on_failure": "set_null"}})
        assert not result.is_error, text_of(result)
        seen["explain"] = result.structured_content

        result = await client.call_tool("record_decision", {"change_id": rate["id"],
                                                            "answer": {"strategy": "cast", "on_failure": "explode"}})
        seen["refused"] = (result.is_error, text_of(result))
        result = await client.call_tool("record_decision", {"change_id": "c-000000000000", "answer": {"action": "drop"}})
        seen["unknown"] = (result.is_error, text_of(result))

        recorded = []
        for item, answer in ((rate, {"strategy": "cast", "on_failure": "set_null"}),
                             (next(p for p in seen["pending"]["pending"] if p["kind"] == "column_removed"),
                              {"action": "archive"})):
            result = await client.call_tool("record_decision", {"change_id": item["id"], "answer": answer,
                                                                "decided_by": "agent", "note": "reviewed over MCP"})
            assert not result.is_error, text_of(result)
            recorded.append(result.structured_content)
        seen["recorded"] = recorded

        result = await client.call_tool("show_plan", {})
        assert not result.is_error, text_of(result)
        seen["plan"] = result.structured_content["plan"]

        result = await client.call_tool("run_pipeline", {}, read_timeout_seconds=900)
        assert not result.is_error, text_of(result)
        seen["run"] = result.structured_content
    return seen


def test_an_agent_reviews_the_sample_release_over_mcp(tree):
    root, env, s3client, bucket = tree
    changed = build_sample(root, env, "changed.dump", "--variant", "changed", "--metrics-rows", "2000")
    s3client.upload_file(str(changed), bucket, "postgres-exports/media_tool-2026-11-27.dump")

    seen = asyncio.run(review(root, env))

    assert set(seen["tools"]) == TOOLS
    assert seen["tools"]["record_decision"].input_schema["required"] == ["change_id", "answer"]

    pending = seen["pending"]
    assert pending["next_run_exit_code"] == 3 and pending["next_run_stops_at"] == "decide"
    assert len(pending["changes"]) == 8
    assert sorted(p["kind"] for p in pending["pending"]) == ["column_removed", "column_type_changed"]
    rate = next(p for p in pending["pending"] if p["kind"] == "column_type_changed")
    assert rate["summary"] == "Type change: line_items.rate (number → string)"
    assert rate["impact"] and rate["answers"]["properties"]["on_failure"]["enum"] == ["fail", "set_null", "keep_old"]

    explained = seen["explain"]
    assert explained["change"]["id"] == rate["id"]
    assert explained["evidence"]["from"]["type"] == "numeric(10,4)" and explained["evidence"]["to"]["type"] == "text"
    assert "line_items" in explained["affects"]["collections"]
    assert {"path": "generated/zod/line_items.ts", "exists": True} in explained["affects"]["artifacts"]
    assert explained["migration"]["script"].startswith("// etl migration format 1")
    assert '"line_items"' in explained["migration"]["script"]

    refused, message = seen["refused"]
    assert refused and "decisions.c-" in message and "on_failure: 'explode' is not one of fail, set_null, keep_old" in message
    assert "answer.json" not in message
    unknown, message = seen["unknown"]
    assert unknown and "'c-000000000000' is not one of the detected changes" in message

    assert seen["recorded"][0]["still_pending"] == [next(p["id"] for p in pending["pending"]
                                                         if p["kind"] == "column_removed")]
    assert seen["recorded"][1]["still_pending"] == []
    decisions = yaml.safe_load((root / "schemas" / "decisions.yaml").read_text())["decisions"]
    assert decisions[rate["id"]]["strategy"] == "cast" and decisions[rate["id"]]["on_failure"] == "set_null"
    assert decisions[rate["id"]]["decided_by"] == "agent" and decisions[rate["id"]]["note"] == "reviewed over MCP"

    assert seen["plan"]["exit_code"] == 0 and seen["plan"]["schema"]["missing_decisions"] == []

    run = seen["run"]
    assert run["exit_code"] == 0, run["summary"]
    assert run["audit"]["status"] == "ok"
    accepted = json.loads((root / "schemas" / "accepted.json").read_text())
    assert accepted["hash"] == pending["to_hash"]
    assert mongo_counts(env)["audiences"] == 300
    recorded = {d["id"]: d for d in run["audit"]["decisions"]}
    assert recorded[rate["id"]]["decided_by"] == "agent"
