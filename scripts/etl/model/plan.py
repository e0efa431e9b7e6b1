"""The update plan for accepted schema changes: what the canonical schemas, MongoDB, the API
and the tests will see, and the document updates as a migration script (etl.migrate).

`build_plan` is pure given its inputs (the changes with their answers, the snapshots before and
after, an optional database for counts, the OpenAPI document before and after); `render_md`
turns it into the Markdown report. Field and collection names, and the document type of every
field, come from etl.mapping (the one place that maps types), so the plan says what the
pipeline will actually do.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from bson import Decimal128, Int64

from etl.core.errors import DecisionError, RulesError
from etl.model import expr
from etl.model.artifacts import Collection
from etl.model.canonical import field_schema
from etl.model.mapping import build_mapping, collection_name, stored_bson
from etl.model.migration import Step

log = logging.getLogger("etl.plan")

# $convert's target names for the document types a cast can produce on the server.
CONVERTIBLE = {"int": "int", "long": "long", "decimal": "decimal", "double": "double",
               "string": "string", "bool": "bool", "date": "date"}
# Marks a value $convert could not handle; a string no column value is expected to equal.
_FAILED = "__etl_cast_failed__"


@dataclass(frozen=True)
class FieldInfo:
    collection: str
    field: str
    bson: str
    spec: dict[str, Any]


def field_index(snapshot: dict[str, Any] | None, rules: dict[str, Any] | None,
                decisions: dict[str, Any] | None) -> dict[tuple[str, str], FieldInfo]:
    """(table, column) -> where and how the column lands in MongoDB under `snapshot`."""
    if not snapshot:
        return {}
    try:
        mapping = build_mapping(snapshot, rules, decisions)
    except RulesError:
        # Rules written for the new schema may name fields the old one lacks; names and types
        # under the default mapping are still right for everything the rules do not touch.
        mapping = build_mapping(snapshot, None, decisions)
    out: dict[tuple[str, str], FieldInfo] = {}
    for coll, spec in mapping["collections"].items():
        for f in spec["fields"]:
            out[(spec["table"], f["column"])] = FieldInfo(coll, f["name"], stored_bson(f), f)
    return out


def coerce_default(value: Any, bson: str) -> Any:
    """A default from the decisions file as the BSON value the field holds. ValueError when the
    value cannot be one (a word for a number, a number for a date)."""
    if value is None:
        return None
    if bson in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise ValueError(f"{value!r} is not a whole number")
        return Int64(int(value)) if bson == "long" else int(value)
    if bson in ("decimal", "double"):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return Decimal128(number) if bson == "decimal" else float(number)
    if bson == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
        raise ValueError(f"{value!r} is not true or false")
    if bson == "date":
        if isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, dt.date):
            moment = dt.datetime(value.year, value.month, value.day)
        else:
            try:
                moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 date or time") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    if bson in ("string", "uuid"):
        if isinstance(value, (dict, list)):
            raise ValueError(f"{value!r} is not text")
        return str(value)
    return value


def backfill_expression(text: str, field_of: dict[str, str]) -> Any | None:
    """An etl.model.expr expression as a MongoDB aggregation expression (the language's one
    compiler, expr.to_aggregation), or None when the server has no direct counterpart or the
    expression is not in the language. `field_of` maps column -> field."""
    try:
        return expr.to_aggregation(text, field_of)
    except expr.ExpressionError:
        return None


def _convert(source: str, to: str, on_error: Any = ..., ) -> dict[str, Any]:
    spec: dict[str, Any] = {"input": source, "to": to, "onNull": None}
    if on_error is not ...:
        spec["onError"] = on_error
    return {"$convert": spec}


def cast_steps(coll: str, fld: str, to_bson: str, on_failure: str, what: str) -> list[Step]:
    target = CONVERTIBLE[to_bson]
    present = {fld: {"$exists": True, "$ne": None}}
    failed = {"$and": [present, {"$expr": {"$eq": [_convert("$" + fld, target, _FAILED), _FAILED]}}]}
    label = f"{what}: values that cannot become {to_bson}"
    if on_failure == "fail":
        return [
            Step("assert_none", coll, filter=failed,
                 message=f"{what}: some values cannot become {to_bson} (on_failure: fail)",
                 comment=f"{what}: stop before changing anything if a value cannot be cast"),
            Step("updateMany", coll, filter=present, update=[{"$set": {fld: _convert("$" + fld, target)}}],
                 comment=f"{what}: cast to {to_bson}"),
        ]
    count = Step("count", coll, filter=failed, message=label, comment=f"{what}: count cast failures")
    if on_failure == "set_null":
        return [count, Step("updateMany", coll, filter=present,
                            update=[{"$set": {fld: _convert("$" + fld, target, None)}}],
                            comment=f"{what}: cast to {to_bson}; values that cannot be cast become null")]
    side = f"{fld}__old"
    return [count, Step("updateMany", coll, filter=present, update=[
        {"$set": {side: {"$cond": [{"$eq": [_convert("$" + fld, target, _FAILED), _FAILED]}, "$" + fld, "$$REMOVE"]}}},
        {"$set": {fld: _convert("$" + fld, target, None)}},
    ], comment=f"{what}: cast to {to_bson}; values that cannot be cast are kept in {side}")]


def _where(table: str, column: str | None) -> str:
    return f"{collection_name(table)}.{column}" if column else collection_name(table)


def field_info(index: dict[tuple[str, str], FieldInfo], table: str, column: str, bson: str = "?") -> FieldInfo:
    return index.get((table, column)) or FieldInfo(collection_name(table), column, bson, {})


def _field_schema(info: FieldInfo) -> dict[str, Any] | None:
    if not info.spec:
        return None

    return field_schema(info.spec)


def plan_change(change: dict[str, Any], answer: dict[str, Any], before: dict, after: dict) -> dict[str, Any]:
    """One accepted change: its schema diff entries, MongoDB steps (text), migration steps."""
    kind, table, column = change["kind"], change["table"], change.get("column")
    frm, to = change.get("from") or {}, change.get("to") or {}
    what = _where(table, column)
    out: dict[str, Any] = {"id": change["id"], "kind": kind, "table": table, "column": column,
                           "summary": change.get("summary", ""), "answer": answer,
                           "schema": [], "mongodb": [], "steps": [], "notes": []}
    action = answer.get("action")
    if action in ("reject", "ignore"):
        out["notes"].append(f"{action}ed: not applied")
        return out

    if kind == "column_added":
        info = field_info(after, table, column)
        out["schema"].append({"collection": info.collection, "op": "added", "field": info.field,
                              "bson": info.bson, "required": not to.get("nullable", True),
                              "after": _field_schema(info)})
        out["mongodb"].append(f"validator of {info.collection}: new field {info.field} ({info.bson})")
        missing = {info.field: {"$exists": False}}
        if "default" in answer:
            value = coerce_default(answer["default"], info.bson)
            out["steps"].append(Step("updateMany", info.collection, filter=missing,
                                     update={"$set": {info.field: value}},
                                     comment=f"{what}: default {answer['default']!r} in existing documents"))
        elif "backfill" in answer:
            columns = {c: i.field for (t, c), i in after.items() if t == table}
            expression = backfill_expression(answer["backfill"], columns)
            if expression is None:
                out["notes"].append(f"backfill {answer['backfill']!r} has no MongoDB counterpart: "
                                    "documents that exist only in MongoDB keep no value")
            else:
                out["steps"].append(Step("updateMany", info.collection, filter=missing,
                                         update=[{"$set": {info.field: expression}}],
                                         comment=f"{what}: backfill {answer['backfill']}"))
    elif kind == "column_removed":
        info = field_info(before, table, column)
        out["schema"].append({"collection": info.collection, "op": "removed", "field": info.field,
                              "bson": info.bson, "before": _field_schema(info)})
        present = {info.field: {"$exists": True}}
        if action == "archive":
            kept = f"{info.field}__archived"
            out["schema"].append({"collection": info.collection, "op": "added", "field": kept,
                                  "bson": info.bson, "required": False})
            out["steps"].append(Step("updateMany", info.collection, filter=present,
                                     update={"$rename": {info.field: kept}},
                                     comment=f"{what}: dropped column, values kept in {kept}"))
        else:
            out["steps"].append(Step("updateMany", info.collection, filter=present,
                                     update={"$unset": {info.field: ""}},
                                     comment=f"{what}: dropped column, values removed"))
        out["mongodb"].append(f"validator of {info.collection}: field {info.field} removed")
    elif kind == "column_renamed":
        old = field_info(before, table, frm.get("name") or column)
        for (_, c), i in before.items():  # the table itself may have been renamed too
            if c == (frm.get("name") or column) and i.collection == collection_name(table):
                old = i
        new = field_info(after, table, to.get("name") or column)
        if action == "rename":
            out["schema"].append({"collection": new.collection, "op": "renamed", "from": old.field,
                                  "field": new.field, "bson": new.bson})
            out["steps"].append(Step("updateMany", old.collection, filter={old.field: {"$exists": True}},
                                     update={"$rename": {old.field: new.field}},
                                     comment=f"{what}: renamed to {new.field}"))
        else:
            out["schema"] += [{"collection": old.collection, "op": "removed", "field": old.field, "bson": old.bson},
                              {"collection": new.collection, "op": "added", "field": new.field, "bson": new.bson,
                               "required": False}]
            out["steps"].append(Step("updateMany", old.collection, filter={old.field: {"$exists": True}},
                                     update={"$unset": {old.field: ""}},
                                     comment=f"{what}: treated as drop + add; old values removed"))
        out["mongodb"].append(f"validator of {new.collection}: {old.field} → {new.field}")
    elif kind == "column_type_changed":
        old, new = field_info(before, table, column), field_info(after, table, column)
        out["schema"].append({"collection": new.collection, "op": "changed", "field": new.field,
                              "from": {"pg": frm.get("type"), "bson": old.bson},
                              "to": {"pg": to.get("type"), "bson": new.bson},
                              "before": _field_schema(old), "after": _field_schema(new)})
        out["mongodb"].append(f"validator of {new.collection}: {new.field} {old.bson} → {new.bson}")
        on_failure = answer.get("on_failure", "fail")
        if old.bson == new.bson:
            out["notes"].append(f"stored type stays {new.bson}: no document update needed")
        elif new.bson in CONVERTIBLE:
            out["steps"] += cast_steps(new.collection, new.field, new.bson, on_failure, what)
        else:
            out["notes"].append(f"no server-side cast to {new.bson}: documents from PostgreSQL get the "
                                "new type at the next load; documents only in MongoDB keep the old one")
    elif kind == "table_added":
        coll = collection_name(table)
        fields = [{"field": i.field, "bson": i.bson} for (t, _), i in after.items() if t == table]
        out["schema"].append({"collection": coll, "op": "collection_added", "fields": fields})
        out["mongodb"].append(f"new collection {coll} with its validator and indexes")
    elif kind in ("table_removed", "table_renamed"):
        coll = collection_name(table)
        if kind == "table_renamed" and action == "rename":
            target = collection_name(to.get("table") or table)
            out["schema"].append({"collection": target, "op": "collection_renamed", "from": coll})
            out["steps"].append(Step("rename", coll, target=target, comment=f"{coll}: renamed to {target}"))
        elif action == "archive":
            kept = f"{coll}__archived"
            out["schema"].append({"collection": coll, "op": "collection_removed", "archived_as": kept})
            out["steps"].append(Step("rename", coll, target=kept, comment=f"{coll}: dropped table, kept as {kept}"))
        else:
            out["schema"].append({"collection": coll, "op": "collection_removed"})
            out["steps"].append(Step("drop", coll, comment=f"{coll}: dropped table, documents removed"))
        out["mongodb"].append(f"collection {coll}: {kind.replace('_', ' ')} ({action})")
    elif kind in ("index_added", "index_removed", "unique_added", "unique_removed",
                  "foreign_key_added", "foreign_key_removed", "primary_key_changed"):
        spec = to or frm
        cols = ", ".join(spec.get("columns") or []) if isinstance(spec, dict) else ""
        out["mongodb"].append(f"indexes of {collection_name(table)}: {kind.replace('_', ' ')}"
                              + (f" ({cols})" if cols else ""))
    elif kind in ("column_nullability_changed", "check_added", "check_removed", "enum_value_added",
                  "enum_value_removed", "domain_changed", "column_default_changed"):
        info = field_info(after, table, column) if column else None
        target = f"{info.collection}.{info.field}" if info else collection_name(table)
        if kind == "column_nullability_changed" and info:
            out["schema"].append({"collection": info.collection, "op": "changed", "field": info.field,
                                  "from": {"nullable": frm.get("nullable")}, "to": {"nullable": to.get("nullable")},
                                  "after": _field_schema(info)})
        out["mongodb"].append(f"validator: {kind.replace('_', ' ')} on {target}")
    else:
        out["notes"].append("no effect on documents")
    return out


def _api_section(collections: set[str], changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The API's side of the plan: the changes the impact matrix calls breaking for it, and the
    paths and component schemas of the generated OpenAPI document (generate names them after
    the collection: etl.model.artifacts) that belong to the affected collections."""
    breaking = sorted({c["summary"] or c["id"] for c in changes
                       if (c.get("impact") or {}).get("api") == "breaking"})
    named = [Collection(name, {}, "") for name in sorted(collections)]
    return {"breaking": breaking, "paths": sorted(p for c in named for p in c.api_paths),
            "components": sorted(c.type_name for c in named)}


_STEP_ORDER = {kind: i for i, kind in enumerate((
    "table_renamed", "column_renamed", "table_removed", "column_removed", "column_type_changed",
    "table_added", "column_added"))}


def build_plan(changes_doc: dict[str, Any], answers: dict[str, dict[str, Any]],
               before: dict[str, Any] | None, after: dict[str, Any],
               rules: dict[str, Any] | None = None, decisions_doc: dict[str, Any] | None = None,
               count: Callable[[Step], int | str] | None = None) -> tuple[dict[str, Any], list[Step]]:
    """The plan (JSON-able) and the migration steps for every change in `changes_doc`, each with
    its answer (`answers[id]`, recorded or automatic). `count(step)` gives the documents a
    statement would touch now (decide counts them in the target database)."""
    before_idx = field_index(before, rules, decisions_doc)
    after_idx = field_index(after, rules, decisions_doc)
    # Renames first, so later steps (a backfill reading a renamed field, a cast of a field
    # that was renamed) see the new names; defaults last, once the fields they sit beside exist.
    ordered = sorted(changes_doc["changes"], key=lambda c: _STEP_ORDER.get(c["kind"], len(_STEP_ORDER)))
    items = [plan_change(c, answers[c["id"]], before_idx, after_idx) for c in ordered]

    steps: list[Step] = [s for it in items for s in it["steps"]]
    schema: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        for entry in it["schema"]:
            schema.setdefault(entry["collection"], []).append({k: v for k, v in entry.items() if k != "collection"})
    collections = set(schema) | {collection_name(c["table"]) for c in changes_doc["changes"] if c.get("table")}

    migration = []
    for it in items:
        for step in it["steps"]:
            row: dict[str, Any] = {"change": it["id"], "op": step.op, "collection": step.collection,
                                   "what": step.comment}
            if count is not None:
                row["documents"] = count(step)
            migration.append(row)

    tests = [{"collection": coll, "test": f"generated/tests/test_{Collection(coll, {}, '').slug}.py"}
             for coll in sorted(collections)]

    plan = {
        "format_version": 1,
        "from_hash": changes_doc.get("from_hash"),
        "to_hash": changes_doc.get("to_hash"),
        "changes": [{k: it[k] for k in ("id", "kind", "table", "column", "summary", "answer", "notes")}
                    for it in items],
        "schema_diff": {k: schema[k] for k in sorted(schema)},
        "mongodb": {"validators_and_indexes": [m for it in items for m in it["mongodb"]],
                    "document_updates": migration,
                    "counted": count is not None},
        "api": _api_section(collections, changes_doc["changes"]),
        "tests": tests,
    }
    return plan, steps


def _cell(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def render_md(plan: dict[str, Any], migration_path: str | None, when: str) -> str:
    lines = [f"# Update plan {when}", "",
             f"Schema {str(plan['from_hash'] or 'none')[:12]} → {str(plan['to_hash'])[:12]}; "
             f"{len(plan['changes'])} accepted changes.", "", "## Accepted changes", ""]
    for c in plan["changes"]:
        answer = ", ".join(f"{k}: {_cell(v)}" for k, v in c["answer"].items()) or "automatic"
        lines.append(f"- {c['summary'] or c['kind']} — {answer} (`{c['id']}`)")
        lines += [f"  - {n}" for n in c["notes"]]
    lines += ["", "## Canonical schema / Zod", ""]
    if not plan["schema_diff"]:
        lines.append("No field changes.")
    for coll, entries in plan["schema_diff"].items():
        lines.append(f"### {coll}")
        for e in entries:
            op = e["op"]
            if op == "renamed":
                lines.append(f"- renamed: `{e['from']}` → `{e['field']}` ({e['bson']})")
            elif op == "changed":
                lines.append(f"- changed: `{e['field']}` {_cell(e['from'])} → {_cell(e['to'])}")
            elif op.startswith("collection_"):
                extra = f" as `{e['archived_as']}`" if e.get("archived_as") else ""
                extra += f" from `{e['from']}`" if e.get("from") else ""
                fields = f" ({len(e['fields'])} fields)" if e.get("fields") else ""
                lines.append(f"- {op.replace('_', ' ')}{extra}{fields}")
            else:
                req = " required" if e.get("required") else ""
                lines.append(f"- {op}: `{e['field']}` ({e['bson']}{req})")
        lines.append("")
    lines += ["## MongoDB", "", "Validators and indexes (applied by `etl mongo-schema`):", ""]
    lines += [f"- {m}" for m in plan["mongodb"]["validators_and_indexes"]] or ["- none"]
    lines += ["", "Document updates" + (f" (`{migration_path}`, applied by the incremental load "
                                        "after its backup):" if migration_path else ": none"), ""]
    if plan["mongodb"]["document_updates"]:
        counted = plan["mongodb"]["counted"]
        lines.append("| collection | step | documents |" if counted else "| collection | step |")
        lines.append("|---|---|---|" if counted else "|---|---|")
        for row in plan["mongodb"]["document_updates"]:
            cells = [row["collection"], row["what"] or row["op"]] + ([str(row.get("documents"))] if counted else [])
            lines.append("| " + " | ".join(cells) + " |")
        if not counted:
            lines += ["", "Documents were not counted (no database given)."]
    api = plan["api"]
    lines += ["", "## API", ""]
    lines += [f"- breaking: {b}" for b in api["breaking"]] or ["- no breaking change in the impact matrix"]
    if api["paths"] or api["components"]:
        lines.append(f"- paths affected: {', '.join(api['paths']) or 'none'}")
        lines.append(f"- components affected: {', '.join(api['components']) or 'none'}")
    lines.append("- OpenAPI is regenerated by `etl generate`; review `git diff generated/openapi.yaml`.")
    lines += ["", "## Tests", ""]
    for t in plan["tests"]:
        lines.append(f"- `{t['test']}` (regenerated by `etl generate`)")
    return "\n".join(lines) + "\n"


def check_default(change: dict[str, Any], answer: dict[str, Any], after: dict[tuple[str, str], FieldInfo],
                  where: str) -> None:
    """A default must be a value of the new field's type; said with the decision's line."""
    if change["kind"] != "column_added" or "default" not in answer:
        return
    info = field_info(after, change["table"], change["column"])
    try:
        coerce_default(answer["default"], info.bson)
    except ValueError as exc:
        raise DecisionError(f"{where}: default for {_where(change['table'], change['column'])} "
                            f"({info.bson}): {exc}") from None
