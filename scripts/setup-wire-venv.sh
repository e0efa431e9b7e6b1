#!/usr/bin/env bash
# A Python 3.13 virtualenv holding mongoeco, whose wire-protocol server enforces $jsonSchema
# validators. The tests start it to check validators for real; no mongod can be installed
# here. Idempotent: an existing venv with the pinned version is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WIRE_VENV:-$ROOT/.venv-wire}"
MONGOECO_VERSION="4.11.0"
# The wire server encodes BSON with pymongo's bson package; same pin as the project.
PYMONGO_VERSION="4.20.1"

find_python() {
  for candidate in "${WIRE_PYTHON:-}" python3.13 /root/.pyenv/versions/3.13.0/bin/python3.13 \
                   "$HOME/.pyenv/versions/3.13.0/bin/python3.13"; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('mongoeco') != '$MONGOECO_VERSION' or m.version('pymongo') != '$PYMONGO_VERSION')" 2>/dev/null; then
  touch "$VENV/.installed"  # Make's target for this step
  exit 0
fi

if ! PY="$(find_python)"; then
  echo "setup-wire-venv: no Python >= 3.13 found (set WIRE_PYTHON); wire tests will be skipped" >&2
  exit 0
fi

"$PY" -m venv "$VENV"
# The image's pip config lists local mirrors that may be absent: their warnings are noise.
"$VENV/bin/pip" install --quiet --disable-pip-version-check "mongoeco[wire]==$MONGOECO_VERSION" \
  "pymongo==$PYMONGO_VERSION" 2>&1 \
  | { grep -v "^WARNING: Location .* is ignored" || true; } >&2
touch "$VENV/.installed"
echo "setup-wire-venv: mongoeco $MONGOECO_VERSION ready in $VENV"
