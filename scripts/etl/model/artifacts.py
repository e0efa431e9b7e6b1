"""The names every generated artifact uses for a collection (file stems, types, Zod schema
constants, OpenAPI paths), derived from the collection's name alone so that the plan of a
schema change can say what it touches before anything is generated."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from etl.core.errors import GenerateError
from etl.model.indexes import expected_indexes


@dataclass(frozen=True)
class Collection:
    """One canonical collection schema and the names its artifacts use."""

    name: str  # the MongoDB collection: "campaigns", or "reporting.metrics" outside public
    schema: dict[str, Any]
    hash: str  # content_hash of the schema: what its own artifacts are stamped with

    @property
    def indexes(self) -> list[dict[str, Any]] | None:
        """The indexes the schema expects (`x-indexes`), as etl.mongo_schema reads them;
        None when the schema does not say."""
        if "x-indexes" not in self.schema:
            return None

        try:
            return expected_indexes(self.schema)
        except (KeyError, TypeError, ValueError) as exc:
            raise GenerateError(f"{self.name}: malformed x-indexes ({exc})") from None

    @property
    def slug(self) -> str:
        """File stem for Python and TypeScript files (identifiers cannot hold dots)."""
        return re.sub(r"\W", "_", self.name)

    @property
    def type_name(self) -> str:
        """The type every generator uses: Campaigns, LineItems, ReportingMetrics."""
        words = re.split(r"[^0-9A-Za-z]+", self.name)
        name = "".join(w[:1].upper() + w[1:] for w in words if w)
        return name if name[:1].isalpha() else f"C{name}"

    @property
    def api_paths(self) -> list[str]:
        """The OpenAPI paths generate writes for the collection: list, and get by `_id`."""
        return [f"/{self.name}", f"/{self.name}/{{id}}"]

    @property
    def schema_name(self) -> str:
        """The exported Zod schema constant: campaignsSchema."""
        return self.type_name[:1].lower() + self.type_name[1:] + "Schema"
