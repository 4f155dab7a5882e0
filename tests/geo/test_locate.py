"""The order in which geolocation sources are believed, and that untrusted peers cannot steer it."""

from __future__ import annotations

import pytest

from geo.database import CityDatabase
from geo.locate import GeoPolicy, locate
from geo.location import Location
from geo.proxies import TrustedProxies
from tests.geo.shared_data import maxmind_city_test_db

PROXY = "10.0.0.1"
STRANGER = "198.51.100.66"
POLICY = GeoPolicy(TrustedProxies(["10.0.0.0/8"]), custom_latlon_header="x-client-lat-long")

PEER_PLACE = Location(1.0, 1.0, source="geoip")
CLIENT_PLACE = Location(2.0, 2.0, source="geoip")
CF_HEADERS = {"cf-iplatitude": "51.5", "cf-iplongitude": "-0.1", "cf-ipcountry": "GB"}
CF_PLACE = Location(51.5, -0.1, "GB", None, "cf-headers")


class FakeDatabase:
    """Knows two addresses and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.places = {STRANGER: PEER_PLACE, "203.0.113.9": CLIENT_PLACE}

    def lookup(self, ip: str) -> Location | None:
        self.asked.append(ip)
        return self.places.get(ip)


@pytest.mark.parametrize(
    ("peer", "headers", "expected", "asked"),
    [
        pytest.param(PROXY, CF_HEADERS, CF_PLACE, [], id="trusted-cdn-headers-first"),
        pytest.param(
            PROXY, {**CF_HEADERS, "cf-connecting-ip": "203.0.113.9"}, CF_PLACE, [], id="headers-before-database"
        ),
        pytest.param(
            PROXY,
            {"x-client-lat-long": "3,4"},
            Location(3.0, 4.0, source="custom-headers"),
            [],
            id="trusted-custom-header",
        ),
        pytest.param(
            PROXY,
            {"cf-connecting-ip": "203.0.113.9"},
            CLIENT_PLACE,
            ["203.0.113.9"],
            id="trusted-client-address",
        ),
        pytest.param(
            PROXY,
            {"cf-iplatitude": "999", "cf-iplongitude": "0", "x-forwarded-for": "203.0.113.9"},
            CLIENT_PLACE,
            ["203.0.113.9"],
            id="bad-geo-headers-fall-back-to-database",
        ),
        pytest.param(PROXY, {}, None, [PROXY], id="trusted-nothing-known"),
        # Spoofing: an untrusted peer's headers are never read.
        pytest.param(STRANGER, CF_HEADERS, PEER_PLACE, [STRANGER], id="untrusted-geo-headers-ignored"),
        pytest.param(
            STRANGER, {"x-client-lat-long": "3,4"}, PEER_PLACE, [STRANGER], id="untrusted-custom-header-ignored"
        ),
        pytest.param(
            STRANGER,
            {"x-forwarded-for": "203.0.113.9", "cf-connecting-ip": "203.0.113.9"},
            PEER_PLACE,
            [STRANGER],
            id="untrusted-forwarding-ignored",
        ),
        pytest.param("testclient", CF_HEADERS, None, ["testclient"], id="peer-not-an-address"),
    ],
)
def test_source_order(
    peer: str, headers: dict[str, str], expected: Location | None, asked: list[str]
) -> None:
    database = FakeDatabase()
    assert locate(peer, headers, POLICY, database) == expected
    assert database.asked == asked


def test_without_a_database_only_headers_can_answer() -> None:
    assert locate(PROXY, CF_HEADERS, POLICY, None) == CF_PLACE
    assert locate(PROXY, {"cf-connecting-ip": "203.0.113.9"}, POLICY, None) is None
    assert locate(STRANGER, CF_HEADERS, POLICY, None) is None


@pytest.mark.parametrize(
    "custom", [{"custom_lat_header": "x-lat"}, {"custom_lon_header": "x-lon"}]
)
def test_half_a_custom_header_pair_is_a_configuration_error(custom: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="set together"):
        GeoPolicy(TrustedProxies([]), **custom)


def test_end_to_end_with_maxmind_test_database() -> None:
    """A CloudFront-fronted request from London, and a direct one from San Diego claiming London."""
    policy = GeoPolicy(TrustedProxies(["10.0.0.0/8"]))
    with CityDatabase(maxmind_city_test_db()) as database:
        via_cdn = locate(PROXY, {"cloudfront-viewer-address": "81.2.69.142:50321"}, policy, database)
        direct = locate("214.78.120.5", {"x-forwarded-for": "81.2.69.142"}, policy, database)
    assert via_cdn is not None and via_cdn.city == "London"
    assert direct is not None and direct.city == "San Diego"
