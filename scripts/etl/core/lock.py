"""One run at a time: `.run/etl.lock` names the holder (pid, host, start time, run id).

The lock is an advisory `flock` on that file, held for the whole run. The kernel drops it
when the holder dies, however it dies (kill -9, a reboot), so a lock left by a dead process
is recovered simply by taking it again; the pid and start time written inside are there so a
refused run can say who holds it. A lock file whose pid no longer exists is reported as
recovered, so the log shows that the previous run did not end cleanly.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from etl.core.errors import LockHeld
from etl.core.paths import paths

log = logging.getLogger("etl.lock")


def lock_path() -> Path:
    return paths.run / "etl.lock"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_holder(path: Path | None = None) -> dict[str, Any] | None:
    """What the lock file says about its holder, or None when it is absent or unreadable."""
    path = path or lock_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process"
    where = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    run = f", run {holder['run_id']}" if holder.get("run_id") else ""
    return f"pid {holder.get('pid', '?')}{where}, started {holder.get('started_at', '?')}{run}"


@dataclass
class RunLock:
    """A held lock; release() (or leaving the `with` block) gives it up."""

    path: Path
    fd: int
    holder: dict[str, Any]
    recovered: dict[str, Any] | None = None  # what a stale lock file said, when one was taken over

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            # Emptied rather than deleted: deleting would let a waiting process lock an inode
            # that a third process has already replaced.
            os.ftruncate(self.fd, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(run_id: str | None = None, path: Path | None = None) -> RunLock:
    """Take the run lock or raise LockHeld naming the holder's pid and start time."""
    path = path or lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = read_holder(path)
        raise LockHeld(f"another run holds the lock: {describe_holder(holder)}",
                       hint=f"wait for it, or check {path}") from None
    previous = read_holder(path)
    recovered = None
    if previous and previous.get("pid") and not _is_ours(previous):
        recovered = previous
        state = "is gone" if not pid_alive(int(previous["pid"])) else "no longer holds it"
        log.warning("recovered a stale lock: %s %s", describe_holder(previous), state)
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_id": run_id,
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
    os.fsync(fd)
    return RunLock(path=path, fd=fd, holder=holder, recovered=recovered)


def _is_ours(holder: dict[str, Any]) -> bool:
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
