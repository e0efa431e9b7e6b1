"""Benchmark: snapshot + diff of a generated schema of 500 tables × 20 columns.

Each table has a primary key, a foreign key to the previous table, a unique constraint, a
check and two indexes. The figure is the time of `take_snapshot` on the changed database plus
`detect_changes` against the accepted one, i.e. what `etl snapshot && etl detect` spends per
night on such a schema (goal: ≤ 3 s). Prints the result and writes bench/snapshot-results.json.

    .venv/bin/python bench/bench_snapshot.py                # a private throwaway cluster
    .venv/bin/python bench/bench_snapshot.py --dsn "host=… dbname=postgres"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from etl.model.diff import detect_changes
from etl.adapters.services import PgCluster, free_port
from etl.stages.snapshot import take_snapshot

RESULTS = Path(__file__).with_name("snapshot-results.json")
TYPES = ["integer", "bigint", "text", "character varying(80)", "numeric(12,2)", "boolean", "date",
         "timestamp with time zone", "jsonb", "uuid", "smallint", "double precision", "text[]",
         "public.status", "numeric(5,2)", "character varying(20)", "integer", "text"]


def schema_sql(tables: int, columns: int) -> str:
    out = ["CREATE TYPE status AS ENUM ('draft', 'active', 'paused');"]
    for t in range(tables):
        cols = ["id bigint PRIMARY KEY"]
        if t:
            cols.append(f"parent_id bigint REFERENCES t{t - 1:04d}(id) ON DELETE CASCADE")
        while len(cols) < columns:
            n = len(cols)
            type_ = TYPES[(n + t) % len(TYPES)]
            cols.append(f"c{n:02d} {type_}{' NOT NULL' if n % 5 == 0 else ''}")
        cols.append("UNIQUE (c03, c04)")
        cols.append("CHECK (c02 IS NOT NULL OR c03 IS NULL)")
        out.append(f"CREATE TABLE t{t:04d} ({', '.join(cols)});")
        out.append(f"CREATE INDEX ON t{t:04d} (c05);")
        out.append(f"CREATE INDEX ON t{t:04d} (c06, c07) WHERE c08 IS NOT NULL;")
    return "\n".join(out)


CHANGES = """
ALTER TABLE t0010 ADD COLUMN score numeric(5,2);
ALTER TABLE t0020 RENAME COLUMN c03 TO c03_renamed;
ALTER TABLE t0030 ALTER COLUMN c04 TYPE text;
ALTER TABLE t0040 DROP COLUMN c09;
CREATE INDEX ON t0050 (c10);
ALTER TYPE status ADD VALUE 'archived';
DROP TABLE t0499;
"""


def run(dsn_admin: str, tables: int, columns: int, repeat: int) -> dict:
    dbname = f"bench_snapshot_{os.getpid()}"
    with psycopg.connect(dsn_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    dsn = psycopg.conninfo.make_conninfo(dsn_admin, dbname=dbname)
    try:
        started = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(schema_sql(tables, columns))
        build_s = time.perf_counter() - started
        accepted = take_snapshot(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(CHANGES)
        snap_times, diff_times, totals = [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            current = take_snapshot(dsn)
            t1 = time.perf_counter()
            changes = detect_changes(accepted, current)
            t2 = time.perf_counter()
            snap_times.append(t1 - t0)
            diff_times.append(t2 - t1)
            totals.append(t2 - t0)
        n_columns = sum(len(t["columns"]) for t in current["tables"].values())
        return {
            "benchmark": "snapshot + diff",
            "tables": len(accepted["tables"]), "columns": sum(len(t["columns"]) for t in accepted["tables"].values()),
            "columns_after_changes": n_columns, "changes_found": len(changes),
            "repeat": repeat, "build_schema_s": round(build_s, 2),
            "snapshot_s_median": round(statistics.median(snap_times), 3),
            "diff_s_median": round(statistics.median(diff_times), 3),
            "total_s_median": round(statistics.median(totals), 3),
            "total_s_max": round(max(totals), 3),
            "goal_s": 3.0,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        with psycopg.connect(dsn_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="libpq DSN of a server to use (default: start a private cluster)")
    parser.add_argument("--tables", type=int, default=500)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cluster, base = None, None
    if args.dsn:
        dsn_admin = args.dsn
    else:
        base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        base.chmod(0o755)
        cluster = PgCluster(base / "pg", free_port())
        cluster.start()
        dsn_admin = cluster.dsn()
    try:
        result = run(dsn_admin, args.tables, args.columns, args.repeat)
    finally:
        if cluster:
            cluster.destroy()
            shutil.rmtree(base, ignore_errors=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "within" if result["total_s_median"] <= result["goal_s"] else "OVER"
    print(f"snapshot + diff of {result['tables']} tables × {args.columns} columns ({result['columns']} columns): "
          f"{result['total_s_median']:.2f} s median of {result['repeat']} (snapshot {result['snapshot_s_median']:.2f} s, "
          f"diff {result['diff_s_median']:.3f} s, worst {result['total_s_max']:.2f} s) — {verdict} the "
          f"{result['goal_s']:.0f} s goal; {result['changes_found']} changes found")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
