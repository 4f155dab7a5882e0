"""Processes the tests and benchmarks run beside the code (devtools.processes), and a Redis server
of a test's own that skips the test, saying so, where there is no redis-server binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.processes import MissingBinary, RedisServer, free_port, stop_process

__all__ = ["OwnRedis", "free_port", "stop_process"]


class OwnRedis(RedisServer):
    def __init__(self, workdir: Path) -> None:
        try:
            super().__init__(workdir)
        except MissingBinary as exc:
            pytest.skip(str(exc))
