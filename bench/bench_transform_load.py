"""Transform and load benchmark: one run, every ratio the transform-and-load issue asks for.

Starts a private PostgreSQL cluster on a free port in a scratch folder, generates a 1M-row
table (numeric, date, timestamptz, jsonb, text[]) plus nine small tables, and measures:

* transform_copy_ratio  transform of the big table / `COPY big TO STDOUT` of the same table
                        (general_path_copy_ratio: the same with ETL_TRANSFORM_FASTPATH=false)
* noop_seconds          `etl transform` (a fresh process) when nothing changed: fingerprints only
* incremental_ratio     `etl transform` after one small table of ten changed / a full transform
* peak_rss_mb           peak RSS of a transform process on a 5M-row table

plus the readers studied for the fast path (rows/s on the same rows). Results go to
bench/results.json; bench/bench_mongo.py adds the MongoDB ratios (load, validation).

    .venv/bin/python bench/bench_transform_load.py            # full run (several minutes)
    .venv/bin/python bench/bench_transform_load.py --rows 100000 --rss-rows 200000 --load-rows 5000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "scripts"))

SMALL_TABLES = 9

BIG_SQL = """
CREATE TABLE {name} (id bigint PRIMARY KEY, amount numeric(14,2), day date, at timestamptz,
                     doc jsonb, tags text[], name text);
INSERT INTO {name}
SELECT g, (g % 100000) / 7.0, DATE '2020-01-01' + (g % 2000), TIMESTAMPTZ '2020-01-01' + g * INTERVAL '1.5 second',
       jsonb_build_object('k', g, 'name', 'n' || g, 'nested', jsonb_build_object('a', g % 7, 'b', ARRAY[1, 2, 3])),
       ARRAY['a' || (g % 10), 'b', 'c'], md5(g::text)
FROM generate_series(1, {rows}) g;
VACUUM ANALYZE {name};
"""

SMALL_SQL = """
CREATE TABLE small_{i} (id int PRIMARY KEY, label text, price numeric(10,2), created date, active boolean);
INSERT INTO small_{i} SELECT g, 'label ' || g, g * 1.25, DATE '2024-01-01' + g % 365, g % 2 = 0
FROM generate_series(1, {rows}) g;
ANALYZE small_{i};
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def copy_seconds(conninfo: str, table: str) -> float:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        with conn.cursor().copy(f"COPY {table} TO STDOUT") as cp:
            for _ in cp:
                pass
        return time.perf_counter() - start


# -- readers studied for the fast path (same rows, documents encoded, nothing written) --------


def reader_naive(conninfo: str, table: str, limit: int) -> int:
    """Server-side cursor, dict rows, per-value conversion in Python, bson.encode per row."""
    import bson
    import psycopg
    from bson.decimal128 import Decimal128
    from psycopg.rows import dict_row

    n = 0
    with psycopg.connect(conninfo) as conn, conn.cursor(name="naive", row_factory=dict_row) as cur:
        cur.itersize = 10_000
        cur.execute(f"SELECT * FROM {table} WHERE id <= %s", (limit,))
        for row in cur:
            doc = {"_id": row.pop("id")}
            for key, value in row.items():
                if key == "amount" and value is not None:
                    value = Decimal128(value)
                elif key == "day" and value is not None:
                    import datetime as dt

                    value = dt.datetime(value.year, value.month, value.day)
                doc[key] = value
            bson.encode(doc)
            n += 1
    return n


def reader_binary_copy(conninfo: str, table: str, limit: int) -> int:
    """COPY … (FORMAT BINARY) with set_types (rows parsed in C), then dicts and bson.encode."""
    import datetime as dt

    import bson
    import psycopg
    from bson.decimal128 import Decimal128

    n = 0
    with psycopg.connect(conninfo) as conn:
        with conn.cursor().copy(f"COPY (SELECT * FROM {table} WHERE id <= {int(limit)}) TO STDOUT (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "numeric", "date", "timestamptz", "jsonb", "text[]", "text"])
            for rid, amount, day, at, doc, tags, name in cp.rows():
                bson.encode({"_id": rid, "amount": Decimal128(amount), "day": dt.datetime(day.year, day.month, day.day),
                             "at": at, "doc": doc, "tags": tags, "name": name})
                n += 1
    return n


# -- subprocess runs of the real command ------------------------------------------------------


def etl_transform(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "from etl.cli import main; main()", "transform", *args], env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"etl transform {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    return elapsed


RSS_CHILD = r"""
import json, resource, sys, time
from etl.core.config import load_config
from etl.stages.transform import transform
from etl.formats.mapping import load_mapping
cfg = load_config()
start = time.perf_counter()
result = transform(cfg, collections=[sys.argv[1]], force=True, workers=int(sys.argv[2]))
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "count": result.collections[sys.argv[1]].count}))
"""


# The benchmark points the pipeline's settings at its own cluster; `make all` in this tree
# runs with the environment the benchmark was started with.
ORIGINAL_ENV = dict(os.environ)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small-rows", type=int, default=2_000)
    ap.add_argument("--rss-rows", type=int, default=5_000_000)
    ap.add_argument("--reader-rows", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()

    from etl.adapters.services import PgCluster, free_port

    scratch = Path(tempfile.mkdtemp(prefix="etl-bench-"))
    scratch.chmod(0o755)
    cluster = PgCluster(scratch / "pg", free_port())
    results: dict[str, object] = {"rows": args.rows, "small_tables": SMALL_TABLES, "small_rows": args.small_rows,
                                  "rss_rows": args.rss_rows, "cpus": os.cpu_count(),
                                  "load_average_start": os.getloadavg()[0], "timings": {}, "readers": {}}
    timings: dict[str, float] = results["timings"]  # type: ignore[assignment]
    try:
        log(f"starting PostgreSQL in {scratch}")
        cluster.start()
        import psycopg

        dsn = cluster.dsn("postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        conninfo = cluster.dsn("bench")
        log(f"generating big ({args.rows} rows) and {SMALL_TABLES} small tables")
        t, _ = timed(_execute, conninfo, BIG_SQL.format(name="big", rows=args.rows)
                     + "".join(SMALL_SQL.format(i=i, rows=args.small_rows) for i in range(SMALL_TABLES)))
        timings["generate_seconds"] = t

        root = scratch / "project"
        (root / "schemas").mkdir(parents=True)
        (root / "pipeline.env").write_text("")
        env = dict(os.environ, ETL_ROOT=str(root), LOCAL_PG_HOST="127.0.0.1", LOCAL_PG_PORT=str(cluster.port),
                   LOCAL_PG_USER="postgres", LOCAL_PG_PASSWORD="", LOCAL_PG_DB="bench", LOCAL_PG_MANAGED="false",
                   MONGO_DB_NAME="bench",
                   ETL_TRANSFORM_WORKERS=os.environ.get("ETL_TRANSFORM_WORKERS", "2"),
                   PYTHONPATH=str(REPO / "scripts"))
        # The `etl` processes start as on an ordinary install, with Python's byte-code cache:
        # a PYTHONDONTWRITEBYTECODE inherited from the shell would recompile every module of
        # the project at each start (~50 ms), which no installed pipeline pays.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update({k: env[k] for k in ("ETL_ROOT", "LOCAL_PG_HOST", "LOCAL_PG_PORT", "LOCAL_PG_USER",
                                                "LOCAL_PG_PASSWORD", "LOCAL_PG_DB", "LOCAL_PG_MANAGED",
                                                "MONGO_DB_NAME", "ETL_TRANSFORM_WORKERS")})
        from etl.core.config import load_config
        from etl.model.mapping import build_mapping
        from etl.formats.mapping import write_mapping
        from etl.stages.snapshot import take_snapshot
        from etl.stages.transform import transform

        cfg = load_config()
        mapping = build_mapping(take_snapshot(conninfo))
        write_mapping(mapping)

        # 1. transform / COPY on the big table
        copies = [copy_seconds(conninfo, "big") for _ in range(3)]
        copy_s = min(copies)  # best of three, as the transform's best of two below
        timings["copy_big_seconds"] = copy_s
        timings["copy_big_all"] = copies
        runs = []
        for _ in range(2):
            t, _ = timed(transform, cfg, collections=["big"], force=True, mapping=mapping)
            runs.append(t)
        transform_s = min(runs)
        timings["transform_big_seconds"] = transform_s
        timings["transform_big_all"] = runs
        t1, result = timed(transform, cfg, collections=["big"], force=True, mapping=mapping, workers=1)
        timings["transform_big_one_worker_seconds"] = t1
        results["transform_reader"] = result.collections["big"].reader
        os.environ["ETL_TRANSFORM_FASTPATH"] = "false"
        general_s, _ = timed(transform, load_config(), collections=["big"], force=True, mapping=mapping, workers=1)
        os.environ.pop("ETL_TRANSFORM_FASTPATH")
        timings["transform_big_general_path_seconds"] = general_s
        results["transform_copy_ratio"] = round(transform_s / copy_s, 3)
        results["transform_copy_ratio_one_worker"] = round(t1 / copy_s, 3)
        results["general_path_copy_ratio"] = round(general_s / copy_s, 3)
        log(f"COPY {copy_s:.2f}s, transform {transform_s:.2f}s (1 worker {t1:.2f}s, general path {general_s:.2f}s)")

        # 2. readers studied, on the same first rows of big
        n = min(args.reader_rows, args.rows)
        readers = results["readers"]  # type: ignore[assignment]
        for name, fn in (("naive_row_loop", reader_naive), ("binary_copy_set_types", reader_binary_copy)):
            t, count = timed(fn, conninfo, "big", n)
            readers[name] = {"rows": count, "seconds": round(t, 3), "rows_per_second": round(count / t)}
        readers["sql_extended_json_bsonjs"] = {"rows": args.rows, "seconds": round(general_s, 3),
                                               "rows_per_second": round(args.rows / general_s)}
        readers["binary_copy_c_encoder"] = {"rows": args.rows, "seconds": round(t1, 3),
                                            "rows_per_second": round(args.rows / t1)}
        readers["copy_text_only"] = {"rows": args.rows, "seconds": round(copy_s, 3),
                                     "rows_per_second": round(args.rows / copy_s)}
        log(f"readers: {readers}")
        results["naive_copy_ratio"] = round((args.rows / readers["naive_row_loop"]["rows_per_second"]) / copy_s, 2)

        # 3. full transform (fresh process), no-op, one of ten tables changed
        etl_transform(env)  # warm-up: the byte-code cache, the small tables' first transform
        full = etl_transform(env, "--force")
        noop = min(etl_transform(env) for _ in range(3))
        _execute(conninfo, "UPDATE small_3 SET label = label || '!' WHERE id % 10 = 0")
        changed = etl_transform(env)
        timings.update(full_transform_seconds=full, noop_transform_seconds=noop, one_changed_seconds=changed)
        results["noop_seconds"] = round(noop, 3)
        results["incremental_ratio"] = round(changed / full, 4)
        log(f"full {full:.2f}s, no-op {noop:.2f}s, one changed {changed:.2f}s")

        # 5. peak RSS of a transform process on rss_rows rows
        log(f"generating {args.rss_rows} rows for the memory measurement")
        t, _ = timed(_execute, conninfo, BIG_SQL.format(name="huge", rows=args.rss_rows))
        timings["generate_huge_seconds"] = t
        write_mapping(build_mapping(take_snapshot(conninfo)))
        rss = {}
        for workers in (1, 2):
            proc = subprocess.run([sys.executable, "-c", RSS_CHILD, "huge", str(workers)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-400:])
            rss[workers] = json.loads(proc.stdout.strip().splitlines()[-1])
        results["peak_rss_mb"] = round(max(rss[1]["self_kb"], rss[1]["children_kb"]) / 1024, 1)
        results["peak_rss_mb_two_workers"] = round(max(rss[2]["self_kb"], rss[2]["children_kb"]) / 1024, 1)
        timings["transform_huge_seconds"] = rss[1]["seconds"]
        timings["transform_huge_two_workers_seconds"] = rss[2]["seconds"]
        log(f"peak RSS {results['peak_rss_mb']} MB (1 worker), {results['peak_rss_mb_two_workers']} MB (2)")
        results["load_average_end"] = os.getloadavg()[0]
    finally:
        cluster.destroy()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    measure_make_noop(results)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: results.get(k) for k in ("transform_copy_ratio", "noop_seconds", "incremental_ratio",
                                                   "peak_rss_mb")}, indent=2))


def measure_make_noop(results: dict) -> None:
    """`make all` with nothing changed, in this project tree (its own services and data),
    when a complete run has happened here (e.g. after `make demo`). The transform-only no-op
    above stays as `noop_transform_seconds`."""
    import subprocess

    from etl.core.config import load_config
    from etl.core.paths import SOURCE_ROOT

    results["noop_transform_seconds"] = results.get("noop_seconds")
    root = Path(ORIGINAL_ENV.get("ETL_ROOT") or SOURCE_ROOT)
    db = load_config(root=root, environ=ORIGINAL_ENV)["MONGO_DB_NAME"]
    if not (root / ".make" / db / "push.stamp").is_file():
        results["make_noop_note"] = "no complete run in this tree (run `make demo` first): make all not timed"
        return
    times = []
    for _ in range(3):
        started = time.perf_counter()
        proc = subprocess.run(["make", "-s", "all"], cwd=root, env=ORIGINAL_ENV, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            results["make_noop_note"] = f"make all failed (exit {proc.returncode}); not timed"
            return
        if "nothing to do" not in proc.stdout + proc.stderr:
            results["make_noop_note"] = "make all found stale stages; the figure is not a no-op"
    results["noop_seconds"] = round(min(times), 3)
    results["timings"]["make_all_noop_seconds"] = [round(t, 3) for t in times]
    log(f"make all with nothing changed: {min(times):.2f}s (best of 3)")


def _execute(conninfo: str, sql: str) -> None:
    import psycopg

    # one statement at a time: VACUUM refuses to run inside the implicit multi-statement transaction
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement)


if __name__ == "__main__":
    main()
