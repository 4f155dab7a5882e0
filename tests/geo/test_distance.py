"""Great-circle distances against known city pairs and the properties any distance must have."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo.distance import EARTH_RADIUS_KM, distance_km

LONDON = (51.5074, -0.1278)
FRANKFURT = (50.1109, 8.6821)
NEW_YORK = (40.7128, -74.0060)
LOS_ANGELES = (34.0522, -118.2437)
SYDNEY = (-33.8688, 151.2093)
MELBOURNE = (-37.8136, 144.9631)

HALF_CIRCUMFERENCE_KM = math.pi * EARTH_RADIUS_KM


@pytest.mark.parametrize(
    ("a", "b", "expected_km"),
    [
        pytest.param(LONDON, FRANKFURT, 638, id="london-frankfurt"),
        pytest.param(NEW_YORK, LOS_ANGELES, 3936, id="new_york-los_angeles"),
        pytest.param(SYDNEY, MELBOURNE, 713, id="sydney-melbourne"),
        pytest.param(LONDON, SYDNEY, 16_994, id="london-sydney"),
        # Across the antimeridian: 1 degree of longitude on the equator, not 359.
        pytest.param((0.0, 179.5), (0.0, -179.5), 111.2, id="antimeridian"),
        pytest.param((90.0, 0.0), (-90.0, 0.0), HALF_CIRCUMFERENCE_KM, id="pole-to-pole"),
        pytest.param((0.0, 0.0), (0.0, 180.0), HALF_CIRCUMFERENCE_KM, id="antipodes"),
        pytest.param(LONDON, LONDON, 0.0, id="same-point"),
    ],
)
def test_known_distances(a: tuple[float, float], b: tuple[float, float], expected_km: float) -> None:
    assert distance_km(a, b) == pytest.approx(expected_km, rel=0.005, abs=0.5)


points = st.tuples(
    st.floats(min_value=-90, max_value=90, allow_nan=False),
    st.floats(min_value=-180, max_value=180, allow_nan=False),
)


@given(points, points)
def test_symmetric_and_bounded(a: tuple[float, float], b: tuple[float, float]) -> None:
    d = distance_km(a, b)
    assert d == pytest.approx(distance_km(b, a), abs=1e-6)
    assert 0.0 <= d <= HALF_CIRCUMFERENCE_KM + 1e-6


@given(points, points, points)
def test_triangle_inequality(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]
) -> None:
    # Haversine loses precision near antipodal points (centimetres): allow a metre.
    assert distance_km(a, c) <= distance_km(a, b) + distance_km(b, c) + 1e-3
