"""Where the tests find the team's shared data (MaxMind's official test databases)."""

from __future__ import annotations

from pathlib import Path

import pytest

# parents[2] is the repository (/work/main); shared/ sits beside it, under parents[3].
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def maxmind_city_test_db() -> Path:
    """GeoIP2-City-Test.mmdb; fails the calling test (never skips it) when the file is missing."""
    path = SHARED_DATA / "GeoIP2-City-Test.mmdb"
    if not path.is_file():
        pytest.fail(
            f"MaxMind's test database is missing at {path}; it ships in the shared data "
            "directory beside the repository (see shared/data/README.md) and these tests need it"
        )
    return path
