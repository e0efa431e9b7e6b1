"""MongoDB validators and indexes, derived from the canonical schemas.

`validator_for(schema)` turns a canonical schema (draft 2020-12, JSON representation, with
`x-bsonType` hints) into MongoDB's `$jsonSchema` dialect: `bsonType` instead of `type`, no
`$ref`, no `format`, draft-4 exclusive bounds. `apply_validators` sets it with `create` for a
new collection and `collMod` for an existing one; `sync_indexes` makes a collection's indexes
exactly the expected ones (primary keys are `_id`; foreign keys, unique constraints and
plain-column indexes come from the mapping), dropping those that disappeared.

A server that refuses a validator, `collMod` or an index is an error naming the collection
and the server's message: a collection never silently goes without its validator.
"""

from __future__ import annotations

import logging

from etl.adapters.mongodb import connect
from etl.adapters.mongodb.collections import Outcome, apply_validators
from etl.formats.canonical import read_canonical

log = logging.getLogger("etl.mongo_schema")


# ---------------------------------------------------------------------------------------------
# Indexes
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Validators
# ---------------------------------------------------------------------------------------------


def run_mongo_schema(cfg, db_name: str | None = None, out=None) -> list[Outcome]:
    schemas = read_canonical()
    db_name = db_name or cfg["MONGO_DB_NAME"]
    client = connect(cfg["MONGO_URI"])
    try:
        return apply_validators(client[db_name], schemas, strict=cfg["ETL_SCHEMA_STRICT_MODE"])
    finally:
        client.close()
