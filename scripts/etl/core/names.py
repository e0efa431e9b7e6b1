"""Names the pipeline checks before it uses them: MongoDB database names."""

from __future__ import annotations

import re

from etl.core.errors import ConfigError

# MongoDB's rules for database names: no /\\. "$*<>:|? or space, no NUL, < 64 bytes.
_BAD_DB_CHARS = re.compile(r'[/\\. "$*<>:|?\x00]')


def check_db_name(name: str) -> str:
    if not name:
        raise ConfigError("database name is empty")
    if _BAD_DB_CHARS.search(name):
        raise ConfigError(f"database name {name!r} has a character MongoDB forbids (/\\. \"$*<>:|?)")
    if len(name.encode("utf-8")) >= 64:
        raise ConfigError(f"database name {name!r} is 64 bytes or longer")
    return name
