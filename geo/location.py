"""Where a client is: the Location value, and the checks that turn untrusted text into one.

Every source (CDN headers, city databases) builds its Location through `checked_location`, so the
range and format rules below are the only ones there are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Plain decimal degrees only. float() alone would also take "nan", "inf", "1e2", "1_0" and
# non-ASCII digits, none of which a CDN sends for a coordinate.
_DECIMAL_DEGREES = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)

# Codes that sources send when they do not know the country (Cloudflare: XX unknown, T1 Tor;
# DB-IP: ZZ; old MaxMind: A1, A2, O1, EU, AP). They are not places, so they are dropped.
_NOT_A_COUNTRY = frozenset({"XX", "ZZ", "T1", "A1", "A2", "O1", "EU", "AP"})
_COUNTRY_CODE = re.compile(r"[A-Z]{2}", re.ASCII)

# A header can carry anything; a city name longer than this is noise, not a city.
_MAX_CITY_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Location:
    """A point on Earth in decimal degrees (WGS 84), with what we know of its place and origin.

    `source` is a short, low-cardinality tag ("cf-headers", "cloudfront-headers", "akamai",
    "custom-headers", "geoip") so it can be logged or used as a metric label.
    """

    latitude: float
    longitude: float
    country: str | None = None
    city: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        # Checked here too, so that no code path can hand a NaN or an out-of-range point to
        # distance computations, even one that bypasses checked_location.
        if not valid_coordinates(self.latitude, self.longitude):
            raise ValueError(
                f"invalid coordinates: latitude={self.latitude!r}, longitude={self.longitude!r}"
            )

    @property
    def point(self) -> tuple[float, float]:
        """(latitude, longitude), the form geo.distance takes."""
        return (self.latitude, self.longitude)


def valid_coordinates(latitude: float, longitude: float) -> bool:
    """True for finite degrees with latitude in [-90, 90] and longitude in [-180, 180]."""
    return (
        math.isfinite(latitude)
        and math.isfinite(longitude)
        and -90.0 <= latitude <= 90.0
        and -180.0 <= longitude <= 180.0
    )


def parse_degrees(text: str | None) -> float | None:
    """Decimal degrees from untrusted text ("51.5142", " -0.09 "), or None if it is not one."""
    if text is None:
        return None
    text = text.strip()
    if not _DECIMAL_DEGREES.fullmatch(text):
        return None
    return float(text)


def checked_location(
    latitude: float | None,
    longitude: float | None,
    *,
    country: str | None = None,
    city: str | None = None,
    source: str,
) -> Location | None:
    """A Location from values of uncertain quality, or None when the coordinates are unusable.

    A missing or invalid country or city only drops that field: the coordinates are what ranking
    needs, the names are for people reading logs.
    """
    if latitude is None or longitude is None:
        return None
    if not valid_coordinates(latitude, longitude):
        return None
    return Location(
        latitude=latitude,
        longitude=longitude,
        country=_clean_country(country),
        city=_clean_city(city),
        source=source,
    )


def _clean_country(text: str | None) -> str | None:
    if text is None:
        return None
    code = text.strip().upper()
    if not _COUNTRY_CODE.fullmatch(code) or code in _NOT_A_COUNTRY:
        return None
    return code


def _clean_city(text: str | None) -> str | None:
    if text is None:
        return None
    name = text.strip()
    if not name or len(name) > _MAX_CITY_LENGTH or not name.isprintable():
        return None
    return name
