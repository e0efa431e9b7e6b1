"""`etl detect`: what changed in the schema, and its summary in the seed's words (etl.stages.detect)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from etl.cli import config_options
from etl.core.errors import EXIT_CHANGES
from etl.core.paths import paths
from etl.formats.snapshot import load_snapshot
from etl.model.diff import IMPACT_WORDS
from etl.stages.detect import (
    DataEvidence,
    build_report,
    evidence_line,
    folded_line,
    has_changes,
    log,
    not_a_rename_line,
    precision_line,
    rows_in_use,
    write_outputs,
)


def render_text(report: dict[str, Any], *, color: bool = True) -> str:
    """The console summary in the seed's words, with the impact matrix for what changed."""
    def style(text: str, **kw: Any) -> str:
        return click.style(text, **kw) if color else text

    lines: list[str] = []
    for warning in report["warnings"]:
        lines.append(style("Warning: ", fg="yellow", bold=True) + warning)
    if report["initial"]:
        st = report["initial_state"]
        lines.append(style("Initial schema", bold=True) + f" of {report['database']} (no accepted snapshot yet): "
                     f"{st['table_count']} tables, {st['column_count']} fields, {len(st['enums'])} enums, "
                     f"{len(st['domains'])} domains, {len(st['views'])} views (listed, not loaded).")
        lines.append("`etl decide` accepts it as the baseline; later runs report changes against it.")
        return "\n".join(lines)
    if not report["changes"] and report["from_hash"] != report["to_hash"]:
        lines.append(f"No schema changes that documents depend on; the snapshot differs from the accepted one "
                     f"({report['from_hash'][:12]} → {report['to_hash'][:12]}) only in index or constraint "
                     "names, column order or similar details.")
        return "\n".join(lines)
    if not report["changes"]:
        lines.append(f"No schema changes since the accepted snapshot ({(report['from_hash'] or '')[:12]}).")
        return "\n".join(lines)
    lines.append(style("Detected Schema Changes:", bold=True))
    width = max(len(c["summary"]) for c in report["changes"]) + 2
    for c in report["changes"]:
        tag = style("safe  ", fg="green") if c["classification"] == "safe" else style("review", fg="yellow", bold=True)
        lines.append(f"- {c['summary']:<{width}} {tag}  {c['reason']}  [{c['id']}]")
        for extra in (evidence_line(c), folded_line(c), not_a_rename_line(c)):
            if extra:
                lines.append(f"    {extra}")
    counts = report["counts"]
    lines.append("")
    lines.append(f"{counts['safe']} safe (applied automatically), {counts['review']} need review"
                 + (" (run `etl decide`)" if counts["review"] else "")
                 + (" — strict mode: every change needs review" if report["strict_mode"] else ""))
    lines.append(precision_line(report))
    lines.append("")
    lines.append(style("Change Impact:", bold=True))
    rows = rows_in_use(report)
    label_w = max(len("Change Type"), *(len(label) for label, _ in rows)) + 2
    header = f"  {'Change Type':<{label_w}}" + "".join(f"{h:<11}" for h in ("Zod", "MongoDB", "API", "UI", "Tests"))
    lines.append(header.rstrip())
    colours = {"breaking": "red", "migration": "yellow", "review": "yellow", "auto": "green"}
    for label, impact in rows:
        cells = [style(f"{IMPACT_WORDS[impact[key]]:<11}", fg=colours.get(impact[key]))
                 for key in ("zod", "mongodb", "api", "ui", "tests")]
        lines.append(f"  {label:<{label_w}}" + "".join(cells).rstrip())
    return "\n".join(lines)


@click.command("detect")
@click.option("--json", "as_json", is_flag=True, help="Print the changes JSON instead of the summary.")
@click.option("--exit-code", is_flag=True, help="Exit 2 when anything changed, 0 otherwise (like git diff).")
@click.option("--strict/--no-strict", default=None,
              help="Every change needs review (default: ETL_SCHEMA_STRICT_MODE).")
@click.option("--evidence/--no-evidence", default=True,
              help="Look for rename evidence in the data already in MongoDB (default: on).")
@click.option("--current", "current_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Snapshot to check (default: schemas/snapshots/current.json).")
@click.option("--accepted", "accepted_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Snapshot to compare with (default: schemas/accepted.json).")
@config_options
def detect_cmd(cfg, as_json: bool, exit_code: bool, strict: bool | None, evidence: bool,
               current_path: Path | None, accepted_path: Path | None):
    """Report the schema changes since the last accepted snapshot, safe or needing review.

    Writes data/changes/latest.json, data/changes/<timestamp>.json and .md. The first run
    (no schemas/accepted.json) reports the whole schema as the initial state.

    Example: etl detect --exit-code   # exit 2: something changed, see data/changes/latest.json
    """
    if strict is not None:
        cfg = cfg.with_overrides({"ETL_SCHEMA_STRICT_MODE": str(strict).lower()})
    current = load_snapshot(current_path or paths.snapshots / "current.json")
    accepted_file = accepted_path or paths.schemas / "accepted.json"
    accepted = load_snapshot(accepted_file) if accepted_file.exists() else None
    source = DataEvidence(cfg, accepted, current) if evidence and accepted is not None else None
    try:
        report = build_report(current, accepted, strict=cfg["ETL_SCHEMA_STRICT_MODE"], evidence=source)
    finally:
        if source is not None:
            source.close()
    written = write_outputs(report)
    log.info("detect: %d changes (%d review), report %s", len(report["changes"]), report["counts"]["review"],
             written["json"])
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(render_text(report))  # click drops the colours when stdout is not a terminal
        click.echo(f"Report: {written['markdown']}", err=True)
    if exit_code and has_changes(report):
        click.get_current_context().exit(EXIT_CHANGES)
