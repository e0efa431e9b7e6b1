"""`etl init` (`make init`): set the pipeline up for the database LOCAL_PG_* and the source point at.

The tracked state in this tree is the sample's: its accepted schema, its rules, its decisions,
its canonical schemas and the artifacts made from them. Pointed at another database, the first
run would report the sample's tables as dropped. `etl init` starts over instead: it removes the
accepted snapshot and everything derived from it (snapshots, canonical schemas, the mapping,
generated artifacts, the working files under data/ and Make's stamps) and writes empty rules
and an empty decisions file. The next `make all` then takes the database's schema as its
initial state, accepts it as the baseline and loads it.

Backups, logs, reports, the settings files and the local services' data stay; MongoDB is not
touched. It says what it will remove and asks; without a terminal it needs `--yes`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from etl.core import lock
from etl.core.config import Config, mask_uri
from etl.core.errors import EtlError
from etl.core.fsutil import write_atomic
from etl.core.paths import paths
from etl.formats.decisions import HEADER
from etl.formats.generated import MARKER, OWNED_DIRS

EMPTY_RULES = """\
# Business rules, applied on top of the default type mapping (docs/mapping-and-rules.md);
# checked against scripts/etl/formats/schemas/rules.schema.json by `etl canonical`. Written empty by
# `etl init`: every table maps by the default rules until rules are added here.
version: 1
"""

# Under data/, the sample's own build output is not state of the pipeline (`etl sample` reuses
# it); everything else there is.
_DATA_KEPT = ("sample",)


class InitRefused(EtlError):
    """`etl init` was not confirmed: nothing was changed."""


@dataclass
class InitPlan:
    """What `etl init` does in a project: paths removed, files written empty, what stays."""

    remove: list[Path] = field(default_factory=list)
    reset: dict[Path, str] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return bool(self.remove) or any(not p.is_file() or p.read_text(encoding="utf-8") != text
                                        for p, text in self.reset.items())


def empty_decisions() -> str:
    return HEADER + "format_version: 1\ndecisions: {}\n"


def plan_init() -> InitPlan:
    """The plan for the project at paths.root (nothing is touched)."""
    root, schemas = paths.root, paths.schemas
    candidates = [schemas / "accepted.json", paths.snapshots, schemas / "collections", schemas / "mapping.json"]
    candidates += [paths.generated / d for d in OWNED_DIRS]
    candidates += [paths.generated / "openapi.yaml", paths.generated / MARKER]
    if paths.data.is_dir():
        candidates += sorted(p for p in paths.data.iterdir() if p.name not in _DATA_KEPT)
    candidates.append(paths.make_stamps)
    plan = InitPlan(remove=[p for p in candidates if p.exists() or p.is_symlink()])
    plan.reset = {schemas / "rules.yaml": EMPTY_RULES, schemas / "decisions.yaml": empty_decisions()}
    plan.keep = [name for name in ("backups/", "logs/", "reports/", "pipeline.env", "pipeline.local.env")
                 if (root / name.rstrip("/")).exists()]
    return plan


def _count(path: Path) -> str:
    if path.is_dir() and not path.is_symlink():
        n = sum(1 for p in path.rglob("*") if p.is_file())
        return f"{n} file{'s' if n != 1 else ''}"
    if path.name == "accepted.json":
        try:
            snap = json.loads(path.read_text(encoding="utf-8"))
            return f"the accepted schema of {snap.get('database')}: {len(snap.get('tables') or {})} tables"
        except (OSError, ValueError, AttributeError):
            return "the accepted schema"
    return ""


def source_text(cfg: Config) -> str:
    """Where the next run's dump comes from, in words (no secrets)."""
    source = cfg["ETL_SOURCE"]
    if source == "s3":
        return f"the newest dump under s3://{cfg['S3_BUCKET']}/{cfg['S3_PREFIX']}"
    if source == "direct":
        return f"pg_dump of {mask_uri(cfg.raw['PROD_PG_DSN'] or '(PROD_PG_DSN is not set)')}"
    if source == "file":
        return f"the dump {cfg['ETL_DUMP_FILE'] or '(DUMP=path is not set)'}"
    return "as it is (SOURCE=local)"


def describe(plan: InitPlan, cfg: Config) -> str:
    """What `etl init` is about to do, in the order it matters to the reader."""
    root = paths.root
    lines = [f"etl init sets the pipeline up for PostgreSQL database {cfg['LOCAL_PG_DB']} at "
             f"{cfg['LOCAL_PG_HOST']}:{cfg['LOCAL_PG_PORT']},",
             f"filled from {source_text(cfg)}, loaded into MongoDB database {cfg['MONGO_DB_NAME']}."]
    if plan.remove:
        lines.append("It removes:")
        width = max(len(str(p.relative_to(root))) + (1 if p.is_dir() else 0) for p in plan.remove) + 2
        for p in plan.remove:
            name = str(p.relative_to(root)) + ("/" if p.is_dir() else "")
            lines.append(f"  {name:<{width}}{_count(p)}".rstrip())
    else:
        lines.append("There is no accepted schema or derived state to remove.")
    lines.append("It writes empty:")
    for p in plan.reset:
        what = "no rules: the default mapping" if p.name == "rules.yaml" else "no decisions"
        lines.append(f"  {str(p.relative_to(root)):<28}{what}")
    kept = ", ".join(plan.keep)
    lines.append(f"It keeps {kept + ' and ' if kept else ''}the local services' data (.run/); "
                 "MongoDB is not touched.")
    lines.append("Then `make all` accepts the database's schema as the baseline and loads it.")
    return "\n".join(lines)


def apply(plan: InitPlan) -> None:
    """Carry the plan out, holding the run lock (a running pipeline is not pulled from under)."""
    with lock.acquire():
        for p in plan.remove:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        for p, text in plan.reset.items():
            p.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(p, text)
