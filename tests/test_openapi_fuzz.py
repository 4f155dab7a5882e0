"""The API against its own description, on a real server: schemathesis generates requests from
/openapi.json (valid and invalid, and sequences along its links: create, then get, end, delete) and
fails on any 5xx and any answer the description does not allow. Afterwards the store must hold
exactly what the accepted requests created: a refused request stores nothing.

Run alone: .venv/bin/pytest tests/test_openapi_fuzz.py -s (EDGE_FUZZ_EXAMPLES, EDGE_FUZZ_SEED)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, LOOPBACK_FLEET_ENV, auth, start_edge

EXAMPLES = int(os.environ.get("EDGE_FUZZ_EXAMPLES", "600"))  # per operation and phase: ~6,000 requests in ~2 min
MIN_REQUESTS = 5000
# The shared broadcaster token on, so that generated registrations reach the validation.
KEYS = {"EDGE_API_KEYS": API_KEY, "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN, "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
        **LOOPBACK_FLEET_ENV}
# Every check but one: the description accepts some values the handlers refuse with a documented
# 422 for rules a schema cannot say (unique rendition names, a normalisable address).
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    return found


def _count(url: str, path: str, token: str) -> int:
    """How many items the store holds, following the pages."""
    total, next_url = 0, f"{url}{path}"
    while next_url:
        response = httpx.get(next_url, headers=auth(token), timeout=10)
        assert response.status_code == 200, response.text
        total += len(response.json())
        link = response.headers.get("link")
        next_url = f"{url}{link.split('>')[0].lstrip('<')}" if link else ""
    return total


def test_the_api_keeps_its_description_under_fuzzing(tmp_path: Path) -> None:
    edge = start_edge(tmp_path, env=KEYS)
    # A fixed seed by default, so that CI is a stable gate; set EDGE_FUZZ_SEED to explore others.
    seed = os.environ.get("EDGE_FUZZ_SEED", "20261125")
    try:
        run = subprocess.run(
            [_schemathesis(), "--config-file", str(CONFIG), "--no-color", "run", f"{edge.url}/openapi.json",
             "-H", f"Authorization: Bearer {ADMIN_TOKEN}", *CHECKS, "--max-examples", str(EXAMPLES),
             # One worker: generation is Python-bound (a second thread gains nothing under the GIL), and
             # Python 3.11's ast.parse, which hypothesis calls to describe strategies, is not
             # thread-safe ("AST constructor recursion depth mismatch").
             "--workers", "1", "--request-timeout", "10", "--output-truncate", "true",
             # No example database (its writes cost more than the requests) and no shrinking: a
             # failure is reported with the seed and as a curl command, which is enough to replay.
             "--generation-database", "none", "--no-shrink",
             "--seed", seed],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )
        streams = _count(edge.url, "/api/stream?limit=100", ADMIN_TOKEN)
        broadcasters = _count(edge.url, "/api/broadcasters", ADMIN_TOKEN)
    finally:
        edge.stop()  # flushes the access log
    failures = run.stdout.partition("= FAILURES =")[2].partition("= WARNINGS =")[0]
    report = f"{failures[:20000]}\n...\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
    print(report)
    assert run.returncode == 0, report

    requests = [json.loads(line) for line in edge.log().splitlines() if '"logger": "edge.access"' in line]
    statuses = Counter((r["method"], r["route"], r["status"]) for r in requests)
    fuzzed = len(requests) - 2  # the two listings above
    print(f"{fuzzed} requests, {sum(n for (_, _, s), n in statuses.items() if s >= 500)} server errors")
    assert fuzzed >= MIN_REQUESTS, statuses
    assert not [key for key in statuses if key[2] >= 500], statuses
    # Nothing but accepted creates is stored: created - deleted, exactly.
    assert streams == statuses["POST", "/api/stream", 201] - statuses["DELETE", "/api/stream/{id}", 204], statuses
    assert broadcasters == (statuses["PUT", "/api/broadcasters/{name}", 201]
                            - statuses["DELETE", "/api/broadcasters/{name}", 204]), statuses
