"""Collections on a MongoDB server: validators, indexes, and the staging-and-swap that makes a
collection's replacement atomic.

`apply_validators` sets a canonical schema's validator with `create` for a new collection and
`collMod` for an existing one; `sync_indexes` makes a collection's indexes exactly the
expected ones. `Staging` fills collections under temporary names and swaps them in with
`renameCollection … dropTarget`: the load and the rollback both replace collections through it.
A server that refuses a validator, `collMod`, an index or a rename is an error naming the
collection and the server's message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from pymongo import InsertOne
from pymongo.errors import CollectionInvalid, PyMongoError

from etl.adapters.mongodb import describe
from etl.core.errors import DatabaseError
from etl.model.indexes import IndexSpec, entry_indexes, planned_indexes
from etl.model.validators import (
    VALIDATION_OPTIONS,
    plain,
    validation_options,
    validator_for,
)

log = logging.getLogger("etl.mongo_schema")


def current_indexes(coll) -> dict[str, IndexSpec]:
    """The collection's indexes as the server lists them, `_id_` aside."""
    return {spec.name: spec for spec in entry_indexes(dict(info) for info in coll.list_indexes())}


def create_indexes(coll, specs: Iterable[IndexSpec]) -> None:
    """One `createIndexes` per index: a failure names the index it was building."""
    for spec in specs:
        keys, options = spec.create_args()
        coll.create_index(keys, **options)


def sync_indexes(coll, expected: Iterable[IndexSpec]) -> dict[str, list[str]]:
    """Make `coll`'s indexes the expected ones: create the missing, rebuild the changed, drop
    the ones no longer expected (except `_id_`). Returns {"created", "dropped", "kept"}."""
    current = current_indexes(coll)
    wanted = {spec.name: spec for spec in expected}
    result: dict[str, list[str]] = {"created": [], "dropped": [], "kept": []}
    try:
        for name, spec in current.items():
            if name not in wanted or not spec.same_as(wanted[name]):
                coll.drop_index(name)
                result["dropped"].append(name)
        for name, spec in wanted.items():
            if name in current and current[name].same_as(spec):
                result["kept"].append(name)
                continue
            create_indexes(coll, [spec])
            result["created"].append(name)
    except PyMongoError as exc:
        raise DatabaseError(f"indexes of {coll.name}: building them failed: {describe(exc)}") from None
    return result


@dataclass
class Outcome:
    collection: str
    action: str  # created | modified | unchanged
    indexes: dict[str, list[str]] = field(default_factory=dict)


def current_validator(db, name: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(validator, options) of collection `name` as the server reports them; (None, {}) when
    the collection has none."""
    for info in db.list_collections(filter={"name": name}):
        options = dict(info.get("options") or {})
        return options.get("validator"), options
    return None, {}


def keep_options(db, name: str, options: dict[str, Any]) -> bool:
    """After a `renameCollection`, make sure `name` still holds the validation options it was
    created with (`options`: validator, validationLevel, validationAction). MongoDB keeps them
    across a rename and this only reads; a server that dropped them gets them back through
    collMod. Returns whether it had to."""
    wanted = {k: options[k] for k in VALIDATION_OPTIONS if k in options}
    if not wanted:
        return False
    _, have = current_validator(db, name)
    if all(plain(have.get(k)) == plain(v) for k, v in wanted.items()):
        return False
    try:
        db.command({"collMod": name, **wanted})
    except PyMongoError as exc:
        raise DatabaseError(f"{name}: the validator was lost in renameCollection, and collMod to set it "
                            f"again failed: {describe(exc)}") from None
    log.info("%s: the server dropped the collection's validator in renameCollection; set again with collMod", name)
    return True


def apply_validator(db, name: str, schema: dict[str, Any], *, strict: bool) -> Outcome:
    """Create `name` with the validator of `schema`, or collMod an existing collection. A
    refusal is a DatabaseError naming the collection and the server's message."""
    validator = validator_for(schema)
    options = validation_options(strict)
    exists = name in db.list_collection_names()
    if exists:
        have, have_options = current_validator(db, name)
        if (have is not None and plain(have) == validator
                and have_options.get("validationLevel", "strict") == options["validationLevel"]
                and have_options.get("validationAction", "error") == options["validationAction"]):
            return Outcome(name, "unchanged")
        try:
            db.command({"collMod": name, "validator": validator, **options})
        except PyMongoError as exc:
            raise DatabaseError(f"{name}: collMod with its validator failed: {describe(exc)}") from None
        return Outcome(name, "modified")
    try:
        db.create_collection(name, validator=validator, **options)
    except CollectionInvalid:  # created by someone else meanwhile: modify it instead
        return apply_validator(db, name, schema, strict=strict)
    except PyMongoError as exc:
        raise DatabaseError(f"{name}: creating it with its validator failed: {describe(exc)}") from None
    return Outcome(name, "created")


def apply_validators(db, schemas: dict[str, dict[str, Any]], *, strict: bool = False,
                     names: dict[str, str] | None = None, indexes: bool = True) -> list[Outcome]:
    """Validators (and, with `indexes`, indexes) for every collection of `schemas`.

    `names` maps a collection to the name to apply it to, so a load can prepare its staging
    collections (`{"campaigns": "campaigns__staging_x"}`) before swapping them in."""
    outcomes = []
    for coll_name, schema in sorted(schemas.items()):
        target = (names or {}).get(coll_name, coll_name)
        outcome = apply_validator(db, target, schema, strict=strict)
        if indexes:
            outcome.indexes = sync_indexes(db[target], planned_indexes(schema))
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------------------------------------
# Staging and swap

STAGING_MARK = "__staging_"


def is_staging(name: str) -> bool:
    return STAGING_MARK in name


def _enforced(options: dict[str, Any]) -> bool:
    """Does the validator refuse documents (validationAction error, MongoDB's default)?"""
    return "validator" in options and options.get("validationAction", "error") == "error"


class Staging:
    """Collections filled under staging names `<name>__staging_<tag>`, then swapped in.

    `create` makes a staging collection with the options the live one will have. A validator
    that refuses documents is there before the first one arrives, so a bad document stops at
    its batch; one that only warns is set by `finish`, after the documents and the indexes
    (checking each insert against it would cost the server the same work and tell nobody
    anything; one index build per index costs less than keeping each index up to date through
    every insert, on MongoDB as on the managed server). `swap` renames every staging
    collection over its live one, each rename atomic; after each it reads the validator back
    and sets it again on a server that dropped it in the rename. `drop` removes what is left."""

    def __init__(self, db, tag: str):
        self.db = db
        self.tag = tag
        self.options: dict[str, dict[str, Any]] = {}
        self.revalidated: list[str] = []  # the server dropped the validator in the rename

    def name(self, collection: str) -> str:
        return f"{collection}{STAGING_MARK}{self.tag}"

    def leftovers(self, collections: Iterable[str]) -> list[str]:
        """Staging collections of `collections` left by earlier runs (any tag)."""
        wanted = set(collections)
        return sorted(c for c in self.db.list_collection_names()
                      if is_staging(c) and c.partition(STAGING_MARK)[0] in wanted)

    def create(self, collection: str, options: dict[str, Any]):
        options = {k: v for k, v in options.items() if k != "uuid"}
        self.options[collection] = options
        first = options if _enforced(options) else {k: v for k, v in options.items() if k not in VALIDATION_OPTIONS}
        name = self.name(collection)
        try:
            if name in self.db.list_collection_names():
                self.db.drop_collection(name)
            self.db.create_collection(name, **first)
        except PyMongoError as exc:
            raise DatabaseError(f"{collection}: creating its staging collection failed: {describe(exc)}") from None
        return self.db[name]

    def insert(self, collection: str, batch: list, *, bypass_validation: bool = False) -> int:
        """One ordered batch; the number of documents the server acknowledged (its `n`). Not
        `insert_many(...).inserted_ids`: pymongo collects ids only from documents it decoded,
        so for raw BSON that list stays empty."""
        return self.db[self.name(collection)].bulk_write(
            [InsertOne(doc) for doc in batch], ordered=True,
            bypass_document_validation=bypass_validation).inserted_count

    def finish(self, collection: str, indexes: Iterable[IndexSpec]) -> None:
        """Indexes, then the validator that only warns, once every document is in."""
        coll = self.db[self.name(collection)]
        try:
            create_indexes(coll, indexes)
        except PyMongoError as exc:
            raise DatabaseError(f"{collection}: building its indexes failed: {describe(exc)}") from None
        options = self.options.get(collection, {})
        validation = {k: v for k, v in options.items() if k in VALIDATION_OPTIONS}
        if validation and not _enforced(options):
            try:
                self.db.command({"collMod": coll.name, **validation})
            except PyMongoError as exc:
                raise DatabaseError(f"{collection}: collMod with its validator failed: {describe(exc)}") from None

    def swap(self, collections: Iterable[str], on_swapped=lambda name: None) -> list[str]:
        """Rename each staging collection over its live one; returns those swapped. A refused
        rename drops the staging collections not yet swapped and names the ones that were."""
        swapped: list[str] = []
        order = list(collections)
        for collection in order:
            try:
                self.db[self.name(collection)].rename(collection, dropTarget=True)
            except PyMongoError as exc:
                self.drop([c for c in order if c not in swapped])
                done = f"; already swapped: {', '.join(swapped)}" if swapped else ""
                raise DatabaseError(f"renameCollection {self.name(collection)} -> {collection} with dropTarget "
                                    f"failed: {describe(exc)}{done}") from None
            swapped.append(collection)
            if keep_options(self.db, collection, self.options.get(collection, {})):
                self.revalidated.append(collection)
            on_swapped(collection)
        return swapped

    def drop(self, collections: Iterable[str] | None = None) -> None:
        """Drop staging collections (all of this tag's by default), best effort: what cannot
        be dropped now is a leftover the next run clears."""
        names = [self.name(c) for c in collections] if collections is not None else \
            [c for c in self.db.list_collection_names() if c.endswith(f"{STAGING_MARK}{self.tag}")]
        self.drop_named(names)

    def drop_named(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                self.db.drop_collection(name)
            except PyMongoError as exc:
                log.warning("could not drop staging collection %s: %s", name, describe(exc))
