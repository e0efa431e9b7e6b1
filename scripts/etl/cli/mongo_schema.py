"""`etl mongo-schema`: validators and indexes from the canonical schemas (etl.stages.mongo_schema)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import mask_uri
from etl.core.names import check_db_name
from etl.stages.mongo_schema import run_mongo_schema


@click.command("mongo-schema")
@click.option("--db", "db_name", default=None, help="Target database (default MONGO_DB_NAME).")
@config_options
def mongo_schema_cmd(cfg, db_name: str | None):
    """Apply validators and indexes from the canonical schemas to MongoDB.

    Each collection gets a $jsonSchema validator (create for a new collection, collMod for an
    existing one; strict/error when ETL_SCHEMA_STRICT_MODE=true, else moderate/warn) and
    exactly the expected indexes: foreign keys, unique constraints and plain-column indexes;
    indexes that disappeared are dropped. A server that refuses a validator, collMod or an
    index stops the command with its message.

    Example: etl mongo-schema --db bravo-1-20261126
    """

    if db_name:
        cfg = cfg.with_overrides({"MONGO_DB_NAME": check_db_name(db_name)})
    outcomes = run_mongo_schema(cfg)
    target = f"{mask_uri(cfg['MONGO_URI'])} / {cfg['MONGO_DB_NAME']}"
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.action] = counts.get(o.action, 0) + 1
        idx = o.indexes
        changes = [f"+{n}" for n in idx.get("created", [])] + [f"-{n}" for n in idx.get("dropped", [])]
        if o.action in ("created", "modified") or changes:
            parts = [f"validator {o.action}"] if o.action in ("created", "modified") else []
            if changes:
                parts.append(f"indexes {' '.join(changes)}")
            click.echo(f"  {o.collection}: {'; '.join(parts)}")
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    click.echo(f"MongoDB schema applied to {target}: {summary or 'no collections'}.")
