#!/usr/bin/env bash
# Headless Chromium for tests/test_report.py, which renders the HTML run report and looks at
# the result. Debian's package; needs root (CI images and these machines run as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    chromium --version
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
chromium --version
