#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's chromium for the browser tests (driven by Playwright; a downloaded browser build is never used).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/pytest "$@"
