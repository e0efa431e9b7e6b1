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
record and from there into the run's audit record.
"""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

import click

from etl.cli import config_options
from etl.config import Config
from etl.errors import GuardStop, RunError

log = logging.getLogger("etl.guard")

# Collections of the pipeline's own bookkeeping, never part of a load.
OWN_COLLECTIONS = ("etl_audit", "_etl_migrations")


def pct(fraction: float) -> str:
    """0.995 -> '99.5%', 0.5 -> '50%'."""
    text = f"{fraction * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def parse_accept(values: Iterable[str] | None) -> list[str]:
    """`--accept-shrink a,b --accept-shrink c` -> [a, b, c] (order kept, duplicates dropped)."""
    out: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _utc(value: Any) -> datetime | None:
    """A timestamp from PostgreSQL or MongoDB as an aware UTC datetime at millisecond
    precision (what BSON keeps), so both sides compare."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    else:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if value else None


@dataclass
class Check:
    collection: str
    before: int | None  # documents in MongoDB now; None: no such collection
    after: int  # documents the load would write
    limit: float
    newest_field: str | None = None
    newest_before: datetime | None = None
    newest_after: datetime | None = None
    problems: list[str] = field(default_factory=list)
    accepted: bool = False

    @property
    def shrink(self) -> float | None:
        if not self.before:
            return None
        return max(0.0, (self.before - self.after) / self.before)

    @property
    def stops(self) -> bool:
        return bool(self.problems) and not self.accepted

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"collection": self.collection, "before": self.before, "after": self.after,
                               "difference": None if self.before is None else self.after - self.before,
                               "shrink": None if self.shrink is None else round(self.shrink, 4),
                               "limit": pct(self.limit), "problems": list(self.problems),
                               "status": ("accepted" if self.accepted and self.problems else
                                          "stop" if self.problems else "ok")}
        if self.newest_field:
            out["newest"] = {"field": self.newest_field, "before": _iso(self.newest_before),
                             "after": _iso(self.newest_after)}
        return out


@dataclass
class GuardReport:
    database: str
    default_limit: float
    checks: list[Check]
    accepted_by: str | None = None
    accepted_at: str | None = None

    @property
    def stopped(self) -> list[Check]:
        return [c for c in self.checks if c.stops]

    @property
    def accepted(self) -> list[Check]:
        return [c for c in self.checks if c.accepted and c.problems]

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database, "limit": pct(self.default_limit),
            "checked": len(self.checks),
            "stopped": [c.collection for c in self.stopped],
            "accepted": [{"collection": c.collection, "problems": list(c.problems),
                          "before": c.before, "after": c.after,
                          "accepted_by": self.accepted_by, "accepted_at": self.accepted_at}
                         for c in self.accepted],
            "collections": {c.collection: c.as_dict() for c in self.checks},
        }

    def stop_message(self) -> str:
        parts = [f"{c.collection} {'; '.join(c.problems)}" for c in self.stopped]
        head = "the new dump looks wrong: " if len(parts) == 1 else f"the new dump looks wrong in {len(parts)} collections: "
        return head + "; ".join(parts) + "; the load did not start and MongoDB was not touched"


def evaluate(database: str, before: Mapping[str, int], after: Mapping[str, int], *, default_limit: float,
             limits: Mapping[str, float] | None = None, newest_fields: Mapping[str, str] | None = None,
             newest_before: Mapping[str, Any] | None = None, newest_after: Mapping[str, Any] | None = None,
             accept: Iterable[str] = (), accepted_by: str | None = None) -> GuardReport:
    """The guard's verdict (pure): `before` is what MongoDB holds per collection, `after` what the
    load would write. `accept` names collections a person accepted whatever they show."""
    limits = limits or {}
    accept = set(accept)
    checks = []
    for name in sorted(after):
        if name in OWN_COLLECTIONS:
            continue
        check = Check(name, before.get(name), int(after[name]), limits.get(name, default_limit))
        if check.before:
            if check.after == 0:
                check.problems.append(f"would become empty ({check.before:,} → 0 documents)")
            elif check.shrink is not None and check.shrink > check.limit:
                check.problems.append(f"shrank by {pct(check.shrink)} ({check.before:,} → {check.after:,} documents), "
                                      f"more than the {pct(check.limit)} allowed")
        if newest_fields and name in newest_fields:
            check.newest_field = newest_fields[name]
            check.newest_before = _utc((newest_before or {}).get(name))
            check.newest_after = _utc((newest_after or {}).get(name))
            if check.newest_before and check.newest_after and check.newest_after < check.newest_before:
                check.problems.append(f"newest {check.newest_field} went back from {_iso(check.newest_before)} "
                                      f"to {_iso(check.newest_after)} (an older dump?)")
        check.accepted = name in accept
        checks.append(check)
    report = GuardReport(database, default_limit, checks)
    if report.accepted:
        report.accepted_by = accepted_by or login_name()
        report.accepted_at = _iso(datetime.now(timezone.utc))
    return report


# --- what the guard reads ---------------------------------------------------------------------


def mongo_counts(cfg: Config, db: str, client=None) -> dict[str, int]:
    """Documents per collection of `db` now (the server's count; empty when the database does
    not exist). Reads only."""
    from etl.mongo import connect

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
    from etl.mapping import stored_bson

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
    import psycopg
    from psycopg import sql

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
    from etl.mongo import connect

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
                    accept=accept, accepted_by=accepted_by)


def check(cfg: Config, db: str, accept: Iterable[str] = (), accepted_by: str | None = None) -> GuardReport:
    """The guard for the transformed export of `db` (data/transformed/<db>/manifest.json)."""
    from etl.bsondump import read_manifest
    from etl.errors import BackupError
    from etl.mongo import check_db_name
    from etl.paths import paths
    from etl.transform import load_mapping

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


@click.command("guard")
@click.option("--db", help="Target database (default MONGO_DB_NAME).")
@click.option("--accept-shrink", "accept", multiple=True, metavar="COLLECTION[,…]",
              help="Load these collections even though they shrank, emptied or went back (recorded in the audit).")
@click.option("--by", "accepted_by", help="Who accepts (default: the login name).")
@config_options
def guard_cmd(cfg: Config, db: str | None, accept: tuple[str, ...], accepted_by: str | None):
    """Stop the load when a collection of the new dump collapsed; MongoDB is only read.

    Compares each collection's document count in data/transformed/<db>/ with MongoDB's:
    a drop beyond ETL_GUARD_MAX_SHRINK (default 50%; ETL_GUARD_MAX_SHRINK_COLLECTIONS per
    collection), a collection that would become empty, or a newest updated_at-like value older
    than the one loaded exits 5. `make all ACCEPT_SHRINK=name` accepts it.

    Example: etl guard --accept-shrink daily_metrics --by alice
    """
    target = cfg["MONGO_DB_NAME"] if db is None else db
    report = check(cfg, target, parse_accept(accept), accepted_by)
    from etl.runlog import current_stage

    if (stage := current_stage()) is not None:  # the run's audit record
        stage.info["guard"] = report.as_dict()
        stage.counts["collections"] = len(report.checks)
    for line in report_lines(report):
        click.echo(line)
    for c in report.accepted:
        log.warning("guard: %s accepted by %s on %s: %s", c.collection, report.accepted_by,
                    socket.gethostname(), "; ".join(c.problems))
    if report.stopped:
        names = ",".join(c.collection for c in report.stopped)
        raise GuardStop(report.stop_message(),
                        hint=f"if the dump is right: make all ACCEPT_SHRINK={names} (or etl run --accept-shrink {names})")
