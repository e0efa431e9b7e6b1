"""References between collections, from the accepted snapshot's foreign keys as the mapping
names their fields: what validation checks for orphans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Reference:
    collection: str  # the referring collection
    field: str
    target: str  # the collection whose _id it points at
    constraint: str = ""


def references_from(mapping: Mapping, snapshot: Mapping) -> tuple[list[Reference], list[str]]:
    """References to check, from the mapping and the accepted snapshot's foreign keys.

    A single-column foreign key to a table whose collection has a single-column `_id` on the
    referenced column becomes a Reference; anything else (composite keys, a target that is not
    loaded) is returned as a note saying why it is not checked.
    """
    collections = mapping.get("collections") or {}
    by_table = {spec.get("table"): name for name, spec in collections.items()}
    tables = snapshot.get("tables") or {}
    refs: list[Reference] = []
    notes: list[str] = []
    for name, spec in sorted(collections.items()):
        field_of = {f.get("column"): f.get("name") for f in spec.get("fields") or []}
        for fk in (tables.get(spec.get("table")) or {}).get("foreign_keys") or []:
            label = f"{name}.{','.join(fk.get('columns') or [])} -> {fk.get('ref_table')}"
            target = by_table.get(fk.get("ref_table"))
            if target is None:
                notes.append(f"{label}: not checked, {fk.get('ref_table')} is not loaded")
                continue
            target_id = (collections[target].get("id") or {})
            if len(fk.get("columns") or []) != 1 or target_id.get("kind") != "single":
                notes.append(f"{label}: not checked, composite reference")
                continue
            if list(fk.get("ref_columns") or []) != list(target_id.get("columns") or []):
                notes.append(f"{label}: not checked, it references columns other than the _id")
                continue
            fieldname = field_of.get(fk["columns"][0])
            if not fieldname:
                notes.append(f"{label}: not checked, the column is not mapped to a field")
                continue
            refs.append(Reference(name, fieldname, target, fk.get("name") or ""))
    return refs, notes
