"""`etl snapshot`: the restored database's schema as canonical JSON with a content hash.

The catalog queries live in `sql/catalog_*.sql`. The snapshot covers schemas, tables
(partitioned tables as one table, their partitions folded in), columns, keys, constraints,
indexes, enums and domains; views and materialized views are listed, and described like a
table (columns, no keys) only when ETL_LOAD_VIEWS names them. The hash
covers the database objects only (not the time it was taken), so "did the schema change?" is
a hash comparison. Format: docs/architecture.md, "Schema snapshot".
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Iterable

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from etl.core.config import mask_uri
from etl.core.errors import DatabaseError, SnapshotError
from etl.core.hashing import content_hash
from etl.formats.snapshot import FORMAT_VERSION

log = logging.getLogger("etl.snapshot")


_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_TYPE_KINDS = {"b": "base", "e": "enum", "d": "domain", "c": "composite", "r": "range",
               "m": "multirange", "p": "pseudo"}
_REL_KINDS = {"r": "table", "p": "partitioned", "v": "view", "m": "materialized_view"}


def catalog_sql(name: str) -> str:
    """The text of `sql/catalog_<name>.sql`."""
    return resources.files("etl.stages").joinpath("sql", f"catalog_{name}.sql").read_text(encoding="utf-8")


def _describe_conninfo(conninfo: str) -> str:
    """host:port/db for messages; never the password."""

    try:
        params = conninfo_to_dict(conninfo)
    except Exception:  # noqa: BLE001 - a malformed conninfo is still reported, masked
        return mask_uri(conninfo)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '?')}"


def _connect_reason(exc: Exception) -> str:
    """libpq's reason without its preamble: 'Connection refused', 'database "x" does not exist'."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = first.rsplit("failed: ", 1)[-1]
    return mask_uri(" ".join(reason.replace("FATAL:", "").split()))


def _query(conn, name: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(catalog_sql(name))
        return list(cur.fetchall())


def _type_kind(typtype: str | None, typcategory: str | None) -> str:
    if typcategory == "A":
        return "array"
    return _TYPE_KINDS.get(typtype or "", "base")


def build_snapshot(rows: dict[str, list[dict[str, Any]]], database: str,
                   load_views: Iterable[str] = ()) -> dict[str, Any]:
    """Assemble a snapshot from the catalog query results (pure: no database needed).
    Views are listed; those named in `load_views` are also described as tables (no keys)."""
    tables: dict[str, dict[str, Any]] = {}
    views: dict[str, dict[str, Any]] = {}
    wanted = set(load_views)
    for r in rows["relations"]:
        qname = f"{r['schema']}.{r['name']}"
        kind = _REL_KINDS[r["relkind"]]
        if kind in ("view", "materialized_view"):
            views[qname] = {"kind": kind}
            if qname not in wanted:
                continue
        tables[qname] = {"schema": r["schema"], "name": r["name"], "kind": kind, "comment": r["comment"],
                         "columns": [], "primary_key": None, "foreign_keys": [], "unique": [],
                         "checks": [], "exclusions": [], "indexes": [], "partitions": []}

    for r in rows["columns"]:
        table = tables.get(f"{r['schema']}.{r['table']}")
        if table is None:  # a table owned by an extension
            continue
        kind = _type_kind(r["typtype"], r["typcategory"])
        table["columns"].append({
            "name": r["name"], "position": r["position"], "type": r["type"], "type_kind": kind,
            "base_type": r["domain_base"] if kind == "domain" else (None if kind == "array" else r["type"]),
            "element_type": r["element_type"], "element_kind": (
                _type_kind(r["element_typtype"], None) if r["element_type"] else None),
            "nullable": r["nullable"], "default": r["default"], "identity": r["identity"],
            "generated": r["generated"], "comment": r["comment"],
        })

    for r in rows["constraints"]:
        table = tables.get(f"{r['schema']}.{r['table']}")
        if table is None:
            continue
        columns = list(r["columns"] or [])
        if r["type"] == "p":
            table["primary_key"] = {"name": r["name"], "columns": columns}
        elif r["type"] == "u":
            table["unique"].append({"name": r["name"], "columns": columns})
        elif r["type"] == "f":
            table["foreign_keys"].append({
                "name": r["name"], "columns": columns, "ref_table": f"{r['ref_schema']}.{r['ref_table']}",
                "ref_columns": list(r["ref_columns"] or []), "on_delete": _FK_ACTIONS[r["on_delete"]],
                "on_update": _FK_ACTIONS[r["on_update"]]})
        elif r["type"] == "c":
            table["checks"].append({"name": r["name"], "expression": r["definition"],
                                    "validated": r["validated"]})
        else:
            table["exclusions"].append({"name": r["name"], "definition": r["definition"]})

    for r in rows["indexes"]:
        table = tables.get(f"{r['schema']}.{r['table']}")
        if table is None:
            continue
        table["indexes"].append({
            "name": r["name"], "columns": list(r["columns"]), "include": list(r["include"] or []),
            "unique": r["unique"], "predicate": r["predicate"], "method": r["method"],
            "definition": r["definition"]})

    for r in rows["partitions"]:
        table = tables.get(f"{r['root_schema']}.{r['root_name']}")
        if table is not None:
            table["partitions"].append({"name": f"{r['schema']}.{r['name']}", "bound": r["bound"]})

    missing = sorted(wanted - set(views))
    if missing:
        raise SnapshotError(f"ETL_LOAD_VIEWS names {', '.join(missing)}, which is not a view in {database}",
                            hint="use schema.name as the snapshot lists views")
    enums = {f"{r['schema']}.{r['name']}": list(r["values"]) for r in rows["enums"]}
    domains = {f"{r['schema']}.{r['name']}": {"base_type": r["base_type"], "nullable": r["nullable"],
                                              "default": r["default"], "checks": list(r["checks"] or [])}
               for r in rows["domains"]}

    body = {"tables": tables, "enums": enums, "domains": domains, "views": views}
    return {"format_version": FORMAT_VERSION, "hash": content_hash(body), "database": database,
            "taken_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **body}


def take_snapshot(conninfo: str, *, load_views: Iterable[str] = ()) -> dict[str, Any]:
    """Introspect the database at `conninfo`; DatabaseError (one line, no password) if it
    cannot be reached. Views named in `load_views` (ETL_LOAD_VIEWS) are described as tables."""

    where = _describe_conninfo(conninfo)
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(f"PostgreSQL at {where} is not reachable: {_connect_reason(exc)}",
                            hint="check LOCAL_PG_* and that the database is restored") from None
    try:
        with conn:
            # Every user object comes out schema-qualified, whatever the role's search_path.
            conn.execute("SET search_path = pg_catalog")
            # One consistent view of the catalog, even while a restore runs beside us.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rows = {name: _query(conn, name) for name in
                        ("relations", "columns", "constraints", "indexes", "partitions", "enums", "domains")}
                database = conn.execute("SELECT current_database()").fetchone()[0]
    except psycopg.Error as exc:
        raise DatabaseError(f"reading the catalog of {where} failed: {str(exc).strip().splitlines()[0]}") from None
    snap = build_snapshot(rows, database, load_views)
    log.info("snapshot of %s: %d tables, hash %s", where, len(snap["tables"]), snap["hash"][:12])
    return snap


