"""Where things live. Every path the stages share is named here once.

Paths are properties read at each use, so ETL_ROOT (a scratch copy of the tree, as the tests
use) takes effect even after import: `from etl.core.paths import paths; paths.dumps`.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[3]


class Paths:
    @property
    def root(self) -> Path:
        """The project root: the folder holding pipeline.env (ETL_ROOT overrides)."""
        return Path(os.environ.get("ETL_ROOT") or SOURCE_ROOT).resolve()

    run = property(lambda self: self.root / ".run")  # local services' data, pids, locks
    make_stamps = property(lambda self: self.root / ".make")
    data = property(lambda self: self.root / "data")
    dumps = property(lambda self: self.data / "dumps")
    current_dump = property(lambda self: self.dumps / "current.json")  # changes only with the dump
    restored = property(lambda self: self.data / "restored.json")  # what the local database holds
    changes = property(lambda self: self.data / "changes")
    transformed = property(lambda self: self.data / "transformed")
    sample_dump = property(lambda self: self.data / "sample" / "media_tool.dump")
    backups = property(lambda self: self.root / "backups")
    logs = property(lambda self: self.root / "logs" / "etl")
    reports = property(lambda self: self.root / "reports")
    schemas = property(lambda self: self.root / "schemas")
    snapshots = property(lambda self: self.schemas / "snapshots")
    generated = property(lambda self: self.root / "generated")


paths = Paths()
