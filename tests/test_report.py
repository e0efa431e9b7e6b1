"""The HTML run report, rendered by headless Chromium (Debian's `chromium`): the DOM holds the
stage timeline, the counts per collection and the change impact matrix, and the screenshot
shows the stage bars in their status colours, in time order."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from etl.run.report import STATUS_COLOURS, render_report, write_report
from etl.core.redact import Redactor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (scripts/install-chromium.sh)")


def sample_audit() -> dict:
    stage = lambda name, status, start, end, **counts: {  # noqa: E731
        "name": name, "status": status, "started_at": f"2026-11-26T02:00:{start:02d}.000Z",
        "ended_at": f"2026-11-26T02:00:{end:02d}.000Z", "duration_s": float(end - start),
        "exit_code": 0 if status == "ok" else 1, "error": None if status == "ok" else "bulk write refused",
        "counts": counts, "info": {}}
    return {
        "_id": "2026-11-26-02-00-00", "run_id": "2026-11-26-02-00-00", "status": "failed",
        "started_at": "2026-11-26T02:00:00.000Z", "ended_at": "2026-11-26T02:00:50.000Z",
        "duration_s": 50.0, "exit_code": 1, "database": "bravo-1",
        "command": ["etl", "run", "--source", "s3"], "log_file": "logs/etl/2026-11-26-02-00-00.log",
        "error": "stage load: bulk write refused",
        "stages": [stage("transform", "ok", 0, 20, rows=123456, documents=123456),
                   stage("load", "failed", 20, 50, documents=1000)],
        "collections": {"campaigns": {"documents": 123000, "rows": 123000},
                        "line_items": {"documents": 456, "rows": 456}},
        "changes": {"from_hash": "a" * 64, "to_hash": "b" * 64, "applied": ["c-1"], "pending": ["c-2"],
                    "items": [
                        {"id": "c-1", "kind": "column_added", "table": "public.campaigns",
                         "column": "performance_score", "classification": "safe",
                         "summary": "New field: campaigns.performance_score (number)",
                         "impact": {"zod": "auto", "mongodb": "auto", "api": "auto", "ui": "review",
                                    "tests": "update"}},
                        {"id": "c-2", "kind": "column_renamed", "table": "public.users",
                         "column": "<script>alert(1)</script>", "classification": "review",
                         "summary": "Renamed: users.<b>name</b> → full_name",
                         "impact": {"zod": "review", "mongodb": "migration", "api": "breaking",
                                    "ui": "breaking", "tests": "update"}}]},
        "decisions": [{"id": "c-2", "decision": "rename", "by": "ops"}],
        "backup_version": "2026-11-26-001", "validation": None,
        "notes": ["stage output said <script>alert(1)</script>"],
        "report_file": "reports/run-2026-11-26-02-00-00.html",
    }


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--no-first-run", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def report_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ETL_ROOT", str(tmp_path))
    return write_report(sample_audit())


def test_report_is_self_contained_and_escaped():
    html = render_report(sample_audit())
    # Opens from a mail attachment: nothing fetched, nothing executed.
    for needle in ("<script", "src=", "href=", "@import", "url("):
        assert needle not in html.lower(), needle
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;name&lt;/b&gt;" in html


def test_report_redacts_secrets():
    audit = sample_audit()
    audit["error"] = "cannot reach mongodb://etl:hunter2secret@db:27017"
    audit["notes"] = ["password was s3cr3t-value"]
    html = render_report(audit, Redactor(["s3cr3t-value"]))
    assert "hunter2secret" not in html and "s3cr3t-value" not in html
    assert "mongodb://etl:***@db:27017" in html


@needs_chromium
def test_chromium_dom_holds_timeline_counts_and_impact_matrix(report_file):
    proc = chromium("--dump-dom", report_file.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-stage="transform" data-status="ok"' in dom
    assert 'data-stage="load" data-status="failed"' in dom
    assert "123,456" in dom and "123,000" in dom  # counts per stage and per collection
    assert "New field: campaigns.performance_score (number)" in dom
    assert "pending decision" in dom and "applied" in dom
    assert '<td class="i-breaking">breaking</td>' in dom
    assert '<td class="i-migration">migration</td>' in dom
    assert "2026-11-26-001" in dom
    assert "<script>alert(1)</script>" not in dom


@needs_chromium
def test_chromium_screenshot_shows_stage_bars_in_order(report_file, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = chromium("--hide-scrollbars", "--window-size=1200,1400", f"--screenshot={shot}",
                    report_file.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    width, height = image.size
    pixels = image.load()

    def bands(hex_colour: str, min_run: int = 30) -> list[tuple[int, int, int, int]]:
        """(y0, y1, x0, x1) of horizontal stretches of exactly this colour, merged by row."""
        target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        rows = []
        for y in range(height):
            run_start, best = None, None
            for x in range(width + 1):
                inside = x < width and pixels[x, y] == target
                if inside and run_start is None:
                    run_start = x
                elif not inside and run_start is not None:
                    if x - run_start >= min_run and (best is None or x - run_start > best[1] - best[0]):
                        best = (run_start, x)
                    run_start = None
            if best:
                rows.append((y, *best))
        merged: list[list[int]] = []
        for y, x0, x1 in rows:
            if merged and y == merged[-1][1] + 1:
                merged[-1][1] = y
            else:
                merged.append([y, y, x0, x1])
        return [tuple(b) for b in merged]

    green = bands(STATUS_COLOURS["ok"])
    red = bands(STATUS_COLOURS["failed"])
    assert len(green) == 1, green  # the transform bar
    g_y0, g_y1, g_x0, g_x1 = green[0]
    bars_below = [b for b in red if b[0] > g_y1]
    assert len(bars_below) == 1, red  # the load bar; the other red band is the status badge
    r_y0, _, r_x0, r_x1 = bars_below[0]
    assert r_y0 - g_y1 < 40  # the next lane
    assert abs(r_x0 - g_x1) <= 3  # load starts where transform ended
    # Durations 20 s and 30 s: the bars' lengths keep that ratio.
    assert (r_x1 - r_x0) / (g_x1 - g_x0) == pytest.approx(30 / 20, rel=0.05)
    assert any(b[1] < g_y0 for b in red)  # the "failed" badge above the timeline
