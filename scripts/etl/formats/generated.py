"""What `generated/` was made from: the marker file (`generated/.canonical-hash`) and the
versions of the generators, so a change of either makes the artifacts stale.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from etl.core.fsutil import read_json
from etl.core.paths import SOURCE_ROOT

# Bump when the shape of any artifact changes, so `etl generate` rewrites them even though
# the canonical schemas did not change.
GENERATOR_VERSION = 4


NODE_PACKAGES = ("json-schema-to-typescript", "json-schema-to-zod", "prettier", "typescript", "zod")


def _node_versions() -> dict[str, str]:
    # From the committed lock file, not node_modules: whether the artifacts are current must
    # not depend on Node being installed on the machine that asks (cron, CI).
    try:
        lock = json.loads((SOURCE_ROOT / "package-lock.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {name: "unlocked" for name in NODE_PACKAGES}
    packages = lock.get("packages") or {}
    return {name: str((packages.get(f"node_modules/{name}") or {}).get("version", "unlocked"))
            for name in NODE_PACKAGES}


def generator_versions() -> dict[str, Any]:
    return {"etl.generate": GENERATOR_VERSION,
            "datamodel-code-generator": version("datamodel-code-generator"),
            **_node_versions()}


MARKER = ".canonical-hash"
# Sub-folders of generated/ that `etl generate` owns entirely; anything in them it did not just
# make is stale.
OWNED_DIRS = ("jsonschema", "typescript", "zod", "models", "tests")


def read_marker(out_dir: Path) -> dict[str, Any]:
    try:
        marker = read_json(out_dir / MARKER)
        return marker if isinstance(marker, dict) else {}
    except (OSError, ValueError):
        return {}
