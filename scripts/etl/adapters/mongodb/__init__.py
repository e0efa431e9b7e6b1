"""The one place that turns a MongoDB URI into a client.

The pipeline talks to MongoDB only through pymongo and a `mongodb://` / `mongodb+srv://` URI,
the same way whatever answers: the managed server of the demo and the tests, or a real
MongoDB. What a server refuses is an error naming the operation and the server's message,
never a reason to take another path.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pymongo
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from etl.core.config import mask_uri
from etl.core.errors import DatabaseError


def is_local(uri: str) -> bool:
    """The URI names one host on this machine, with a port: a server the project may run."""
    parts = urlsplit(uri)
    return (uri.startswith("mongodb://") and "," not in parts.netloc
            and parts.hostname in ("127.0.0.1", "localhost") and parts.port is not None)


def connect(uri: str, *, timeout_ms: int = 5000, check: bool = True) -> pymongo.MongoClient:
    """A pymongo client for `uri` (tz-aware UTC datetimes, standard UUIDs). With `check`, an
    unreachable server or refused credentials are a DatabaseError naming the (masked) URI,
    raised here rather than at the first query."""
    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True,
                                     uuidRepresentation="standard")
    except (PyMongoError, ValueError) as exc:  # a malformed URI option
        raise DatabaseError(f"MongoDB URI {mask_uri(uri)} is not usable: {describe(exc)}") from None
    if check:
        try:
            client.admin.command("ping")
        except OperationFailure as exc:
            client.close()
            raise DatabaseError(f"MongoDB at {mask_uri(uri)} refused the connection: {describe(exc)}",
                                hint="check the user and password in MONGO_URI") from None
        except PyMongoError as exc:
            client.close()
            raise DatabaseError(f"MongoDB at {mask_uri(uri)} is not reachable: {type(exc).__name__}",
                                hint="check MONGO_URI and that the server runs (`make services-up` "
                                     "starts the managed one)") from None
    return client


def describe(exc: BaseException) -> str:
    """One line for a pymongo error: what the server said when it refused an operation
    (`the server said: errmsg (codeName)`), or that the connection failed, which is no refusal."""
    details = getattr(exc, "details", None)
    if isinstance(exc, OperationFailure):
        msg = details.get("errmsg") if isinstance(details, dict) else None
        # pymongo appends ", full error: {…}" to the text; errmsg says it without the dump.
        msg = (msg or str(exc).split(", full error:", 1)[0] or type(exc).__name__).splitlines()[0]
        # An index build wraps the duplicate in its own preamble; the key is what tells.
        msg = msg[msg.index("E11000"):] if "E11000" in msg else msg
        msg = msg[:400]
        code_name = details.get("codeName") if isinstance(details, dict) else None
        return f"the server said: {msg}" + (f" ({code_name})" if code_name and code_name not in msg else "")
    text = (str(exc).splitlines() or [""])[0]
    # Server selection errors end in a topology dump: the first clause says what happened.
    text = text.split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0][:240]
    if isinstance(exc, ConnectionFailure):
        return f"the connection to MongoDB failed ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"
