#!/usr/bin/env bash
# The managed MongoDB server's own virtualenv (.venv-mongo): SecantusDB, pinned in
# scripts/mongo-server-requirements.txt. It is a separate program (GPL-2.0-only) that the
# pipeline reaches only over the wire, so it never shares the pipeline's virtualenv.
# Idempotent: a venv that already holds the pinned versions is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MONGO_VENV:-$ROOT/.venv-mongo}"
REQUIREMENTS="$ROOT/scripts/mongo-server-requirements.txt"
PYTHON="${PYTHON:-python3}"

pinned() {
  "$VENV/bin/python" - "$REQUIREMENTS" <<'PY'
import importlib.metadata as m, re, sys
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, version = re.split(r"==", line)
    try:
        if m.version(name) != version:
            sys.exit(1)
    except m.PackageNotFoundError:
        sys.exit(1)
PY
}

if [ -x "$VENV/bin/secantusd-py" ] && pinned 2>/dev/null; then
  exit 0
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 13)))' || {
  echo "setup-mongo-venv: $PYTHON is not CPython 3.11 or 3.13 (the server's wheels); set PYTHON=python3.11" >&2
  exit 1
}
echo "installing the managed MongoDB server (SecantusDB) into $VENV …" >&2
"$PYTHON" -m venv "$VENV"
# The image's pip config may list local mirrors that are absent: their warnings are noise.
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" 2>&1 \
  | { grep -v "^WARNING: Location .* is ignored" || true; } >&2
"$VENV/bin/secantusd-py" --help >/dev/null
