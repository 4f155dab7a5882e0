"""Tiny MaxMind-format City databases written by the tests themselves, with mmdb-writer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def city_record(
    latitude: float | None,
    longitude: float | None,
    country: str | None = None,
    city: str | None = None,
) -> dict[str, Any]:
    """A record shaped like a GeoIP2 City entry, with only the fields geo reads."""
    record: dict[str, Any] = {}
    location = {
        key: value
        for key, value in (("latitude", latitude), ("longitude", longitude))
        if value is not None
    }
    if location:
        record["location"] = location
    if country is not None:
        record["country"] = {"iso_code": country}
    if city is not None:
        record["city"] = {"names": {"en": city}}
    return record


def write_city_db(
    path: Path,
    networks: Mapping[str, dict[str, Any]],
    database_type: str = "Tiny-City-Test",
) -> Path:
    """Write a MaxMind-format database holding `networks` (CIDR -> record) to `path`."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description="geo tests",
    )
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path
