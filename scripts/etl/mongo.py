"""The one place that turns a MongoDB URI into a client.

mongodb:// and mongodb+srv:// go to pymongo. Two schemes select an in-process stand-in for
machines without a server: `litemongo:PATH` (file-backed, data kept across processes; a
relative PATH is under the project root) and `mongomock://NAME` (memory only, one process).
Nothing else in the code knows which one it is talking to; code that needs a feature a
server may lack (collMod, $jsonSchema, transactions) asks the server and handles the refusal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from etl.config import mask_uri
from etl.errors import ConfigError, DatabaseError
from etl.paths import paths

_MEMORY: dict[str, Any] = {}

# MongoDB's rules for database names: no /\. "$*<>:|? or space, no NUL, < 64 bytes.
_BAD_DB_CHARS = re.compile(r'[/\\. "$*<>:|?\x00]')


def check_db_name(name: str) -> str:
    if not name:
        raise ConfigError("database name is empty")
    if _BAD_DB_CHARS.search(name):
        raise ConfigError(f"database name {name!r} has a character MongoDB forbids (/\\. \"$*<>:|?)")
    if len(name.encode("utf-8")) >= 64:
        raise ConfigError(f"database name {name!r} is 64 bytes or longer")
    return name


def is_standin(uri: str) -> bool:
    return uri.startswith(("litemongo:", "mongomock:"))


def connect(uri: str, *, timeout_ms: int = 5000, check: bool = True):
    """A pymongo-compatible client for `uri`. With `check`, an unreachable server is a
    DatabaseError naming the (masked) URI, raised here rather than at the first query."""
    if uri.startswith("litemongo:"):
        import litemongo

        raw = uri[len("litemongo:"):]
        path = Path(raw[2:] if raw.startswith("//") else raw)
        if not path.is_absolute():
            path = paths.root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return litemongo.connect(str(path), tz_aware=True)
    if uri.startswith("mongomock:"):
        import mongomock

        key = uri[len("mongomock:"):].lstrip("/") or "default"
        if key not in _MEMORY:
            _MEMORY[key] = mongomock.MongoClient(tz_aware=True)
        return _MEMORY[key]

    import pymongo
    from pymongo.errors import PyMongoError

    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True,
                                     uuidRepresentation="standard")
        if check:
            client.admin.command("ping")
    except PyMongoError as exc:
        raise DatabaseError(
            f"MongoDB at {mask_uri(uri)} is not reachable: {type(exc).__name__}",
            hint="check MONGO_URI and that the server runs",
        ) from None
    return client
