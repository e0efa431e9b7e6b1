"""`etl plan` (= `make plan`): what `make all` would do now, without doing it.

Like `terraform plan` for the nightly run. The plan asks the source which dump the run would
take, reads it (the new dump goes into a scratch database `<LOCAL_PG_DB>__plan_<pid>`, dropped
at the end; an unchanged one is read where it is), and then walks the same stage graph as the
Makefile, with the files' real modification times and, for each stage that would run, what it
would write: each stage's own code computes its output into memory or a temporary folder,
and it counts as changed only when it differs from the file on disk, exactly as the stages'
write-if-changed outputs make later stages stale or not. So it says:

* which stages run, in make's order, and why (the target is missing, or which input changes
  or is newer), and where the run would stop;
* the schema changes (detected as `etl detect` would), their classification, and which
  decisions are missing;
* per collection, the documents in MongoDB now and in the new dump, with the difference, and
  what the anomaly guard would say;
* what the load would back up, load, drop and migrate;
* the exit code the run would end with (assuming validation and the contract tests pass).

It writes nothing to MongoDB, S3, the tracked files or the pipeline's own files (data/,
.make/, logs/): MongoDB and S3 are only read. `--json` prints the plan as one JSON document.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from etl.cli import config_options
from etl.config import Config, pg_conninfo
from etl.errors import EXIT_GUARD, EXIT_OK, EXIT_PENDING, DatabaseError, EtlError, RestoreError, SourceError
from etl.fsutil import read_json, sha256_file
from etl.paths import paths

log = logging.getLogger("etl.plan_run")

FORMAT_VERSION = 1
FORCE = "FORCE"
PHONY = "phony"
EMPTY = "empty"  # a target made by another stage's recipe (`target: stamp ;`)
# The Makefile's recipes in the order a full run meets them (for stages the plan never reaches).
STAGE_ORDER = ("acquire", "restore", "snapshot", "detect", "decide", "canonical", "transform", "guard",
               "mongo-schema", "load", "validate", "push", "generate", "test-data")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(paths.root))
    except ValueError:
        return str(path)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _same_file(candidate: Path, path: Path) -> bool:
    return path.is_file() and candidate.read_bytes() == path.read_bytes()


@dataclass
class Options:
    key: str | None = None
    decisions: Path | None = None
    accept: tuple[str, ...] = ()
    mode: str = "full"
    full_refresh: bool = False
    decided_by: str | None = None


@dataclass
class Stop:
    stage: str
    code: int
    message: str


class _Stopped(Exception):
    def __init__(self, stop: Stop):
        super().__init__(stop.message)
        self.stop = stop


@dataclass
class Node:
    target: Path | str
    prereqs: list[Path | str]
    recipe: str  # a stage name, PHONY or EMPTY
    label: str = ""


@dataclass
class StageLine:
    stage: str
    runs: bool
    why: list[str] = field(default_factory=list)
    does: str = ""
    outcome: str = "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "runs": self.runs, "why": self.why, "does": self.does, "outcome": self.outcome}


class Planner:
    """One simulation of `make pipeline`. Every stage's effect is computed, never applied."""

    def __init__(self, cfg: Config, opts: Options, work: Path):
        self.cfg = cfg
        self.opts = opts
        self.work = work  # a temporary folder, removed by the caller
        self.db = cfg["MONGO_DB_NAME"]
        self.source = cfg["ETL_SOURCE"]
        self.notes: list[str] = []
        self.changed: dict[str, bool] = {}
        self.done: dict[str, bool] = {}
        self.lines: list[StageLine] = []
        self.stop: Stop | None = None
        self.scratch: str | None = None
        # What the files would hold when each stage reads them.
        self.pointer: dict[str, Any] | None = None
        self.dump: Path | None = None
        self.data_conninfo = cfg.pg_conninfo
        self.data_where = f"{cfg['LOCAL_PG_DB']} as it is"
        self.restored_changes = False
        self.snapshot: dict[str, Any] | None = _read(paths.snapshots / "current.json")
        self.changes_doc: dict[str, Any] | None = _read(paths.changes / "latest.json")
        self.accepted: dict[str, Any] | None = _read(paths.schemas / "accepted.json")
        self.decide: dict[str, Any] = {"ran": False}
        self.decisions_after: dict[str, Any] = {}
        self.data_snapshot: dict[str, Any] | None = None
        self.schema_collections: list[str] = []  # created by mongo-schema in this run
        self.mapping: dict[str, Any] | None = _read(paths.schemas / "mapping.json")
        self.after_counts: dict[str, int] | None = None
        self.guard: dict[str, Any] | None = None
        self.load: dict[str, Any] | None = None
        self._mongo = None
        self._mongo_error: str | None = None
        self._graph = self._build_graph()

    # --- the graph, as the Makefile has it ------------------------------------------------------

    def _build_graph(self) -> dict[str, Node]:
        root, stamps = paths.root, paths.make_stamps / self.db
        t = {
            "dump": paths.current_dump, "restored": paths.restored, "snapshot": paths.snapshots / "current.json",
            "changes": paths.changes / "latest.json", "decided": paths.changes / "decided.json",
            "canon_stamp": paths.make_stamps / "canonical.stamp",
            "canonical": paths.schemas / "collections" / "index.json", "mapping": paths.schemas / "mapping.json",
            "generated": paths.generated / ".canonical-hash", "mongo_schema": stamps / "mongo-schema.stamp",
            "transform_stamp": stamps / "transform.stamp",
            "transformed": paths.transformed / self.db / "manifest.json", "guarded": stamps / "guard.stamp",
            "loaded": stamps / "load.stamp", "validated": stamps / "validate.stamp",
            "contract": stamps / "contract.stamp", "pushed": stamps / "push.stamp",
        }
        self.t = t
        accepted, decisions, rules = (paths.schemas / n for n in ("accepted.json", "decisions.yaml", "rules.yaml"))
        wild = lambda p: [p] if p.exists() else []  # noqa: E731 - $(wildcard …), read when make starts
        nodes = [
            Node("pipeline", [t["pushed"], t["contract"], t["generated"]], PHONY),
            Node(t["dump"], [FORCE], "acquire"),
            Node(t["restored"], [t["dump"]], "restore"),
            Node(t["snapshot"], [t["restored"]] + ([FORCE] if self.source == "local" else []), "snapshot"),
            Node(t["changes"], [t["snapshot"]] + wild(accepted), "detect"),
            Node(t["decided"], [t["changes"]] + wild(decisions), "decide"),
            Node(t["canon_stamp"], [t["decided"]] + wild(rules), "canonical"),
            Node(t["canonical"], [t["canon_stamp"]], EMPTY),
            Node(t["mapping"], [t["canon_stamp"]], EMPTY),
            Node(t["generated"], [t["canonical"], root / "package-lock.json"], "generate"),
            Node(t["mongo_schema"], [t["canonical"]], "mongo-schema"),
            Node(t["transform_stamp"], [t["mapping"], t["restored"], t["decided"]], "transform"),
            Node(t["transformed"], [t["transform_stamp"]], EMPTY),
            Node(t["guarded"], [t["transformed"]], "guard"),
            Node(t["loaded"], [t["transformed"], t["guarded"], t["mongo_schema"]], "load"),
            Node(t["validated"], [t["loaded"]], "validate"),
            Node(t["contract"], [t["loaded"], t["generated"]], "test-data"),
            Node(t["pushed"], [t["validated"]], "push"),
        ]
        return {str(n.target): n for n in nodes}

    def simulate(self) -> None:
        try:
            self._make("pipeline")
        except _Stopped as exc:
            self.stop = exc.stop

    def _make(self, name: str) -> bool:
        """make's algorithm: prerequisites first, left to right; the recipe runs when the target
        is missing, or a prerequisite changed in this run or is newer. Returns "changed"."""
        if name == FORCE:
            return True
        if name in self.done:
            return self.done[name]
        node = self._graph.get(name)
        if node is None:  # a source file (rules.yaml, package-lock.json)
            self.done[name] = False
            return False
        changed_prereqs = {str(p): self._make(str(p)) for p in node.prereqs}
        if node.recipe == PHONY:
            self.done[name] = False
            return False
        target = Path(node.target)
        why = self._why(target, node.prereqs, changed_prereqs, node.recipe)
        if node.recipe == EMPTY:
            changed = bool(why) and (self.changed.get(name, False) or not target.exists())
            self.done[name] = changed
            return changed
        line = StageLine(node.recipe, bool(why), why)
        self.lines.append(line)
        if not why:
            line.outcome = "up to date"
            self.done[name] = False
            return False
        effect: Callable[[StageLine], bool] = getattr(self, "_" + node.recipe.replace("-", "_"))
        try:
            changed = effect(line)
        except _Stopped as exc:
            line.outcome = f"stops: exit {exc.stop.code}"
            line.does = line.does or exc.stop.message
            raise
        except EtlError as exc:
            line.outcome = f"stops: exit {exc.exit_code}"
            line.does = exc.line()
            raise _Stopped(Stop(node.recipe, exc.exit_code, exc.line())) from None
        self.done[name] = changed
        return changed

    def _why(self, target: Path, prereqs: list, changed: dict[str, bool], recipe: str) -> list[str]:
        why: list[str] = []
        if FORCE in prereqs:
            why.append("always asks the source" if recipe == "acquire" else "SOURCE=local: always read again")
        own = _mtime(target)
        if own is None:
            why.append(f"{_rel(target)} does not exist yet")
        for p in prereqs:
            if p == FORCE:
                continue
            path = Path(p)
            if changed.get(str(p)):
                why.append(f"{_rel(path)} changes in this run")
            elif own is not None and (m := _mtime(path)) is not None and m > own:
                why.append(f"{_rel(path)} is newer than {_rel(target)}")
        return why

    # --- MongoDB, read only -----------------------------------------------------------------------

    def mongo(self):
        if self._mongo is None and self._mongo_error is None:
            from etl.mongo import connect

            try:
                self._mongo = connect(self.cfg["MONGO_URI"], timeout_ms=3000)
            except DatabaseError as exc:
                self._mongo_error = exc.line()
                self.notes.append(f"MongoDB not read: {exc.line()}")
        return self._mongo

    def mongo_counts(self) -> dict[str, int] | None:
        from etl.guard import mongo_counts

        client = self.mongo()
        return None if client is None else mongo_counts(self.cfg, self.db, client)

    def runs_only_acquire(self) -> bool:
        return [line.stage for line in self.lines if line.runs] == ["acquire"]

    def close(self) -> None:
        if self._mongo is not None:
            self._mongo.close()
        if self.scratch:
            _drop_database(self.cfg, self.scratch)
            self.scratch = None

    # --- the stages' effects ----------------------------------------------------------------------

    def _acquire(self, line: StageLine) -> bool:
        from etl.acquire import current_pointer

        previous = current_pointer()
        probe = probe_source(self.cfg, self.opts.key, self.work, previous)
        self.pointer, self.dump = probe["pointer"], probe.get("dump")
        line.does = probe["describe"]
        self.changed[str(self.t["dump"])] = probe["changed"]
        return probe["changed"]

    def _restore(self, line: StageLine) -> bool:
        from etl.restore import admin_connect, database_exists

        pointer = self.pointer
        target = self.cfg["LOCAL_PG_DB"]
        if pointer is None:
            raise SourceError("no dump acquired yet", hint="run `etl acquire` (or `make acquire`) first")
        done = _read(paths.restored)
        if pointer["source"] == "local":
            record = {"source": "local", "database": target}
            line.does = f"source local: {target} is used as it is"
            return record != done
        record = {"source": pointer["source"], "database": target, "dump": pointer.get("file"),
                  "sha256": pointer.get("sha256")}
        with admin_connect(self.cfg) as conn:
            exists = database_exists(conn, target)
        if done == record and exists and pointer["source"] != "direct":
            line.does = f"{target} already holds {pointer.get('file')}; nothing to do"
            return False
        self.restored_changes = True
        if pointer["source"] == "direct":
            # The run's pg_dump reads production; the plan reads the same database, read only.
            self.data_conninfo = self.cfg["PROD_PG_DSN"]
            self.data_where = "production (PROD_PG_DSN), read by the plan directly"
            line.does = f"restores a fresh pg_dump of production into {target}"
        else:
            self.scratch = restore_scratch(self.cfg, self.dump)
            self.data_conninfo = pg_conninfo(self.cfg, self.scratch)
            self.data_where = f"the new dump, restored for this plan into the scratch database {self.scratch}"
            line.does = f"restores {pointer.get('file')} into {target} (replacing it)"
        return record != done

    def _snapshot(self, line: StageLine) -> bool:
        from etl.snapshot import take_snapshot

        snap = take_snapshot(self.data_conninfo, load_views=self.cfg["ETL_LOAD_VIEWS"])
        snap["database"] = self.cfg["LOCAL_PG_DB"]  # what the restored database is called
        old = _read(paths.snapshots / "current.json")
        changed = not old or old.get("hash") != snap["hash"]
        if changed:
            self.snapshot = snap
            line.does = (f"schema {str((old or {}).get('hash') or 'none')[:12]} → {snap['hash'][:12]} "
                         f"({len(snap['tables'])} tables)")
        else:
            line.does = f"schema {snap['hash'][:12]} unchanged ({len(snap['tables'])} tables)"
        self.data_snapshot = snap
        return changed

    def _detect(self, line: StageLine) -> bool:
        from etl.detect import add_rename_evidence, build_report, write_outputs
        from etl.snapshot import load_snapshot

        accepted_file = paths.schemas / "accepted.json"
        accepted = load_snapshot(accepted_file) if accepted_file.exists() else None
        current = self.snapshot
        if current is None:
            from etl.errors import SnapshotError

            raise SnapshotError("there is no schema snapshot to compare", hint="run `etl snapshot` first")
        report = build_report(current, accepted, strict=self.cfg["ETL_SCHEMA_STRICT_MODE"])
        if self.source != "direct":
            evidence_cfg = self.cfg.with_overrides(
                {"LOCAL_PG_DB": self.scratch} if self.scratch else {}, origin="plan")
            add_rename_evidence(report, current, evidence_cfg)
        written = write_outputs(report, directory=self.work / "changes")
        changed = not _same_file(written["latest"], paths.changes / "latest.json")
        self.changes_doc = report
        counts = report.get("counts") or {}
        line.does = ("initial schema: accepted as the baseline" if report.get("initial") else
                     f"{len(report['changes'])} changes ({counts.get('safe', 0)} safe, {counts.get('review', 0)} review)"
                     if report["changes"] else "no schema changes")
        return changed

    def _decide(self, line: StageLine) -> bool:
        result = simulate_decide(self.cfg, self.changes_doc, self.snapshot, self.accepted, self.opts)
        self.decide = {"ran": True, **result}
        if result["pending"]:
            raise _Stopped(Stop("decide", EXIT_PENDING,
                                f"{len(result['pending'])} schema changes wait for a decision; MongoDB was not touched"))
        self.accepted = result["accepted_after"]
        self.decisions_after = result["decisions_after"]
        n = len(result["answers"])
        line.does = (f"accepts schema {str(result['to_hash'])[:12]}: {n} changes "
                     f"({result['automatic']} applied automatically)" if n else "no changes to decide")
        if result.get("migration_steps"):
            line.does += f"; writes a migration script ({len(result['migration_steps'])} statements)"
        return result["record_changes"]

    def _canonical(self, line: StageLine) -> bool:
        from etl.canonical import load_decisions, write_canonical
        from etl.mapping import build_mapping
        from etl.rules import load_rules

        if self.accepted is None:
            from etl.errors import SnapshotError

            raise SnapshotError("no accepted schema", hint="run `etl decide` (make decide) first")
        decisions = ({"format_version": 1, "decisions": self.decisions_after} if self.decide.get("ran")
                     else load_decisions())
        mapping = build_mapping(self.accepted, load_rules(), decisions)
        out = self.work / "canonical"
        summary = write_canonical(mapping, out_dir=out / "collections", mapping_file=out / "mapping.json")
        index_changed = not _same_file(out / "collections" / "index.json", self.t["canonical"])
        mapping_changed = not _same_file(out / "mapping.json", self.t["mapping"])
        self.changed[str(self.t["canonical"])] = index_changed
        self.changed[str(self.t["mapping"])] = mapping_changed
        self.mapping = mapping
        self.canonical_index = read_json(out / "collections" / "index.json")
        line.does = (f"{summary['collections']} collection schemas; "
                     + ("canonical schemas change" if index_changed else "canonical schemas unchanged")
                     + ("; mapping changes" if mapping_changed else ""))
        return True

    def _generate(self, line: StageLine) -> bool:
        line.does = "regenerates generated/ if the canonical schemas changed (JSON Schema, OpenAPI, TypeScript, Zod, Pydantic)"
        return True

    def _mongo_schema(self, line: StageLine) -> bool:
        index = getattr(self, "canonical_index", None) or _read(self.t["canonical"]) or {}
        # It creates every collection of the canonical schemas that does not exist yet.
        self.schema_collections = sorted(index.get("collections") or {})
        line.does = f"applies validators and indexes to MongoDB ({len(self.schema_collections)} collections)"
        return True

    def _transform(self, line: StageLine) -> bool:
        mapping = self.mapping
        if mapping is None:
            from etl.errors import TransformError

            raise TransformError("schemas/mapping.json not found", hint="run `make canonical` first")
        manifest = _read(self.t["transformed"])
        changed, why = predict_manifest(self.cfg, self.db, mapping, manifest, self.restored_changes,
                                        (self.accepted or {}).get("hash"))
        self.changed[str(self.t["transformed"])] = changed
        if changed:
            self.after_counts = table_counts(self.data_conninfo, mapping)
        else:
            self.after_counts = {n: int(e["count"]) for n, e in ((manifest or {}).get("collections") or {}).items()}
        total = sum(self.after_counts.values())
        line.does = (f"writes {total:,} documents in {len(self.after_counts)} collections ({why})" if changed
                     else f"export unchanged ({why})")
        return True

    def _guard(self, line: StageLine) -> bool:
        from etl.guard import gather, parse_accept, report_lines

        client = self.mongo()
        if client is None:
            raise DatabaseError(f"MongoDB not reachable, the guard cannot compare: {self._mongo_error}")
        report = gather(self.cfg, self.db, self.after_counts or {}, self.mapping or {}, self.data_conninfo,
                        parse_accept(self.opts.accept), self.opts.decided_by, client)
        self.guard = report.as_dict()
        line.does = report_lines(report)[0].removeprefix("guard: ")
        if report.stopped:
            raise _Stopped(Stop("guard", EXIT_GUARD, report.stop_message()))
        return True

    def _load(self, line: StageLine) -> bool:
        names = sorted(self.after_counts or {})
        client = self.mongo()
        existing: list[str] = []
        if client is not None and self.db in client.list_database_names():
            existing = [n for n in client[self.db].list_collection_names() if not n.startswith("system.")]
        existing = sorted(set(existing) | set(self.schema_collections))
        doomed = sorted(n for n in existing if self.opts.full_refresh and n not in names)
        backup = []
        if self.cfg["MONGO_BACKUP_BEFORE_LOAD"]:
            backup = sorted((set(names) | set(doomed)) & {n for n in existing if "__staging_" not in n})
        migrations = []
        if self.opts.mode == "incremental" and client is not None:
            from etl.migrate import pending_scripts

            migrations = [p.name for p in pending_scripts(client[self.db])]
        self.load = {"mode": self.opts.mode, "collections": {n: (self.after_counts or {})[n] for n in names},
                     "documents": sum((self.after_counts or {}).values()), "backup": backup, "dropped": doomed,
                     "migrations_applied": migrations}
        line.does = (f"backs up {len(backup)} collections, then loads {self.load['documents']:,} documents into "
                     f"{len(names)} collections ({self.opts.mode})" if backup else
                     f"loads {self.load['documents']:,} documents into {len(names)} collections ({self.opts.mode}); "
                     "nothing to back up yet")
        return True

    def _validate(self, line: StageLine) -> bool:
        line.does = "checks counts, checksums, schemas and references (the plan assumes it passes)"
        return True

    def _test_data(self, line: StageLine) -> bool:
        line.does = "runs the generated contract tests against the database (assumed to pass)"
        return True

    def _push(self, line: StageLine) -> bool:
        line.does = f"uploads the export to s3://{self.cfg['S3_BUCKET']}/{self.cfg['S3_PREFIX']}{self.db}/"
        return True


# --- the source ---------------------------------------------------------------------------------


def probe_source(cfg: Config, key: str | None, work: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """What `etl acquire` would do: {changed (current.json rewritten), pointer, dump, describe}.
    A dump it would download is downloaded into `work` (never into data/dumps)."""
    from etl.acquire import latest_s3_key, verify_dump

    source = cfg["ETL_SOURCE"]
    if source == "local":
        pointer = {"source": "local", "database": cfg["LOCAL_PG_DB"]}
        return {"changed": pointer != previous, "pointer": pointer, "dump": None,
                "describe": f"source local: {cfg['LOCAL_PG_DB']} is used as it is"}
    if source == "direct":
        if not cfg["PROD_PG_DSN"]:
            raise SourceError("--source direct needs PROD_PG_DSN", hint="set it in pipeline.local.env")
        return {"changed": True, "pointer": {"source": "direct", "file": None, "sha256": None}, "dump": None,
                "describe": "pg_dump -Fc of production (PROD_PG_DSN): every dump is a new file"}
    if source == "file":
        target = Path(cfg["ETL_DUMP_FILE"]) if cfg["ETL_DUMP_FILE"] else None
        if target is None:
            raise SourceError("--source file needs a dump path", hint="make plan SOURCE=file DUMP=path")
        target = target.expanduser().resolve()
        if not target.is_file():
            raise SourceError(f"dump file {target} does not exist")
        verify_dump(target)
        sha = sha256_file(target)
        name = target.name if target.name.endswith(".dump") else target.name + ".dump"
        same = bool(previous and previous.get("sha256") == sha)
        pointer = previous if same else {"source": "file", "original": str(target), "file": f"data/dumps/{name}",
                                         "sha256": sha, "size": target.stat().st_size}
        return {"changed": not same, "pointer": pointer, "dump": target,
                "describe": f"{target}: {'the dump in use' if same else 'a new dump'} (sha256 {sha[:12]})"}
    from etl import s3 as s3mod

    client = s3mod.client(cfg)
    bucket, prefix = cfg["S3_BUCKET"], cfg["S3_PREFIX"]
    if key is None:
        obj = latest_s3_key(client, bucket, prefix)
        key, size, etag = obj["Key"], obj["Size"], obj.get("ETag", "")
    else:
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise SourceError(f"cannot read s3://{bucket}/{key}: {s3mod.describe_error(exc)}") from None
        size, etag = head["ContentLength"], head.get("ETag", "")
    where = f"s3://{bucket}/{key}"
    if (previous and previous.get("source") == "s3" and previous.get("s3_key") == key
            and previous.get("etag") == etag and (paths.root / previous["file"]).is_file()):
        return {"changed": False, "pointer": previous, "dump": paths.root / previous["file"],
                "describe": f"{where} is the dump in use; nothing to download"}
    name = Path(key).name if Path(key).name.endswith(".dump") else Path(key).name + ".dump"
    local = work / name
    try:
        client.download_file(bucket, key, str(local))
    except Exception as exc:
        raise SourceError(f"download of {where} failed: {s3mod.describe_error(exc)}") from None
    verify_dump(local, name)
    sha = sha256_file(local)
    if previous and previous.get("sha256") == sha:
        return {"changed": False, "pointer": previous, "dump": local,
                "describe": f"{where}: downloads it, the same content as the dump in use (sha256 {sha[:12]})"}
    pointer = {"source": "s3", "bucket": bucket, "s3_key": key, "etag": etag, "file": f"data/dumps/{name}",
               "sha256": sha, "size": size}
    return {"changed": True, "pointer": pointer, "dump": local,
            "describe": f"{where}: a new dump ({size:,} bytes, sha256 {sha[:12]})"}


def restore_scratch(cfg: Config, dump: Path | None) -> str:
    """Restore `dump` into a scratch database of the plan's own; returns its name."""
    from psycopg import sql

    from etl.restore import admin_connect
    from etl.services import pg_tool

    if dump is None or not dump.is_file():
        raise SourceError("the dump the run would restore is missing", hint="run `etl acquire` again")
    name = f"{cfg['LOCAL_PG_DB'][:40]}__plan_{os.getpid()}"
    with admin_connect(cfg) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    env = dict(os.environ)
    if cfg["LOCAL_PG_PASSWORD"]:
        env["PGPASSWORD"] = cfg["LOCAL_PG_PASSWORD"]
    proc = subprocess.run([pg_tool("pg_restore"), "-j", "2", "--no-owner", "--no-privileges", "--exit-on-error",
                           "-h", cfg["LOCAL_PG_HOST"], "-p", str(cfg["LOCAL_PG_PORT"]), "-U", cfg["LOCAL_PG_USER"],
                           "-d", name, str(dump)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        _drop_database(cfg, name)
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RestoreError(f"pg_restore of {dump.name} failed: {reason}")
    return name


def _drop_database(cfg: Config, name: str) -> None:
    from psycopg import sql

    from etl.restore import admin_connect

    try:
        with admin_connect(cfg) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except Exception as exc:  # noqa: BLE001 - a leftover scratch database is named, not fatal
        log.warning("could not drop the plan's scratch database %s: %s", name, exc)


def table_counts(conninfo: str, mapping: dict[str, Any]) -> dict[str, int]:
    """Rows per mapped collection's table: the documents the transform would write."""
    import psycopg
    from psycopg import sql

    out: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, spec in sorted((mapping.get("collections") or {}).items()):
            schema, _, rel = spec["table"].partition(".")
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, rel))
            out[name] = conn.execute(query).fetchone()[0]
    return out


def snapshot_counts(conninfo: str, snapshot: dict[str, Any]) -> dict[str, int]:
    """Rows of every table of `snapshot`, by the collection name it would load as."""
    from etl.mapping import collection_name

    tables = {collection_name(t): {"table": t} for t, body in (snapshot.get("tables") or {}).items()
              if body.get("kind") in ("table", "partitioned")}
    return table_counts(conninfo, {"collections": tables})


def predict_manifest(cfg: Config, db: str, mapping: dict[str, Any], manifest: dict[str, Any] | None,
                     restored: bool, accepted_hash: str | None) -> tuple[bool, str]:
    """Would the transform rewrite data/transformed/<db>/manifest.json? The same fingerprints
    the transform computes, against the database it would read."""
    from etl import transform as tr
    from etl.mapping import mapping_hash
    from etl.provenance import source_dump

    if manifest is None:
        return True, "no export yet"
    if restored:
        return True, "a new restore"
    specs = mapping["collections"]
    old = manifest.get("collections") or {}
    if set(old) != set(specs):
        return True, "the collections change"
    if manifest.get("mapping_hash") != mapping_hash(mapping):
        return True, "the mapping changes"
    if manifest.get("schema_hash") != accepted_hash:
        return True, "the accepted schema changes"
    for name, spec in specs.items():
        tr._EMBED_TABLES[spec["table"]] = [specs[e["collection"]]["table"] for e in spec.get("embed") or []
                                           if e["collection"] in specs]
    stats = tr.table_stats(cfg.pg_conninfo, [s["table"] for s in specs.values()]
                           + [t for s in specs.values() for t in tr._EMBED_TABLES.get(s["table"], [])])
    source = source_dump()
    folder = paths.transformed / db
    stale = [n for n, spec in specs.items()
             if not tr._current(folder, old.get(n), tr.fingerprint(n, spec, stats, source))]
    if stale:
        return True, f"tables changed: {', '.join(sorted(stale))}"
    return False, "no table or mapping changed"


# --- decide, as the unattended run does it -------------------------------------------------------


def simulate_decide(cfg: Config, changes_doc: dict[str, Any] | None, current: dict[str, Any] | None,
                    accepted: dict[str, Any] | None, opts: Options) -> dict[str, Any]:
    """`etl decide --yes-safe [--decisions FILE]` computed, not written: the pending changes, or
    what accepting would record (decided.json, the migration script's statements)."""
    from etl import decide as dcd
    from etl import decisions as dec
    from etl.errors import DecisionError

    if changes_doc is None or current is None:
        raise DecisionError("detected changes or the current snapshot are missing", hint="run `etl detect` first")
    if changes_doc.get("to_hash") != current.get("hash"):
        raise DecisionError("data/changes/latest.json was detected for another snapshot", hint="run `etl detect`")
    if accepted is not None and changes_doc.get("from_hash") not in (None, accepted.get("hash")) \
            and changes_doc.get("to_hash") != accepted.get("hash"):
        raise DecisionError("data/changes/latest.json compares against another accepted schema", hint="run `etl detect`")
    changes = changes_doc.get("changes") or []
    recorded = dec.load_decisions()
    dec.check_against_changes(recorded, changes)
    inputs = dcd.Inputs(changes_doc, current, b"", accepted, recorded)
    dcd._check_defaults(inputs, dict(recorded.entries), recorded.where)
    entries = dict(recorded.entries)
    if opts.decisions is not None:
        new = dec.load_answers(opts.decisions, changes, opts.decided_by or _login())
        dcd._check_defaults(inputs, new, lambda cid: opts.decisions.name)
        entries.update(new)
    pending = [c for c in changes if c.get("classification") == "review" and c["id"] not in entries]
    result: dict[str, Any] = {"from_hash": changes_doc.get("from_hash"), "to_hash": changes_doc.get("to_hash"),
                              "pending": [dcd.pending_item(c) for c in pending], "answers": {},
                              "automatic": 0, "record_changes": False, "migration_steps": [],
                              "accepted_after": accepted, "decisions_after": entries}
    if pending:
        return result
    answers: dict[str, dict[str, Any]] = {}
    decided = []
    for change in changes:
        entry = entries.get(change["id"])
        if entry is None:
            answer, by = dec.recommended(change) or {}, "auto"
        else:
            answer, by = dec.answer_of(entry), entry.get("decided_by", "?")
        answers[change["id"]] = answer
        decided.append({"id": change["id"], "kind": change["kind"], "table": change["table"],
                        "column": change.get("column"), "classification": change.get("classification"),
                        "summary": change.get("summary"), "answer": answer, "decided_by": by})
    to_hash = str(changes_doc.get("to_hash"))
    record = {"format_version": 1, "from_hash": changes_doc.get("from_hash"), "to_hash": to_hash,
              "changes": decided}
    previous = _read(paths.changes / "decided.json")
    new_acceptance = previous != json.loads(json.dumps(record, default=str))
    steps = []
    if decided and new_acceptance:
        from etl.plan import build_plan
        from etl.rules import load_rules

        _, steps = build_plan(changes_doc, answers, accepted, current, rules=load_rules(),
                              decisions_doc={"decisions": entries})
    applied = to_hash[:12]
    after = {cid: {**e, "applied_in": e.get("applied_in") or applied} if cid in answers else e
             for cid, e in entries.items()}
    result.update(answers=answers, automatic=sum(1 for d in decided if d["decided_by"] == "auto"),
                  record_changes=new_acceptance, decided=decided,
                  migration_steps=[{"op": s.op, "collection": s.collection, "what": s.comment} for s in steps],
                  accepted_after=current, decisions_after=after)
    return result


def _login() -> str:
    from etl.guard import login_name

    return login_name()


# --- the plan -----------------------------------------------------------------------------------


def build_run_plan(cfg: Config, opts: Options | None = None) -> dict[str, Any]:
    """The plan as JSON-able data (see the module's docstring)."""
    return plan_and_inputs(cfg, opts)[0]


def plan_and_inputs(cfg: Config, opts: Options | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plan, and what its decide would read: {changes_doc, snapshot, accepted} (the detected
    changes as this run would see them, the snapshot they lead to, the accepted one)."""
    from etl import lock

    opts = opts or Options()
    work = Path(tempfile.mkdtemp(prefix="etl-plan-"))
    planner = Planner(cfg, opts, work)
    try:
        holder = lock.read_holder(paths.run / "etl.lock")
        if holder and isinstance(holder.get("pid"), int) and lock.pid_alive(holder["pid"]):
            planner.notes.append(f"a run is in progress ({lock.describe_holder(holder)}); "
                                 "this plan describes the state before it ends")
        accepted_before = planner.accepted
        planner.simulate()
        inputs = {"changes_doc": planner.changes_doc, "snapshot": planner.snapshot, "accepted": accepted_before}
        return _assemble(planner), inputs
    finally:
        planner.close()
        shutil.rmtree(work, ignore_errors=True)


def _schema_section(planner: Planner) -> dict[str, Any] | None:
    from etl import decisions as dec

    doc = planner.changes_doc
    if not planner.decide.get("ran") or doc is None:
        return None
    pending = {p["id"] for p in planner.decide.get("pending") or []}
    try:
        recorded = dec.load_decisions().entries
    except EtlError:
        recorded = {}
    items = []
    for c in doc.get("changes") or []:
        entry = recorded.get(c["id"])
        if c["id"] in pending:
            status, answer = "missing", None
        elif entry is not None:
            status, answer = "decided", dec.answer_of(entry) | {"decided_by": entry.get("decided_by")}
        elif planner.decide.get("answers", {}).get(c["id"]) is not None and c.get("classification") == "review":
            status, answer = "decided", planner.decide["answers"][c["id"]]
        else:
            status, answer = "automatic", dec.recommended(c)
        items.append({"id": c["id"], "kind": c["kind"], "table": c.get("table"), "column": c.get("column"),
                      "summary": c.get("summary"), "classification": c.get("classification"),
                      "reason": c.get("reason"), "impact": c.get("impact"), "decision": status, "answer": answer})
    return {"from_hash": doc.get("from_hash"), "to_hash": doc.get("to_hash"), "initial": doc.get("initial"),
            "changes": items, "counts": doc.get("counts"),
            "missing_decisions": [i for i in items if i["decision"] == "missing"],
            "pending": planner.decide.get("pending") or [],
            "migration": planner.decide.get("migration_steps") or []}


def _collections_section(planner: Planner) -> dict[str, Any]:
    before = None
    try:
        before = planner.mongo_counts()
    except Exception as exc:  # noqa: BLE001 - a count that cannot be read is a note
        planner.notes.append(f"MongoDB counts not read: {type(exc).__name__}")
    dump: dict[str, int] | None = None
    if planner.after_counts is not None:
        dump = dict(planner.after_counts)
    else:
        snap = planner.data_snapshot or planner.snapshot
        if snap is not None:
            try:
                dump = snapshot_counts(planner.data_conninfo, snap)
            except Exception as exc:  # noqa: BLE001
                planner.notes.append(f"rows of the new dump not counted: {type(exc).__name__}")
    loads = set((planner.load or {}).get("collections") or {})
    out: dict[str, Any] = {}
    for name in sorted(set(before or {}) | set(dump or {})):
        now = None if before is None else before.get(name)
        new = None if dump is None else dump.get(name)
        out[name] = {"mongodb": now, "dump": new,
                     "difference": None if new is None else new - (now or 0),
                     "loaded": name in loads}
    return out


def _assemble(planner: Planner) -> dict[str, Any]:
    reached = {line.stage for line in planner.lines}
    stages = [line.as_dict() for line in planner.lines]
    stopped_at = planner.stop.stage if planner.stop else None
    for name in STAGE_ORDER:
        if name not in reached:
            stages.append({"stage": name, "runs": False,
                           "why": [f"not reached: the run stops at {stopped_at}"] if stopped_at else ["up to date"],
                           "does": "", "outcome": "not reached" if stopped_at else "up to date"})
    code = planner.stop.code if planner.stop else EXIT_OK
    collections = _collections_section(planner)
    schema = _schema_section(planner)
    dropped = list((planner.load or {}).get("dropped") or [])
    migration = (schema or {}).get("migration") or []
    dropped += [s["collection"] for s in migration if s["op"] == "drop"]
    plan = {
        "format_version": FORMAT_VERSION,
        "planned_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": planner.db,
        "source": planner.source,
        "read_from": planner.data_where,
        "stages": stages,
        "runs": [s["stage"] for s in stages if s["runs"]],
        "stops_at": stopped_at,
        "schema": schema,
        "collections": collections,
        "guard": planner.guard,
        "mongodb": {
            "backup": (planner.load or {}).get("backup") or [],
            "load": (planner.load or {}).get("collections") or {},
            "mode": planner.opts.mode,
            "dropped": dropped,
            "migration_script": migration,
            "migrations_applied": (planner.load or {}).get("migrations_applied") or [],
        },
        "exit_code": code,
        "exit_reason": planner.stop.message if planner.stop else
        ("nothing to do: no stage is stale" if planner.runs_only_acquire() else
         "success, if validation and the contract tests pass"),
        "notes": planner.notes,
    }
    return plan


# --- text ---------------------------------------------------------------------------------------


def _n(value: Any) -> str:
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def render_text(plan: dict[str, Any]) -> list[str]:
    code = plan["exit_code"]
    lines = [f"Plan for {plan['database']} (source {plan['source']}): the run would exit {code} — {plan['exit_reason']}",
             f"  data read from: {plan['read_from']}", "", "Stages, in the order make runs them:"]
    width = max(len(s["stage"]) for s in plan["stages"])
    for s in plan["stages"]:
        state = ("STOPS" if s["outcome"].startswith("stops") else "runs") if s["runs"] else (
            "—" if s["outcome"] == "not reached" else "skip")
        detail = s["does"] if s["runs"] else "; ".join(s["why"])
        why = f"  (because {'; '.join(s['why'])})" if s["runs"] and s["why"] else ""
        lines.append(f"  {s['stage']:<{width}}  {state:<5}  {detail}{why}")
    schema = plan["schema"]
    if schema:
        lines.append("")
        if schema.get("initial"):
            lines.append(f"Schema {str(schema['to_hash'])[:12]}: the initial schema (accepted as the baseline)")
        elif not schema["changes"]:
            lines.append(f"Schema {str(schema['to_hash'])[:12]}: no changes to decide")
        else:
            counts = schema.get("counts") or {}
            lines.append(f"Schema {str(schema['from_hash'])[:12]} → {str(schema['to_hash'])[:12]}: "
                         f"{len(schema['changes'])} changes ({counts.get('safe', 0)} safe, {counts.get('review', 0)} review)")
            for c in schema["changes"]:
                answer = json.dumps(c["answer"], default=str) if c["answer"] else ""
                state = {"missing": "MISSING DECISION", "decided": f"decided {answer}",
                         "automatic": f"applies automatically {answer}"}[c["decision"]]
                lines.append(f"  {c['classification']:<6}  {c['summary']}  — {state}  [{c['id']}]")
            missing = schema["missing_decisions"]
            if missing:
                lines.append(f"  {len(missing)} decisions missing: answer with `etl decide --interactive`, "
                             "in schemas/decisions.yaml, or `etl decide --decisions FILE`")
    lines += ["", "Collections        (documents)"]
    rows = [("collection", "MongoDB now", "new dump", "difference")]
    for name, c in plan["collections"].items():
        diff = c["difference"]
        rows.append((name, _n(c["mongodb"]), _n(c["dump"]), "—" if diff is None else f"{diff:+,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        lines.append("  " + "  ".join(r[j].ljust(widths[j]) if j == 0 else r[j].rjust(widths[j]) for j in range(4)))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    m = plan["mongodb"]
    lines.append("")
    if not m["load"]:
        lines.append("MongoDB: nothing is backed up, loaded, dropped or migrated"
                     + (f" (the run stops at {plan['stops_at']})." if plan["stops_at"] else "."))
    else:
        lines.append("MongoDB:")
        lines.append(f"  back up: {', '.join(m['backup']) if m['backup'] else 'nothing (no collection exists yet)'}")
        lines.append(f"  load ({m['mode']}): {sum(m['load'].values()):,} documents into {len(m['load'])} collections")
        lines.append(f"  drop: {', '.join(m['dropped']) or 'nothing'}")
    if m["migration_script"]:
        applied = "applied by this incremental load" if m["mode"] == "incremental" and m["load"] else (
            "not applied by a full load: the documents are rewritten from PostgreSQL (`make migrate` applies it)")
        lines.append(f"  migrate: a new data/migrations script, {len(m['migration_script'])} statements ({applied}):")
        lines += [f"    {s['op']} {s['collection']}: {s['what']}" for s in m["migration_script"]]
    if m["migrations_applied"]:
        lines.append(f"  migrations applied before the upserts: {', '.join(m['migrations_applied'])}")
    guard = plan["guard"]
    if guard:
        problems = {n: c for n, c in guard["collections"].items() if c["problems"]}
        lines.append(f"Anomaly guard (largest drop allowed {guard['limit']}): "
                     + ("ok" if not problems else f"{len(guard['stopped'])} stop, {len(guard['accepted'])} accepted"))
        for name, c in problems.items():
            lines.append(f"  {name}: {'; '.join(c['problems'])} [{c['status']}]")
    for note in plan["notes"]:
        lines.append(f"note: {note}")
    lines.append(f"Exit code: {code}")
    return lines


@click.command("plan")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON for scripts.")
@click.option("--db", help="Target database (default MONGO_DB_NAME).")
@click.option("--source", type=click.Choice(("s3", "direct", "file", "local")), help="Where the dump comes from (ETL_SOURCE).")
@click.option("--key", help="S3: the object the run would take instead of the newest.")
@click.option("--decisions", "decisions_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A decisions file the run would apply (DECISIONS_FILE).")
@click.option("--accept-shrink", "accept", multiple=True, metavar="COLLECTION[,…]",
              help="Collections the anomaly guard would let through (ACCEPT_SHRINK).")
@click.option("--mode", type=click.Choice(("full", "incremental")), default="full", show_default=True,
              help="The load mode the run would use (LOAD_MODE).")
@click.option("--full-refresh", is_flag=True, help="The run drops the collections the load does not bring (FULL_REFRESH=yes).")
@config_options
def plan_cmd(cfg: Config, as_json: bool, db: str | None, source: str | None, key: str | None,
             decisions_file: Path | None, accept: tuple[str, ...], mode: str, full_refresh: bool):
    """Show what `make all` would do now, without doing it; exits 0 (1 if the plan cannot be made).

    Stale stages and why, the schema changes and missing decisions, per collection the
    documents in MongoDB now and in the new dump, what would be backed up, loaded, dropped
    and migrated, and the exit code the run would end with. Writes nothing: MongoDB and S3
    are only read, a new dump is read in a scratch database that is dropped afterwards.

    Example: make plan   (or: etl plan --json | jq .exit_code)
    """
    cfg = cfg.with_overrides({"MONGO_DB_NAME": db, "ETL_SOURCE": source})
    opts = Options(key=key, decisions=decisions_file.resolve() if decisions_file else None,
                   accept=tuple(accept), mode=mode, full_refresh=full_refresh)
    plan = build_run_plan(cfg, opts)
    if as_json:
        click.echo(json.dumps(plan, indent=2, default=str))
    else:
        for line in render_text(plan):
            click.echo(line)

