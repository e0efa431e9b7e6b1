"""MongoDB benchmark: the load and the validation on a MongoDB server, each against the plain
driver doing the least the same work needs, in one run.

Builds the sample `media_tool` (12 tables, 100k daily metrics) in a private PostgreSQL
cluster, transforms it with the tracked rules, then on the managed MongoDB server (SecantusDB,
started on a free port; MONGO_URI=mongodb://… measures your server instead):

* load_insert_ratio    `load` (staging collections with validators and indexes, the count
                       check, the swap) / raw `insert_many` of the same pre-encoded batches
                       followed by `create_index` of the same indexes: the same documents
                       and indexes written by the plainest driver code
* load_bare_insert_ratio  the same load / raw `insert_many` alone, no indexes (reference: on
                       the managed server an index costs about as much as the insert)
* validate_scan_ratio  `validate` (counts, content checksums, canonical JSON Schema on the
                       default sample, validator compliance, references) / a plain `find()`
                       scan of the same collections, decoding every document

Also recorded: the load's phases (insert, indexes, swap) and the server's validator queries
(`$nor` of each collection's validator) timed alone, which say how much of either ratio is
the server's own work.

Best of three of each, alternated. The figures are merged into bench/results.json.

    .venv/bin/python bench/bench_mongo.py [--metrics-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "scripts"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics-rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()

    import psycopg

    from etl.adapters.services import MongoServer, PgCluster, free_port

    scratch = Path(tempfile.mkdtemp(prefix="etl-bench-mongo-"))
    scratch.chmod(0o755)
    cluster = PgCluster(scratch / "pg", free_port())
    server = None
    results: dict = {}
    try:
        cluster.start()
        uri = os.environ.get("MONGO_URI")
        if not uri:
            server = MongoServer(scratch / "mongo", free_port(), REPO / ".venv-mongo" / "bin" / "secantusd-py")
            server.start()
            uri = server.uri
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE media_tool")
        root = scratch / "project"
        shutil.copytree(REPO / "schemas", root / "schemas", ignore=shutil.ignore_patterns("snapshots"))
        (root / "pipeline.env").write_text((REPO / "pipeline.env").read_text())
        os.environ.update(ETL_ROOT=str(root), LOCAL_PG_HOST="127.0.0.1", LOCAL_PG_PORT=str(cluster.port),
                          LOCAL_PG_USER="postgres", LOCAL_PG_PASSWORD="", LOCAL_PG_DB="media_tool",
                          LOCAL_PG_MANAGED="false", MONGO_URI=uri, MONGO_MANAGED="false",
                          MONGO_DB_NAME="bench-load")
        results = measure(cluster, args)
        results["server"] = server_description(uri)
    finally:
        if server is not None:
            server.destroy()
        cluster.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    merged = json.loads(args.out.read_text()) if args.out.is_file() else {}
    merged.update(results)
    args.out.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: results[k] for k in ("load_insert_ratio", "load_bare_insert_ratio", "validate_scan_ratio")},
                     indent=2))


def server_description(uri: str) -> str:
    from etl.adapters.mongodb import connect

    client = connect(uri)
    try:
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    name = f"SecantusDB {info['secantusVersion']}" if "secantusVersion" in info else "MongoDB"
    return f"{name} (reports MongoDB {info.get('version')})"


def measure(cluster, args) -> dict:
    import psycopg

    from etl.stages import sample
    from etl.formats.dumpdir import iter_batches
    from etl.model.bsoncodec import CODEC
    from etl.formats.canonical import write_canonical
    from etl.core.config import load_config
    from etl.formats.dumpdir import index_specs, read_metadata
    from etl.stages.load import load
    from etl.model.mapping import build_mapping
    from etl.adapters.mongodb import connect
    from etl.core.paths import paths
    from etl.formats.rules import load_rules
    from etl.stages.snapshot import take_snapshot
    from etl.stages.transform import transform
    from etl.stages.validate import validate

    cfg = load_config()
    log(f"building the sample ({args.metrics_rows} daily metrics)")
    with psycopg.connect(cfg.pg_conninfo, autocommit=True) as conn:
        sample.generate(conn, sample.SampleParams(metrics_rows=args.metrics_rows))
    snapshot = take_snapshot(cfg.pg_conninfo)
    write_canonical(build_mapping(snapshot, load_rules(paths.schemas / "rules.yaml")))
    (paths.schemas / "accepted.json").write_text(json.dumps(snapshot))
    transform(cfg, "bench-load", force=True)
    folder = paths.transformed / "bench-load"
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(manifest["collections"])
    batches = {n: list(iter_batches(folder / f"{n}.bson", cfg["ETL_BATCH_SIZE"])) for n in names}
    documents = sum(len(b) for bs in batches.values() for b in bs)
    log(f"{documents} documents in {len(names)} collections; timing, best of {args.rounds}")

    indexes = {n: index_specs(read_metadata(folder / f"{n}.metadata.json")) for n in names}
    raws, bares, loads, scans, validations, phases, nors = [], [], [], [], [], [], []
    client = connect(cfg["MONGO_URI"])
    try:
        for _ in range(args.rounds):
            client.drop_database("bench-raw")
            raw_db = client["bench-raw"]
            start = time.perf_counter()
            for n in names:
                for batch in batches[n]:
                    raw_db[n].insert_many(batch, ordered=True)
            bares.append(time.perf_counter() - start)
            for n in names:
                for spec in indexes[n]:
                    raw_db[n].create_index(spec["keys"], **{k: v for k, v in spec.items() if k != "keys"})
            raws.append(time.perf_counter() - start)

            t, result = timed(load, cfg, "bench-load", backup=False)
            assert sum(result.counts.values()) == documents
            loads.append(t)
            phases.append(result.phases)

            start = time.perf_counter()
            scanned = sum(1 for n in names for _ in client["bench-load"][n].with_options(codec_options=CODEC).find())
            scans.append(time.perf_counter() - start)
            assert scanned == documents

            from etl.stages.validate import check_validator

            nors.append(timed(lambda: [check_validator(client["bench-load"], n, None) for n in names])[0])

            t, report = timed(validate, cfg, "bench-load")
            assert report["ok"], report["failures"][:3]
            validations.append(t)
            log(f"raw insert {bares[-1]:.2f}s (+ indexes {raws[-1]:.2f}s), load {loads[-1]:.2f}s, scan {scans[-1]:.2f}s, "
                f"validate {validations[-1]:.2f}s")
        client.drop_database("bench-raw")
    finally:
        client.close()
    checked = sum(r["schema"].get("checked", 0) for r in report["collections"].values())
    return {
        "load_insert_ratio": round(min(loads) / min(raws), 3),
        "load_bare_insert_ratio": round(min(loads) / min(bares), 3),
        "validate_scan_ratio": round(min(validations) / min(scans), 3),
        "mongo_documents": documents,
        "mongo_timings": {"raw_insert_many_seconds": bares, "raw_insert_many_and_indexes_seconds": raws,
                          "load_seconds": loads, "find_scan_seconds": scans,
                          "validate_seconds": validations, "schema_checked_documents": checked,
                          "load_phases_of_the_best": phases[loads.index(min(loads))],
                          "validator_queries_alone_seconds": nors,
                          "validate_sample": cfg["ETL_VALIDATE_SAMPLE"]},
    }


if __name__ == "__main__":
    main()
