"""The HTML run report, `reports/run-<run id>.html`: one self-contained file (inline CSS, no
scripts, no external resources) that opens from a mail attachment or an S3 console.

It shows the stage timeline, the counts per collection, the change impact matrix (the seed's
table: Zod / MongoDB / API / UI / Tests per change), and the backup, validation and decisions
of the run. Everything comes from the audit record (etl.runlog.build_audit), so the report
and the audit collection can never disagree.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from etl.fsutil import write_atomic
from etl.paths import paths
from etl.runlog import Redactor, check_run_id, parse_iso

STATUS_COLOURS = {
    "ok": "#2e7d32", "failed": "#c62828", "pending": "#ef6c00", "invalid": "#6a1b9a",
    "running": "#1565c0", "changes": "#00838f", "interrupted": "#616161", "anomaly": "#ad1457",
}
IMPACT_COLUMNS = (("zod", "Zod"), ("mongodb", "MongoDB"), ("api", "API"), ("ui", "UI"),
                  ("tests", "Tests"))

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>ETL run {{ a.run_id }} — {{ a.status }}</title>
<style>
 body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#212121;background:#fff}
 h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
 .badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
 table{border-collapse:collapse;margin:4px 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
 th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
 .meta td:first-child{color:#616161}
 .timeline{width:900px} .lane{display:flex;align-items:center;height:26px}
 .lane .name{width:130px;flex:none} .lane .track{position:relative;flex:1;height:18px;background:#f1f1f1}
 .lane .bar{position:absolute;top:0;height:18px;min-width:3px}
 .lane .dur{width:110px;flex:none;text-align:right;font-variant-numeric:tabular-nums}
 .i-auto{background:#e8f5e9} .i-review{background:#fff8e1} .i-breaking{background:#ffebee;font-weight:600}
 .i-migration{background:#f3e5f5} .i-index{background:#e3f2fd}
 .muted{color:#757575}
</style></head>
<body>
<h1>ETL run {{ a.run_id }} <span class="badge" id="status" style="background:{{ colour(a.status) }}">{{ a.status }}</span></h1>
<div class="muted">database {{ a.database }} · exit code {{ a.exit_code if a.exit_code is not none else "—" }}</div>
<table class="meta">
 <tr><td>started</td><td>{{ a.started_at or "—" }}</td></tr>
 <tr><td>ended</td><td>{{ a.ended_at or "—" }}</td></tr>
 <tr><td>duration</td><td>{{ secs(a.duration_s) }}</td></tr>
 <tr><td>command</td><td><code>{{ (a.command or []) | join(" ") }}</code></td></tr>
 <tr><td>log file</td><td><code>{{ a.log_file }}</code></td></tr>
 <tr><td>backup version</td><td id="backup">{{ a.backup_version or "none in this run" }}</td></tr>
 <tr><td>validation</td><td id="validation">{{ validation }}</td></tr>
 {% if a.error %}<tr><td>error</td><td id="error">{{ a.error }}</td></tr>{% endif %}
</table>
{% for note in a.notes or [] %}<p class="muted">note: {{ note }}</p>{% endfor %}

<h2>Stages</h2>
{% if lanes %}
<div class="timeline" id="timeline">
{% for lane in lanes %}
 <div class="lane" data-stage="{{ lane.name }}" data-status="{{ lane.status }}">
  <div class="name">{{ lane.name }}</div>
  <div class="track"><div class="bar" style="left:{{ lane.left }}%;width:{{ lane.width }}%;background:{{ colour(lane.status) }}" title="{{ lane.status }}"></div></div>
  <div class="dur">{{ secs(lane.duration_s) }}</div>
 </div>
{% endfor %}
</div>
<table id="stages">
 <tr><th>stage</th><th>status</th><th>duration</th><th>counts</th><th>error</th></tr>
 {% for s in a.stages %}
 <tr><td>{{ s.name }}</td><td style="color:{{ colour(s.status) }}">{{ s.status }}</td><td class="num">{{ secs(s.duration_s) }}</td>
  <td>{% for k, v in (s.counts or {}).items() %}{{ k }} {{ "{:,}".format(v) if v is number else v }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
  <td>{{ s.error or "" }}</td></tr>
 {% endfor %}
</table>
{% else %}
<p class="muted" id="timeline">No stage reported to this run.</p>
{% endif %}

<h2>Collections</h2>
{% if collections %}
<table id="collections">
 <tr><th>collection</th>{% for c in count_columns %}<th>{{ c }}</th>{% endfor %}</tr>
 {% for name, counts in collections %}
 <tr><td>{{ name }}</td>{% for c in count_columns %}<td class="num">{{ "{:,}".format(counts[c]) if counts[c] is defined else "" }}</td>{% endfor %}</tr>
 {% endfor %}
</table>
{% else %}<p class="muted" id="collections">No transform manifest for this database.</p>{% endif %}

<h2>Change impact matrix</h2>
{% if changes %}
<p class="muted">schema {{ short(a.changes.from_hash) }} → {{ short(a.changes.to_hash) }}</p>
<table id="impact">
 <tr><th>change</th><th>class</th>{% for key, label in impact_columns %}<th>{{ label }}</th>{% endfor %}<th>in this run</th></tr>
 {% for c in changes %}
 <tr><td>{{ c.summary or (c.kind ~ " " ~ (c.table or "") ~ ("." ~ c.column if c.column else "")) }}</td><td>{{ c.classification }}</td>
  {% for key, label in impact_columns %}{% set v = (c.impact or {}).get(key, "") %}<td class="i-{{ v | lower }}">{{ v }}</td>{% endfor %}
  <td>{{ c.state }}</td></tr>
 {% endfor %}
</table>
{% else %}<p class="muted" id="impact">No schema changes.</p>{% endif %}

{% if a.decisions %}
<h2>Decisions applied</h2>
<table id="decisions"><tr><th>change</th><th>decision</th></tr>
 {% for d in a.decisions %}<tr><td>{{ d.id }}</td><td>{% for k, v in d.items() if k != "id" %}{{ k }}: {{ v }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>{% endfor %}
</table>
{% endif %}
<p class="muted">generated {{ generated }}</p>
</body></html>
"""


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f}s"
    return f"{int(value // 60)}m{int(value % 60):02d}s"


def _lanes(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage as a bar placed on the run's time axis (percent of the whole run)."""
    stages = audit.get("stages") or []
    start = parse_iso(audit.get("started_at"))
    end = parse_iso(audit.get("ended_at"))
    times = [(parse_iso(s.get("started_at")), parse_iso(s.get("ended_at"))) for s in stages]
    if start is None and times:
        start = min(t[0] for t in times if t[0])
    ends = [t[1] for t in times if t[1]] + ([end] if end else [])
    end = max(ends) if ends else start
    span = max((end - start).total_seconds(), 1e-3) if start and end else 1.0
    lanes = []
    for s, (s_start, s_end) in zip(stages, times):
        left = ((s_start - start).total_seconds() / span * 100) if s_start and start else 0.0
        width = ((s_end - s_start).total_seconds() / span * 100) if s_start and s_end else 0.0
        left = min(max(left, 0.0), 100.0)
        lanes.append({"name": s.get("name"), "status": s.get("status") or "running",
                      "duration_s": s.get("duration_s"),
                      "left": f"{left:.2f}", "width": f"{min(max(width, 0.4), 100.0 - left):.2f}"})
    return lanes


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(_TEMPLATE)


def render_report(audit: dict[str, Any], redact: Redactor | None = None,
                  now: datetime | None = None) -> str:
    """The report's HTML for one audit record."""
    collections = sorted((audit.get("collections") or {}).items())
    count_columns = sorted({k for _, counts in collections for k in counts},
                           key=lambda k: (k not in ("rows", "documents"), k))
    changes_doc = audit.get("changes") or {}
    applied, pending = set(changes_doc.get("applied") or []), set(changes_doc.get("pending") or [])
    changes = [c | {"state": "applied" if c.get("id") in applied else
                    "pending decision" if c.get("id") in pending else "detected"}
               for c in changes_doc.get("items") or []]
    validation = audit.get("validation")
    if not validation:
        validation_text = "not run"
    else:
        ok = validation.get("ok")
        verdict = "passed" if ok is True else "FAILED" if ok is False else "unknown"
        validation_text = f"{verdict} ({validation.get('report', '')})"
    html = _template().render(
        a=audit, lanes=_lanes(audit), collections=collections, count_columns=count_columns,
        changes=changes, impact_columns=IMPACT_COLUMNS, validation=validation_text,
        colour=lambda status: STATUS_COLOURS.get(status or "", "#9e9e9e"),
        secs=_secs, short=lambda h: (h or "none")[:12],
        generated=(now or datetime.now()).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    return redact(html) if redact else html


def report_path(run_id: str) -> Path:
    return paths.reports / f"run-{check_run_id(run_id)}.html"


def write_report(audit: dict[str, Any], redact: Redactor | None = None) -> Path:
    path = report_path(audit["run_id"])
    write_atomic(path, render_report(audit, redact))
    return path
