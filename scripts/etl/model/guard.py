"""The anomaly guard's verdict: what the load is about to write against what MongoDB holds.

Pure logic (the reading is `etl.stages.guard`): a drop in a collection's document count beyond
its limit, a collection that would become empty, or a newest updated_at-like value older than
the one already loaded stops the load, unless a person accepted that collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

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
             accept: Iterable[str] = (), accepted_by: str | None = None,
             accepted_at: datetime | None = None) -> GuardReport:
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
        report.accepted_by = accepted_by or "unknown"
        report.accepted_at = _iso(accepted_at) if accepted_at else None
    return report


