"""One statement of a migration script (etl.formats.migration is the file, etl.model.plan
builds the statements, etl.adapters.mongodb.migrations runs them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One statement. `op` is updateMany, count, assert_none, rename or drop."""

    op: str
    collection: str
    filter: dict[str, Any] | None = None
    update: dict[str, Any] | list[Any] | None = None
    target: str | None = None  # rename: the new collection name
    message: str | None = None  # count: the label; assert_none: the error
    comment: str | None = None  # written as a `//` line above the statement
    line: int = 0  # where it was parsed from
