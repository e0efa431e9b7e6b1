"""`etl compare A B` (make compare A=bravo-1 B=bravo-1-20261126): two databases side by side.

The seed's parallel databases exist to be compared before switching: per collection the
document counts, the indexes, the validators, and the differences among a sample of
documents (the first N `_id`s of each side, looked up on the other, field by field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import PyMongoError

from etl.adapters.mongodb import connect, describe
from etl.core.config import Config, mask_uri
from etl.core.errors import ConfigError, DatabaseError
from etl.core.hashing import canonical_json, content_hash
from etl.core.names import check_db_name

MAX_PATHS = 8  # differing fields listed per document


@dataclass
class Side:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    validators: dict[str, str | None] = field(default_factory=dict)  # collection -> hash of $jsonSchema


def _index_spec(info: dict[str, Any]) -> dict[str, Any]:
    # "v" and "ns" differ between server versions without meaning a different index.
    spec = {k: v for k, v in info.items() if k not in ("v", "ns", "background")}
    spec["key"] = [list(pair) for pair in info.get("key", [])]
    return spec


def read_side(database, name: str) -> Side:
    side = Side(name)
    collections = sorted(n for n in database.list_collection_names() if not n.startswith("system."))
    for coll in collections:
        side.counts[coll] = database[coll].count_documents({})
        side.indexes[coll] = {n: _index_spec(i) for n, i in database[coll].index_information().items()}
    found: dict[str, str | None] = {coll: None for coll in collections}
    for info in database.list_collections():
        validator = (info.get("options") or {}).get("validator")
        if info.get("name") in found and validator:
            found[info["name"]] = content_hash(validator)[:12]
    side.validators = found
    return side


def doc_diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths where two documents differ (values compared in canonical JSON)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(f"+{sub}")
            elif key not in b:
                out.append(f"-{sub}")
            else:
                out += doc_diff(a[key], b[key], sub)
        return out
    if type(a) is not type(b) or canonical_json(a) != canonical_json(b):
        return [path or "(document)"]
    return []


def sample_differences(db_a, db_b, collection: str, sample: int) -> list[dict[str, Any]]:
    """The first `sample` _ids of each side, looked up on the other."""
    found: list[dict[str, Any]] = []
    ca, cb = db_a[collection], db_b[collection]
    docs_a = list(ca.find({}, sort=[("_id", 1)], limit=sample))
    ids_a = [d["_id"] for d in docs_a]
    twins = {canonical_json(d["_id"]): d for d in cb.find({"_id": {"$in": ids_a}})} if ids_a else {}
    for doc in docs_a:
        other = twins.get(canonical_json(doc["_id"]))
        if other is None:
            found.append({"collection": collection, "_id": doc["_id"], "only_in": "A"})
            continue
        paths = doc_diff(doc, other)
        if paths:
            found.append({"collection": collection, "_id": doc["_id"], "fields": paths[:MAX_PATHS],
                          "more": max(len(paths) - MAX_PATHS, 0)})
    ids_b = [d["_id"] for d in cb.find({}, {"_id": 1}, sort=[("_id", 1)], limit=sample)]
    present = {canonical_json(d["_id"]) for d in ca.find({"_id": {"$in": ids_b}}, {"_id": 1})} if ids_b else set()
    for _id in ids_b:
        if canonical_json(_id) not in present:
            found.append({"collection": collection, "_id": _id, "only_in": "B"})
    return found


def compare_databases(cfg: Config, a: str, b: str, sample: int = 20) -> dict[str, Any]:
    """Everything `etl compare` shows, as data. `identical` is False on any difference."""
    check_db_name(a)
    check_db_name(b)
    if a == b:
        raise ConfigError(f"both sides are {a!r}; name two different databases")
    client = connect(cfg["MONGO_URI"])
    try:
        try:
            side_a, side_b = read_side(client[a], a), read_side(client[b], b)
            rows = []
            differences: list[dict[str, Any]] = []
            for coll in sorted(set(side_a.counts) | set(side_b.counts)):
                row = {"collection": coll, "count_a": side_a.counts.get(coll),
                       "count_b": side_b.counts.get(coll)}
                if coll in side_a.counts and coll in side_b.counts:
                    ia, ib = side_a.indexes[coll], side_b.indexes[coll]
                    row["indexes"] = "same" if ia == ib else "differ"
                    row["indexes_only_a"] = sorted(set(ia) - set(ib))
                    row["indexes_only_b"] = sorted(set(ib) - set(ia))
                    row["indexes_changed"] = sorted(n for n in set(ia) & set(ib) if ia[n] != ib[n])
                    va, vb = side_a.validators.get(coll), side_b.validators.get(coll)
                    row["validator"] = ("same" if va == vb else "differ") if (va or vb) else "none"
                    if sample:
                        differences += sample_differences(client[a], client[b], coll, sample)
                else:
                    row["only_in"] = "A" if coll in side_a.counts else "B"
                rows.append(row)
        except PyMongoError as exc:
            raise DatabaseError(f"cannot compare at {mask_uri(cfg['MONGO_URI'])}: {describe(exc)}") from None
    finally:
        client.close()
    identical = not differences and all(
        r.get("only_in") is None and r["count_a"] == r["count_b"] and r["indexes"] == "same"
        and r["validator"] in ("same", "none") for r in rows)
    return {"a": a, "b": b, "collections": rows, "sample": sample, "differences": differences,
            "identical": identical}


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def compare_lines(result: dict[str, Any]) -> list[str]:
    a, b = result["a"], result["b"]
    header = ("collection", a, b, "indexes", "validator")
    rows = [header]
    for r in result["collections"]:
        if r.get("only_in"):
            where = f"only in {a if r['only_in'] == 'A' else b}"
            rows.append((r["collection"], _count(r["count_a"]), _count(r["count_b"]), where, ""))
        else:
            idx = r["indexes"]
            if idx == "differ":
                bits = [f"-{n}" for n in r["indexes_only_a"]] + [f"+{n}" for n in r["indexes_only_b"]]
                bits += [f"~{n}" for n in r["indexes_changed"]]
                idx = "differ: " + " ".join(bits)
            rows.append((r["collection"], _count(r["count_a"]), _count(r["count_b"]), idx, r["validator"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.rjust(widths[j]) if j in (1, 2) and i else c.ljust(widths[j]) for j, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    diffs = result["differences"]
    lines.append("")
    if not result["sample"]:
        lines.append("documents: not sampled (--sample 0)")
    elif not diffs:
        lines.append(f"documents: no difference among the first {result['sample']} _ids of each collection")
    else:
        lines.append(f"document differences (first {result['sample']} _ids of each collection; "
                     f"-field only in {a}, +field only in {b}):")
        for d in diffs:
            _id = json.dumps(d["_id"], default=str)
            if d.get("only_in"):
                lines.append(f"  {d['collection']} _id {_id}: only in {a if d['only_in'] == 'A' else b}")
            else:
                more = f" (+{d['more']} more)" if d.get("more") else ""
                lines.append(f"  {d['collection']} _id {_id}: {', '.join(d['fields'])}{more}")
    lines.append("identical" if result["identical"] else "databases differ")
    return lines
