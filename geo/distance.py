"""Great-circle distance between two points on Earth: the distance used to rank broadcasters.

Haversine on a sphere: within ~0.5 % of the ellipsoidal distance, far below what matters for
choosing the nearer of two data centres, and cheap enough to run per candidate per request.
"""

from __future__ import annotations

import math

# IUGG mean Earth radius: the sphere that minimises the haversine error on average.
EARTH_RADIUS_KM = 6371.0088

LatLon = tuple[float, float]
"""(latitude, longitude) in decimal degrees."""


def distance_km(a: LatLon, b: LatLon) -> float:
    """Great-circle distance in km between two (latitude, longitude) points."""
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    # Rounding can push h a hair above 1 for antipodal points, where asin would raise.
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))
