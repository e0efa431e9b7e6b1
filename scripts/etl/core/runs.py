"""The run a process belongs to: `etl run` exports its id (and its log file) to the stages it
starts; the id becomes a file name, so it is checked before any use.
"""

from __future__ import annotations

import getpass
import os
import re

from etl.core.errors import RunError

RUN_ID_ENV = "ETL_RUN_ID"


RUN_LOG_ENV = "ETL_RUN_LOG"


RUN_ID_RE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}(?:-\d{1,3})?")


def check_run_id(run_id: str) -> str:
    # The id becomes a file and a folder name: anything else is refused, never joined to a path.
    if not RUN_ID_RE.fullmatch(run_id):
        raise RunError(f"run id {run_id[:40]!r} is not YYYY-MM-DD-HH-mm-ss")
    return run_id


def current_run_id() -> str | None:
    value = os.environ.get(RUN_ID_ENV, "").strip()
    return check_run_id(value) if value else None


def login_name() -> str:
    """Who runs this process, for the records (decided_by, accepted_by)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
