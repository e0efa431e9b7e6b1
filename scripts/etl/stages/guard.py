"""`etl guard`: the anomaly guard between the transform and the load.

A dump in which a table collapsed (a failed export, a truncated restore upstream) is still a
valid dump: every later stage would load it. The guard compares what the load is about to
write with what MongoDB holds now, per collection:

* the document count: a drop beyond ETL_GUARD_MAX_SHRINK (default 50%;
  ETL_GUARD_MAX_SHRINK_COLLECTIONS sets a limit per collection), or a collection that was not
  empty and would become empty, stops the run;
* where the table has an `updated_at`-like column (ETL_GUARD_TIMESTAMP_COLUMNS), its newest
  value: one older than the newest already in MongoDB means the dump is older than the data
  loaded before, and stops the run too.

A stop exits 5 before MongoDB is touched (the guard only reads counts and one document per
timestamped collection); the Makefile runs it before mongo-schema and load. A person who
knows the dump is right accepts it by collection (`ACCEPT_SHRINK=daily_metrics` /
`--accept-shrink daily_metrics`); the acceptance, with who gave it, goes into the stage
record and from there into the run's audit record. The verdict itself is `etl.model.guard`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import psycopg
from psycopg import sql

from etl.adapters.mongodb import connect
from etl.core.config import Config
from etl.core.errors import BackupError, RunError
from etl.core.names import check_db_name
from etl.core.paths import paths
from etl.core.runs import login_name
from etl.formats.dumpdir import read_manifest
from etl.formats.mapping import load_mapping
from etl.model.guard import OWN_COLLECTIONS, GuardReport, evaluate, pct
from etl.model.mapping import stored_bson

log = logging.getLogger("etl.guard")


def mongo_counts(cfg: Config, db: str, client=None) -> dict[str, int]:
    """Documents per collection of `db` now (the server's count; empty when the database does
    not exist). Reads only."""
    own = client is None
    client = client or connect(cfg["MONGO_URI"])
    try:
        if db not in client.list_database_names():
            return {}
        mdb = client[db]
        names = [n for n in mdb.list_collection_names()
                 if not n.startswith("system.") and "__staging_" not in n and n not in OWN_COLLECTIONS]
        return {n: mdb[n].estimated_document_count() for n in sorted(names)}
    finally:
        if own:
            client.close()


def timestamp_fields(cfg: Config, mapping: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Per collection, the first ETL_GUARD_TIMESTAMP_COLUMNS column its table has that is stored
    as a date: (table, column, field)."""
    wanted = [c.lower() for c in cfg["ETL_GUARD_TIMESTAMP_COLUMNS"]]
    out: dict[str, tuple[str, str, str]] = {}
    for name, spec in (mapping.get("collections") or {}).items():
        by_column = {f["column"].lower(): f for f in spec.get("fields") or []
                     if f.get("column") and stored_bson(f) == "date"}
        for column in wanted:
            if column in by_column:
                out[name] = (spec["table"], by_column[column]["column"], by_column[column]["name"])
                break
    return out


def newest_in_postgres(conninfo: str, fields: Mapping[str, tuple[str, str, str]]) -> dict[str, Any]:
    if not fields:
        return {}
    out: dict[str, Any] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, (table, column, _) in fields.items():
            schema, _, rel = table.partition(".")
            query = sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), sql.Identifier(schema, rel))
            out[name] = conn.execute(query).fetchone()[0]
    return out


def newest_in_mongo(cfg: Config, db: str, fields: Mapping[str, tuple[str, str, str]], client=None) -> dict[str, Any]:
    if not fields:
        return {}
    own = client is None
    client = client or connect(cfg["MONGO_URI"])
    try:
        mdb = client[db]
        out: dict[str, Any] = {}
        for name, (_, _, fld) in fields.items():
            doc = mdb[name].find_one({fld: {"$type": "date"}}, {fld: 1, "_id": 0}, sort=[(fld, -1)])
            out[name] = doc.get(fld) if doc else None
        return out
    finally:
        if own:
            client.close()


def gather(cfg: Config, db: str, after: Mapping[str, int], mapping: Mapping[str, Any], conninfo: str,
           accept: Iterable[str] = (), accepted_by: str | None = None, client=None) -> GuardReport:
    """Read MongoDB (counts, newest timestamps) and PostgreSQL (`conninfo`: the newest timestamps
    of the data to load), then evaluate."""
    unknown = [n for n in accept if n not in after]
    if unknown:
        raise RunError(f"--accept-shrink names {unknown[0]!r}, which is not a collection of this load",
                       hint="collections: " + ", ".join(sorted(after)))
    fields = timestamp_fields(cfg, mapping)
    fields = {n: f for n, f in fields.items() if n in after}
    before = mongo_counts(cfg, db, client)
    fields_before = {n: f for n, f in fields.items() if before.get(n)}
    return evaluate(db, before, after, default_limit=cfg["ETL_GUARD_MAX_SHRINK"],
                    limits=cfg["ETL_GUARD_MAX_SHRINK_COLLECTIONS"],
                    newest_fields={n: f[2] for n, f in fields.items()},
                    newest_before=newest_in_mongo(cfg, db, fields_before, client),
                    newest_after=newest_in_postgres(conninfo, fields),
                    accept=accept, accepted_by=accepted_by or login_name(),
                    accepted_at=datetime.now(timezone.utc))


def check(cfg: Config, db: str, accept: Iterable[str] = (), accepted_by: str | None = None) -> GuardReport:
    """The guard for the transformed export of `db` (data/transformed/<db>/manifest.json)."""
    db = check_db_name(db)
    try:
        manifest = read_manifest(paths.transformed / db)
    except BackupError as exc:
        raise RunError(f"transformed data for {db}: {exc}", hint="run `make transform` first") from None
    after = {n: int(e["count"]) for n, e in (manifest.get("collections") or {}).items()}
    return gather(cfg, db, after, load_mapping(), cfg.pg_conninfo, accept, accepted_by)


def report_lines(report: GuardReport) -> list[str]:
    lines = []
    for c in report.checks:
        if c.problems:
            state = f"accepted by {report.accepted_by}" if c.accepted else "STOP"
            lines.append(f"  {c.collection}: {'; '.join(c.problems)} [{state}]")
    ok = sum(1 for c in report.checks if not c.problems)
    lines.insert(0, f"guard: {len(report.checks)} collections checked against {report.database} "
                    f"(largest drop allowed {pct(report.default_limit)}"
                    + (", per-collection limits set" if any(c.limit != report.default_limit for c in report.checks)
                       else "") + f"): {ok} ok")
    return lines
