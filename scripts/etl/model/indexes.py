"""Index specifications: one description of a MongoDB index, read from and written to every
place one appears.

An index is planned by the mapping (`indexes`: primary keys become `_id`; foreign keys, unique
constraints and plain-column indexes become indexes) and carried by the canonical schema
(`x-indexes`); the transform writes it into `<collection>.metadata.json` in mongodump's form
(`{"v": 2, "key": {...}, "name": ...}`), a backup copies the server's `listIndexes` entries in
that same form, and the load and the rollback create it. `IndexSpec` reads each of these
forms and writes each one back, so the rules for what makes two indexes the same (keys,
uniqueness, partial filter) live here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# Index options besides the keys that this pipeline carries from a metadata entry to the server.
CARRIED_OPTIONS = ("unique", "partialFilterExpression", "sparse", "expireAfterSeconds", "collation")
ID_INDEX = {"v": 2, "key": {"_id": 1}, "name": "_id_"}


def _direction(value: Any) -> Any:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[tuple[str, Any], ...]
    unique: bool = False
    partial: dict[str, Any] | None = None
    # sparse, expireAfterSeconds, collation: kept as the entry had them
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_planned(cls, spec: Mapping[str, Any]) -> "IndexSpec":
        """From a mapping's `indexes` or a canonical schema's `x-indexes` entry:
        {"name", "keys": [[field, direction]], "unique", "partial" | "partialFilterExpression"}."""
        partial = spec.get("partial") or spec.get("partialFilterExpression")
        return cls(spec["name"], tuple((k, _direction(d)) for k, d in spec["keys"]), bool(spec.get("unique")),
                   _plain(partial) if partial else None)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> "IndexSpec":
        """From a mongodump metadata entry or a server's `listIndexes` entry:
        {"v", "key": {field: direction}, "name", "unique"?, "partialFilterExpression"?, …}."""
        options = {k: _plain(entry[k]) for k in CARRIED_OPTIONS[2:] if k in entry}
        partial = entry.get("partialFilterExpression")
        return cls(entry["name"], tuple((k, _direction(d)) for k, d in dict(entry["key"]).items()),
                   bool(entry.get("unique")), _plain(partial) if partial else None, options)

    def entry(self) -> dict[str, Any]:
        """The mongodump metadata entry."""
        out: dict[str, Any] = {"v": 2, "key": dict(self.keys), "name": self.name}
        if self.unique:
            out["unique"] = True
        if self.partial:
            out["partialFilterExpression"] = dict(self.partial)
        out.update(self.options)
        return out

    def planned(self) -> dict[str, Any]:
        """The planned form the contract tests compare with: {"name", "keys", "unique", …}."""
        out: dict[str, Any] = {"name": self.name, "keys": [[k, d] for k, d in self.keys], "unique": self.unique}
        if self.partial:
            out["partialFilterExpression"] = dict(self.partial)
        return out

    def create_args(self) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
        """Arguments for pymongo's `create_index(keys, **options)`."""
        options: dict[str, Any] = {"name": self.name}
        if self.unique:
            options["unique"] = True
        if self.partial:
            options["partialFilterExpression"] = dict(self.partial)
        options.update(self.options)
        return list(self.keys), options

    def same_as(self, other: "IndexSpec") -> bool:
        """The same index, whatever it is called: keys in order, uniqueness, partial filter,
        the other carried options."""
        return (self.keys == other.keys and self.unique == other.unique
                and (self.partial or None) == (other.partial or None) and self.options == other.options)


def planned_indexes(schema_or_spec: Mapping[str, Any]) -> list[IndexSpec]:
    """The indexes a collection should have besides `_id_`, from a canonical schema
    (`x-indexes`) or a mapping collection (`indexes`)."""
    return [IndexSpec.from_planned(s) for s in schema_or_spec.get("x-indexes", schema_or_spec.get("indexes")) or []]


def expected_indexes(schema_or_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """planned_indexes in their planned form (what generated contract tests hold)."""
    return [spec.planned() for spec in planned_indexes(schema_or_spec)]


def entry_indexes(entries: Iterable[Mapping[str, Any]]) -> list[IndexSpec]:
    """The indexes of metadata or `listIndexes` entries, `_id_` left out."""
    return [IndexSpec.from_entry(e) for e in entries if e.get("name") != "_id_"]
