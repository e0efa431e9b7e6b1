"""`data/dumps/current.json`: the pointer to the dump in use (file, sha256, size, source, key),
rewritten only when a different dump arrives.
"""

from __future__ import annotations

from etl.core.errors import SourceError
from etl.core.fsutil import read_json
from etl.core.paths import paths


def current_pointer() -> dict | None:
    try:
        return read_json(paths.current_dump)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise SourceError(f"{paths.current_dump} is not valid JSON ({exc})",
                          hint="delete it and acquire again") from None
