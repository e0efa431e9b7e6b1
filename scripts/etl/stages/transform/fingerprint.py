"""Fingerprints: is a collection's output still current, from one catalog query per table."""

from __future__ import annotations

import json
import subprocess
from typing import Any, Iterable

from etl.core.errors import DatabaseError, TransformError
from etl.core.hashing import content_hash
from etl.stages.transform.copy import _psql
from etl.stages.transform.sql import qlit, qtable

# Part of every fingerprint: bump it when the same rows and mapping give different documents.
TRANSFORM_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Fingerprints: is this collection's output still current?


_STATS_SQL = """
SELECT coalesce(json_object_agg(r.name, CASE WHEN to_regclass(r.q) IS NOT NULL THEN (
  SELECT json_build_array(
           coalesce(sum(s.n_tup_ins), 0)::text, coalesce(sum(s.n_tup_upd), 0)::text,
           coalesce(sum(s.n_tup_del), 0)::text, coalesce(sum(s.n_live_tup), 0)::text,
           coalesce(string_agg(c.relfilenode::text, ',' ORDER BY c.oid), ''),
           coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0)::bigint)
  FROM pg_class c
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  WHERE c.oid = to_regclass(r.q)
     OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(r.q))) END), '{}')
FROM (VALUES {values}) r(name, q)
"""


def query_json(conninfo: str, sql: str) -> Any:
    """The one JSON value `sql` returns, through psql: the transform's catalog reads cost a
    psql start (milliseconds) instead of importing a driver, which a run with nothing to do
    would spend most of its time on."""
    argv, env = _psql(conninfo)
    proc = subprocess.run(argv + ["-A", "-t", "-c", sql], capture_output=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        first = err.splitlines()[0] if err else f"psql exited with {proc.returncode}"
        raise DatabaseError(first.removeprefix("psql: error: ").removeprefix("ERROR:  "))
    return json.loads(proc.stdout)


def table_stats(conninfo: str, tables: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per table (partitions summed): write counters, relfilenodes and the row estimate, in one
    catalog query."""
    names = sorted(set(tables))
    if not names:
        return {}
    values = ", ".join(f"({qlit(t)}, {qlit(qtable(t))})" for t in names)
    rows = query_json(conninfo, _STATS_SQL.replace("{values}", values))
    out = {}
    for table in names:
        row = rows.get(table)
        if row is None:
            raise TransformError(f"table {table} of the mapping does not exist in the local database",
                                 hint="the mapping is older than the restore: run `make canonical`")
        out[table] = {"ins": row[0], "upd": row[1], "del": row[2], "live": row[3],
                      "files": row[4], "estimate": int(row[5] or 0)}
    return out


def fingerprint(name: str, spec: dict[str, Any], stats: dict[str, dict[str, Any]], source: Any,
                embedded: Iterable[str] = ()) -> str:
    """sha256 of what decides the collection's documents: its mapping entry, the transform's
    version, the restored dump, and for its table and every embedded child table the
    statistics counters PostgreSQL keeps anyway (rows inserted/updated/deleted, live rows) and
    the relation's file node (changed by TRUNCATE, VACUUM FULL and a fresh restore). Reading
    them is one catalog query per table, whatever its size. `embedded`: the tables of the
    children embedded in it."""
    tables = [spec["table"], *embedded]
    state = {t: {k: v for k, v in stats.get(t, {}).items() if k != "estimate"} for t in tables}
    return content_hash({"v": TRANSFORM_VERSION, "collection": name, "spec": spec,
                         "tables": state, "source": source})



