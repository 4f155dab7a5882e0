#!/usr/bin/env bash
# Runs the test suite with the real parts it needs: ffmpeg and Chromium (end-to-end players), a
# Redis server (shared-store tests) and promtool (Debian's prometheus: the alert rules).
# Missing Debian packages are installed when run as root; otherwise the script says what to
# install. Arguments go to pytest (e.g. ./test.sh tests/geo -x).
set -euo pipefail
cd "$(dirname "$0")"

[ -x .venv/bin/pytest ] || ./install.sh

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool checks deploy/prometheus
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: please install ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# The Redis tests use 127.0.0.1:6379 (or EDGE_TEST_REDIS_URL) under their own key prefixes.
if [ -z "${EDGE_TEST_REDIS_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/edge-test-redis.log >/dev/null
fi

exec .venv/bin/pytest "$@"
