"""`etl decide` and its terminal questions (the seed's interactive mode): safe schema changes go through; breaking ones wait for a recorded decision."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
import yaml

from etl.cli import config_options
from etl.core.errors import DecisionError, PendingDecisions
from etl.core.fsutil import write_if_changed
from etl.core.paths import paths
from etl.core.runs import login_name
from etl.formats import decisions as dec
from etl.model import expr
from etl.model.mapping import collection_name
from etl.model.plan import coerce_default, field_info
from etl.stages.decide import (
    READS_MISSING,
    Inputs,
    accept,
    after_index,
    answers_text,
    check_defaults,
    impact_line,
    load_inputs,
    pending_payload,
    skip,
    write_pending,
)

MENU = ("How should we handle these changes?\n"
        "[1] Apply all changes automatically\n"
        "[2] Review each change individually\n"
        "[3] Skip schema updates\n"
        "[4] Abort ETL process")


# ---------------------------------------------------------------------------------------------
# Interactive
# ---------------------------------------------------------------------------------------------

def present(changes: list[dict[str, Any]]) -> str:
    return "Detected Schema Changes:\n" + "\n".join(f"- {c.get('summary') or c['kind']}" for c in changes)


def _choose(text: str, options: list[tuple[str, str]], default: int = 1) -> int:
    """Numbered options; an answer out of range (or not a number) is asked again."""
    click.echo(text)
    for i, (_, label) in enumerate(options, 1):
        click.echo(f"  [{i}] {label}")
    return click.prompt("Choice", type=click.IntRange(1, len(options)), default=default)


def _value_prompt(text: str, check: Callable[[str], Any]) -> Any:
    def proc(raw: str) -> Any:
        try:
            return check(raw)
        except (ValueError, DecisionError) as exc:
            raise click.BadParameter(str(exc)) from None

    return click.prompt(text, value_proc=proc)


def _default_parser(bson: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        raw = raw.strip()
        if not raw:
            raise ValueError("a value is needed")
        if bson in ("int", "long", "double", "bool"):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        else:
            value = raw  # text, dates and decimals are kept as typed: 12.50 stays 12.50
        coerce_default(value, bson)
        return value

    return parse


def _backfill_parser(raw: str) -> str:
    raw = raw.strip()
    try:
        expr.parse(raw)
    except expr.ExpressionError as exc:
        raise ValueError(f"not a valid expression: {exc}") from None
    return raw


def ask(change: dict[str, Any], after, index: int, total: int) -> dict[str, Any]:
    """The seed's questions for one change; returns the answer (no bookkeeping keys)."""
    kind, table, column = change["kind"], change["table"], change.get("column")
    frm, to = change.get("from") or {}, change.get("to") or {}
    click.echo("")
    click.echo(f"[{index}/{total}] {change.get('summary') or kind}  ({change.get('classification')}: "
               f"{change.get('reason') or 'no reason given'})")
    impact = change.get("impact") or {}
    click.echo(f"  Impact: {impact_line(impact)}")
    flagged = [f"{label} {impact[key]}" for key, label in (("api", "API"), ("ui", "UI"))
               if impact.get(key) in ("breaking", "review")]
    if flagged:
        click.echo(f"  UI/API impact: {', '.join(flagged)} — clients reading "
                   f"{collection_name(table)}{'.' + column if column else ''} need a look")
    rec = dec.recommended(change) or {}
    where = f"{collection_name(table)}.{column}" if column else collection_name(table)

    if kind == "column_added":
        info = field_info(after, table, column)
        nullable = to.get("nullable", True)
        options = ([("accept", f"load it as {info.field} ({info.bson}); existing documents get no value")]
                   if nullable else [])
        options += [("default", "set a default value in existing documents"),
                    ("backfill", "backfill existing documents with an expression over the row's columns")]
        title = (f"How should the new field {where} be mapped?" if nullable
                 else f"New required field {where} ({info.bson}): what do existing documents get?")
        picked = options[_choose(title, options) - 1][0]
        if picked == "accept":
            return {"action": "accept"}
        if picked == "default":
            if "default" in rec:
                click.echo(f"  (PostgreSQL's default is {rec['default']!r})")
            return {"default": _value_prompt(f"Default value for {info.field} ({info.bson})",
                                             _default_parser(info.bson))}
        return {"backfill": _value_prompt(f"Backfill expression for {info.field}", _backfill_parser)}
    if kind == "column_type_changed":
        options = [("fail", "fail the run (nothing is changed)"), ("set_null", "set it to null"),
                   ("keep_old", f"keep the old value in {column}__old (the field becomes null)")]
        picked = options[_choose(f"Migration strategy for {where} ({frm.get('type')} → {to.get('type')}): "
                                 "values are cast. If a value cannot be cast:", options) - 1][0]
        return {"strategy": "cast", "on_failure": picked}
    if kind in ("column_renamed", "table_renamed"):
        old = frm.get("name") or frm.get("table") or column or table
        new = to.get("name") or to.get("table") or "?"
        options = [("rename", "rename: existing values move to the new name"),
                   ("drop_add", "drop + add: old values are removed, the new one starts empty")]
        return {"action": options[_choose(f"Is {old} → {new} a rename, or a drop plus an add?", options) - 1][0]}
    if kind in ("column_removed", "table_removed"):
        archived = f"{column}__archived" if column else f"{collection_name(table)}__archived"
        options = [("drop", "drop: remove it from existing documents" if column else "drop the collection"),
                   ("archive", f"archive: keep existing values as {archived}")]
        default = 2 if rec.get("action") == "archive" else 1
        return {"action": options[_choose(f"{where} no longer exists in PostgreSQL. What happens to it?",
                                          options, default) - 1][0]}
    if kind == "table_added":
        options = [("load", f"load it into a new collection {collection_name(table)}"), ("ignore", "ignore it")]
        return {"action": options[_choose(f"New table {table}:", options) - 1][0]}
    options = [("accept", "accept"), ("reject", "reject (keep the previous form)")]
    return {"action": options[_choose(f"{kind.replace('_', ' ')} on {where}:", options) - 1][0]}


def prompt_decisions(inputs: Inputs, decided_by: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """Ask; returns (choice, new entries). Nothing is written here, so Ctrl-C loses nothing."""
    changes = inputs.changes
    click.echo(present(changes))
    click.echo("")
    choice = click.prompt(MENU + "\nChoice", type=click.IntRange(1, 4))
    if choice == 3:
        return "skip", {}
    if choice == 4:
        return "abort", {}
    after = after_index(inputs)
    recorded = inputs.decisions.entries
    new: dict[str, dict[str, Any]] = {}
    todo = [c for c in changes if c["id"] not in recorded]
    for change in changes:
        if change["id"] in recorded:
            click.echo(f"- {change.get('summary')}: recorded decision {dec.answer_of(recorded[change['id']])} "
                       f"by {recorded[change['id']].get('decided_by')}")
    if choice == 1:
        for change in todo:
            rec = dec.recommended(change)
            if rec is None:
                click.echo(f"{change.get('summary')}: no automatic answer for a required field without a default.")
                rec = ask(change, after, 1, 1)
            if change.get("classification") == "review":
                new[change["id"]] = dec.make_entry(change, {**rec, "note": "apply all"}, decided_by)
        return "apply", new
    for i, change in enumerate(todo, 1):
        answer = ask(change, after, i, len(todo))
        if change.get("classification") == "review" or answer != dec.recommended(change):
            new[change["id"]] = dec.make_entry(change, answer, decided_by)
    return "review", new



def _echo_pending(payload: dict[str, Any], paths_written: tuple[Path, Path]) -> None:
    click.echo(f"{len(payload['pending'])} schema changes wait for a decision:")
    for item in payload["pending"]:
        click.echo(f"- {item['summary'] or item['kind']} [{item['id']}]: {answers_text(item)}")
    rel = [str(p.relative_to(paths.root)) for p in paths_written]
    click.echo(f"Wrote {rel[0]} and {rel[1]}. Decide with `etl decide --interactive`, "
               "`etl decide --decisions FILE`, or in schemas/decisions.yaml.")


def _echo_accepted(result: dict[str, Any]) -> None:
    if not result["changes"]:
        click.echo(f"No schema changes; accepted schema {result['to_hash'][:12]} is current.")
        return
    click.echo(f"Accepted schema {result['to_hash'][:12]}: {result['changes']} changes "
               f"({result['automatic']} safe, applied automatically).")
    if result["plan"]:
        click.echo(f"Update plan: {result['plan']}")
    if result["migration"]:
        click.echo(f"Migration: {result['migration']} (applied by the incremental load)")


@click.command("decide")
@click.option("--interactive", is_flag=True, help="Show the changes and ask (the default on a terminal).")
@click.option("--yes-safe", is_flag=True, help="Unattended: apply safe changes, replay recorded decisions.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the outcome (pending changes with allowed answers) as JSON.")
@click.option("--decisions", "answers_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Apply a file of answers (YAML or JSON), merged into schemas/decisions.yaml.")
@click.option("--by", "decided_by", default=None, help="Who decides (default: the login name).")
@click.option("--counts/--no-counts", default=True, help="Count affected documents for the plan.")
@config_options
def decide_cmd(cfg, interactive: bool, yes_safe: bool, as_json: bool, answers_file: Path | None,
               decided_by: str | None, counts: bool):
    """Apply safe schema changes and the recorded decisions; ask for, or stop on, the rest.

    Without a terminal (cron) or with --yes-safe, review changes that have no decision in
    schemas/decisions.yaml stop the run with exit 3 and data/changes/pending.json. With
    --interactive, presents the changes and asks. Agents use --json and --decisions FILE.

    Example: etl decide --decisions answers.yaml --by ci
    """
    if interactive and (as_json or yes_safe):
        raise click.UsageError("--interactive cannot be combined with --json or --yes-safe")
    decided_by = decided_by or _login()
    inputs = load_inputs()
    new: dict[str, dict[str, Any]] = {}
    if answers_file is not None:
        new = dec.load_answers(answers_file, inputs.changes, decided_by)
        check_defaults(inputs, new, lambda cid: answers_file.name)
        _merge(inputs, new)
        new = {}
    ask_person = interactive or (not (yes_safe or as_json or answers_file) and sys.stdin.isatty())

    if ask_person and inputs.changes:
        choice, new = prompt_decisions(inputs, decided_by)
        if choice == "abort":
            raise DecisionError("aborted at the prompt; nothing was changed")
        if choice == "skip":
            marker = skip(inputs)
            click.echo(f"Skipped schema updates: this run loads with the previously accepted schema "
                       f"{str(marker['accepted_hash'])[:12]}; the {len(inputs.changes)} detected changes "
                       "(new columns included) are not applied.")
            breaking = [c for c in inputs.changes if c["kind"] in READS_MISSING]
            if breaking:
                click.echo(f"Warning: {len(breaking)} of them remove, rename or retype something the accepted "
                           "schema reads; the transform may fail until they are decided: "
                           + "; ".join(c.get("summary") or c["kind"] for c in breaking), err=True)
            return

    pend = [c for c in dec.pending(inputs.changes, inputs.decisions) if c["id"] not in new]
    if pend:
        payload = pending_payload(inputs, pend)
        written = write_pending(payload)
        if as_json:
            click.echo(json.dumps(payload, indent=2, default=str))
        else:
            _echo_pending(payload, written)
        raise PendingDecisions(f"{len(pend)} schema changes wait for a decision; MongoDB was not touched")

    result = accept(inputs, new, cfg=cfg, counts=counts)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        _echo_accepted(result)


def _merge(inputs: Inputs, new: dict[str, dict[str, Any]]) -> None:
    """Write answers into schemas/decisions.yaml now (they stand even if others are pending)."""
    if not new:
        return
    path = dec.decisions_path()
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    write_if_changed(path, dec.render(existing, new))
    inputs.decisions = dec.load_decisions(path)


def _login() -> str:
    return login_name()
