"""Stage 2: restore the acquired dump into LOCAL_PG_DB.

The dump is restored into a scratch database first (parallel `pg_restore -j`); only when that
succeeds is LOCAL_PG_DB dropped and the scratch database renamed into its place. A failed
restore leaves the previous database as it was. data/restored.json records which dump the
database holds, so an unchanged dump is not restored twice.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from etl.adapters.services import pg_tool
from etl.core.config import Config, pg_conninfo
from etl.core.errors import DatabaseError, RestoreError, SourceError
from etl.core.fsutil import read_json, write_json_if_changed
from etl.core.paths import paths
from etl.core.progress import say
from etl.formats.dumps import current_pointer

log = logging.getLogger("etl.restore")


def admin_connect(cfg: Config) -> psycopg.Connection:
    try:
        return psycopg.connect(pg_conninfo(cfg, "postgres"), autocommit=True)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            f"PostgreSQL at {cfg['LOCAL_PG_HOST']}:{cfg['LOCAL_PG_PORT']} is not reachable: {first}",
            hint="run `make services-up`, or check LOCAL_PG_* settings") from None


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_database(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def restore_into(cfg: Config, conn: psycopg.Connection, dump: Path, database: str, jobs: int, *,
                 label: str, hint: str | None = None) -> None:
    """Create `database` afresh and pg_restore `dump` into it; on failure it is dropped again
    and RestoreError names the dump (`label`) and pg_restore's last line."""
    drop_database(conn, database)
    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(database)))
    env = dict(os.environ)
    if cfg["LOCAL_PG_PASSWORD"]:
        env["PGPASSWORD"] = cfg["LOCAL_PG_PASSWORD"]
    proc = subprocess.run(
        [pg_tool("pg_restore"), "-j", str(jobs), "--no-owner", "--no-privileges", "--exit-on-error",
         "-h", cfg["LOCAL_PG_HOST"], "-p", str(cfg["LOCAL_PG_PORT"]), "-U", cfg["LOCAL_PG_USER"],
         "-d", database, str(dump)],
        capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        drop_database(conn, database)
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RestoreError(f"pg_restore of {label} failed: {reason}", hint=hint)


def restore(cfg: Config, jobs: int | None = None, force: bool = False) -> dict:
    pointer = current_pointer()
    if pointer is None:
        raise SourceError("no dump acquired yet", hint="run `etl acquire` (or `make acquire`) first")
    target = cfg["LOCAL_PG_DB"]
    if pointer["source"] == "local":
        record = {"source": "local", "database": target}
        write_json_if_changed(paths.restored, record)
        return record
    dump = paths.root / pointer["file"]
    if not dump.is_file():
        raise SourceError(f"the current dump {pointer['file']} is missing", hint="run `etl acquire` again")
    record = {"source": pointer["source"], "database": target, "dump": pointer["file"], "sha256": pointer["sha256"]}
    with admin_connect(cfg) as conn:
        try:
            done = read_json(paths.restored)
        except (FileNotFoundError, ValueError):
            done = None
        if not force and done == record and database_exists(conn, target):
            say(f"restore: {target} already holds {pointer['file']}; nothing to do")
            return record
        scratch = f"{target}__restoring"
        jobs = jobs or max(2, os.cpu_count() or 2)
        started = time.monotonic()
        say(f"restore: pg_restore -j {jobs} {pointer['file']} into {target} …")
        restore_into(cfg, conn, dump, scratch, jobs, label=pointer["file"], hint=f"{target} was left as it was")
        # Swap: the only moment the target is absent is between these two statements.
        drop_database(conn, target)
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(scratch), sql.Identifier(target)))
        with psycopg.connect(pg_conninfo(cfg, target), autocommit=True) as db:
            db.execute("ANALYZE")  # fresh statistics: row estimates drive progress and fingerprints
    write_json_if_changed(paths.restored, record)
    log.info("restored %s into %s in %.1fs", pointer["file"], target, time.monotonic() - started)
    say(f"restore: {target} restored in {time.monotonic() - started:.1f}s")
    return record
