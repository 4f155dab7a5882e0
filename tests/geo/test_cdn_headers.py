"""Reading client locations from CDN geo headers: each vendor, the order of trust, bad values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo.cdn_headers import location_from_cdn_headers
from geo.location import Location, valid_coordinates

CF = {"cf-iplatitude": "51.5142", "cf-iplongitude": "-0.0931", "cf-ipcountry": "GB", "cf-ipcity": "London"}
CLOUDFRONT = {
    "cloudfront-viewer-latitude": "32.7405",
    "cloudfront-viewer-longitude": "-117.0935",
    "cloudfront-viewer-country": "US",
}
AKAMAI = {
    "x-akamai-edgescape": "georegion=246,country_code=SE,region_code=E,city=LINKOPING,"
    "dma=0,lat=58.4167,long=15.6167,timezone=GMT+1,network=fiber"
}

LONDON = Location(51.5142, -0.0931, "GB", "London", "cf-headers")
SAN_DIEGO = Location(32.7405, -117.0935, "US", None, "cloudfront-headers")
LINKOPING = Location(58.4167, 15.6167, "SE", "LINKOPING", "akamai")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param(CF, LONDON, id="cloudflare"),
        pytest.param(CLOUDFRONT, SAN_DIEGO, id="cloudfront"),
        pytest.param(
            {**CLOUDFRONT, "cloudfront-viewer-city": "San Diego"},
            Location(32.7405, -117.0935, "US", "San Diego", "cloudfront-headers"),
            id="cloudfront-city",
        ),
        pytest.param(AKAMAI, LINKOPING, id="akamai"),
        pytest.param(
            {"x-akamai-edgescape": " lat = 1.5 , long=2.5,country_code=jp"},
            Location(1.5, 2.5, "JP", None, "akamai"),
            id="akamai-spaces",
        ),
        # Order of trust.
        pytest.param({**AKAMAI, **CLOUDFRONT, **CF}, LONDON, id="cloudflare-first"),
        pytest.param({**AKAMAI, **CLOUDFRONT}, SAN_DIEGO, id="cloudfront-before-akamai"),
        # A bad source is skipped, not fatal.
        pytest.param({**CF, "cf-iplatitude": "nan", **CLOUDFRONT}, SAN_DIEGO, id="cf-nan-falls-through"),
        pytest.param({**CF, "cf-iplongitude": "181", **AKAMAI}, LINKOPING, id="cf-out-of-range-falls-through"),
        pytest.param({"cf-iplatitude": "51.5", "cf-ipcountry": "GB"}, None, id="cf-latitude-only"),
        pytest.param({"cf-ipcountry": "GB", "cf-ipcity": "London"}, None, id="cf-country-only"),
        pytest.param(
            {**CF, "cf-ipcountry": "XX"},
            Location(51.5142, -0.0931, None, "London", "cf-headers"),
            id="cf-unknown-country",
        ),
        pytest.param({**CF, "cf-iplatitude": "91"}, None, id="cf-latitude-91"),
        pytest.param({**CF, "cf-iplatitude": "-90.0001"}, None, id="cf-latitude-below-90"),
        pytest.param({**CF, "cf-iplongitude": "inf"}, None, id="cf-inf"),
        pytest.param({**CF, "cf-iplongitude": "1e2"}, None, id="cf-exponent"),
        pytest.param({**CF, "cf-iplatitude": ""}, None, id="cf-empty"),
        pytest.param({**CLOUDFRONT, "cloudfront-viewer-longitude": "-117,09"}, None, id="cloudfront-comma"),
        pytest.param({"x-akamai-edgescape": "country_code=US,lat=37.3"}, None, id="akamai-no-long"),
        pytest.param({"x-akamai-edgescape": "lat=abc,long=1"}, None, id="akamai-bad-lat"),
        pytest.param({"x-akamai-edgescape": "lat=95,long=1"}, None, id="akamai-out-of-range"),
        pytest.param({"x-akamai-edgescape": "garbage"}, None, id="akamai-garbage"),
        pytest.param(
            {"x-akamai-edgescape": "lat=1,long=2,lat=80"},
            Location(1.0, 2.0, source="akamai"),
            id="akamai-first-key-wins",
        ),
        # Custom headers only count when configured.
        pytest.param(
            {"x-geo-lat": "1", "x-geo-lon": "2", "x-client-lat-long": "1,2"}, None, id="custom-unconfigured"
        ),
    ],
)
def test_vendor_headers(headers: dict[str, str], expected: Location | None) -> None:
    assert location_from_cdn_headers(headers) == expected


FASTLY = {"custom_lat_header": "X-Geo-Lat", "custom_lon_header": "x-geo-lon"}
GOOGLE = {"custom_latlon_header": "X-Client-Lat-Long"}


def custom(latitude: float, longitude: float) -> Location:
    return Location(latitude, longitude, source="custom-headers")


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        pytest.param(FASTLY, {"x-geo-lat": "35.68", "x-geo-lon": "139.75"}, custom(35.68, 139.75), id="pair"),
        pytest.param(FASTLY, {"x-geo-lat": "35.68"}, None, id="pair-half"),
        pytest.param(FASTLY, {"x-geo-lat": "35.68", "x-geo-lon": "200"}, None, id="pair-out-of-range"),
        pytest.param(
            GOOGLE,
            {"x-client-lat-long": "37.386051,-122.083851"},
            custom(37.386051, -122.083851),
            id="combined",
        ),
        pytest.param(
            GOOGLE, {"x-client-lat-long": " 37.38 , -122.08 "}, custom(37.38, -122.08), id="combined-spaces"
        ),
        pytest.param(GOOGLE, {"x-client-lat-long": "37.38"}, None, id="combined-one-value"),
        pytest.param(GOOGLE, {"x-client-lat-long": "1,2,3"}, None, id="combined-three-values"),
        pytest.param(GOOGLE, {"x-client-lat-long": ""}, None, id="combined-empty"),
        pytest.param(GOOGLE, {"x-client-lat-long": "-91,0"}, None, id="combined-out-of-range"),
        pytest.param(
            {**FASTLY, **GOOGLE},
            {"x-geo-lat": "bad", "x-geo-lon": "1", "x-client-lat-long": "3,4"},
            custom(3.0, 4.0),
            id="bad-pair-falls-to-combined",
        ),
        pytest.param(
            {**FASTLY, **GOOGLE},
            {"x-geo-lat": "1", "x-geo-lon": "2", "x-client-lat-long": "3,4"},
            custom(1.0, 2.0),
            id="pair-before-combined",
        ),
        pytest.param(GOOGLE, {**CF, "x-client-lat-long": "3,4"}, LONDON, id="vendor-before-custom"),
    ],
)
def test_custom_headers(config: dict[str, str], headers: dict[str, str], expected: Location | None) -> None:
    assert location_from_cdn_headers(headers, **config) == expected


HEADER_NAMES = [
    "cf-iplatitude",
    "cf-iplongitude",
    "cf-ipcountry",
    "cf-ipcity",
    "cloudfront-viewer-latitude",
    "cloudfront-viewer-longitude",
    "x-akamai-edgescape",
    "x-geo-lat",
    "x-geo-lon",
    "x-client-lat-long",
]


@given(st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(max_size=40)))
def test_any_header_text_gives_a_valid_location_or_none(headers: dict[str, str]) -> None:
    location = location_from_cdn_headers(headers, **FASTLY, **GOOGLE)
    assert location is None or valid_coordinates(location.latitude, location.longitude)
