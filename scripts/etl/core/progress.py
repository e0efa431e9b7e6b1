"""Progress for long stages: a bar with rate and ETA on a terminal, a line every few seconds
in a log or under cron (no TTY), so a night's run can be followed in its log file.

    with Progress("transform public.metrics", total=rows, unit="rows") as bar:
        for batch in batches:
            ...
            bar.advance(len(batch))
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("etl.progress")

# Set by `etl run` when its own console is a terminal: the stage's stderr is a pipe to the run,
# but what it draws ends up on a screen.
PROGRESS_TTY_ENV = "ETL_PROGRESS_TTY"


def _fmt_secs(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _fmt_num(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


class Progress:
    def __init__(self, label: str, total: int | None = None, unit: str = "rows",
                 stream=None, interval: float | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = (bool(getattr(self.stream, "isatty", lambda: False)())
                    or (stream is None and os.environ.get(PROGRESS_TTY_ENV) == "1"))
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.done = 0
        self.start = self._last = time.monotonic()

    def __enter__(self) -> "Progress":
        self.start = self._last = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._emit(final=True, failed=exc_type is not None)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit()

    def text(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.rate
        parts = [self.label]
        if self.total:
            pct = min(self.done / self.total, 1.0)
            if self.tty:
                filled = int(pct * 24)
                parts.append("[" + "#" * filled + "." * (24 - filled) + "]")
            parts.append(f"{pct:4.0%} {_fmt_num(self.done)}/{_fmt_num(self.total)} {self.unit}")
        else:
            parts.append(f"{_fmt_num(self.done)} {self.unit}")
        parts.append(f"{_fmt_num(rate)}/s")
        if self.total and rate > 0 and self.done < self.total:
            # The first moments' rate says little (a slow first batch, a cold cache).
            eta = _fmt_secs((self.total - self.done) / rate) if elapsed >= 2 else "…"
            parts.append(f"ETA {eta}")
        else:
            parts.append(f"in {_fmt_secs(elapsed)}")
        return "  ".join(parts)

    def _emit(self, final: bool = False, failed: bool = False) -> None:
        line = self.text() + ("  FAILED" if failed else "")
        if self.tty:
            end = "\n" if final else ""
            self.stream.write("\r\033[K" + line + end)
            self.stream.flush()
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
        if final:
            log.info(line)


def say(message: str) -> None:
    """One line for the person watching (stderr, so stdout stays the command's result)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
