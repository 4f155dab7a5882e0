"""The Location value and the parsing of untrusted coordinate text."""

from __future__ import annotations

import math

import pytest

from geo.location import Location, checked_location, parse_degrees


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("51.5142", 51.5142),
        ("-0.0931", -0.0931),
        ("+12", 12.0),
        ("  7.5 ", 7.5),
        (".5", 0.5),
        ("5.", 5.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-Infinity", None),
        ("1e2", None),
        ("1_0", None),
        ("0x10", None),
        ("١٢", None),  # Arabic-Indic digits: float() takes them, a CDN never sends them
        ("12,5", None),
        ("51.5N", None),
        ("--1", None),
    ],
)
def test_parse_degrees(text: str | None, expected: float | None) -> None:
    assert parse_degrees(text) == expected


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(90.5, 0.0), (-90.01, 0.0), (0.0, 180.01), (0.0, -181.0), (math.nan, 0.0), (0.0, math.inf)],
)
def test_invalid_coordinates_never_become_a_location(latitude: float, longitude: float) -> None:
    assert checked_location(latitude, longitude, source="test") is None
    with pytest.raises(ValueError, match="invalid coordinates"):
        Location(latitude, longitude)


@pytest.mark.parametrize(("latitude", "longitude"), [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)])
def test_boundaries_are_valid(latitude: float, longitude: float) -> None:
    location = checked_location(latitude, longitude, source="test")
    assert location == Location(latitude, longitude, source="test")


@pytest.mark.parametrize(
    ("country", "city", "expected_country", "expected_city"),
    [
        ("gb", " London ", "GB", "London"),
        ("XX", "London", None, "London"),  # Cloudflare's "unknown"
        ("T1", None, None, None),  # Cloudflare's Tor exit
        ("GBR", "", None, None),
        ("G1", "x" * 101, None, None),
        (None, "Linköping", None, "Linköping"),
        ("SE", "Link\nöping", "SE", None),
    ],
)
def test_bad_names_are_dropped_but_the_point_is_kept(
    country: str | None, city: str | None, expected_country: str | None, expected_city: str | None
) -> None:
    location = checked_location(51.5, -0.1, country=country, city=city, source="test")
    assert location is not None
    assert (location.country, location.city) == (expected_country, expected_city)
    assert location.point == (51.5, -0.1)


def test_location_is_immutable() -> None:
    location = Location(1.0, 2.0)
    with pytest.raises(AttributeError):
        location.latitude = 3.0  # type: ignore[misc]
