"""Client locations that CDNs put in request headers (Cloudflare, CloudFront, Akamai, custom).

Only meaningful when the direct peer is a trusted proxy; the caller checks that. A header that is
missing, malformed or out of range is skipped and the next source is tried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from geo.location import Location, checked_location, parse_degrees

Headers = Mapping[str, str]
"""Request headers with lower-case names."""


def location_from_cdn_headers(
    headers: Headers,
    *,
    custom_lat_header: str | None = None,
    custom_lon_header: str | None = None,
    custom_latlon_header: str | None = None,
) -> Location | None:
    """The first usable location in: Cloudflare, CloudFront, Akamai, then the custom headers.

    Custom headers are for CDNs where geo data is put in headers you name yourself: Fastly (VCL
    copies client.geo.latitude / longitude into two headers) or Google Cloud load balancers (one
    header holding "{client_city_lat_long}", i.e. "lat,long"). The separate pair is tried before
    the combined header.
    """
    readers: tuple[Callable[[Headers], Location | None], ...] = (
        _cloudflare,
        _cloudfront,
        _akamai,
    )
    for read in readers:
        location = read(headers)
        if location is not None:
            return location
    if custom_lat_header and custom_lon_header:
        location = checked_location(
            parse_degrees(headers.get(custom_lat_header.lower())),
            parse_degrees(headers.get(custom_lon_header.lower())),
            source="custom-headers",
        )
        if location is not None:
            return location
    if custom_latlon_header:
        return _combined_lat_long(headers.get(custom_latlon_header.lower()))
    return None


def _cloudflare(headers: Headers) -> Location | None:
    # Sent with the "Add visitor location headers" managed transform.
    return checked_location(
        parse_degrees(headers.get("cf-iplatitude")),
        parse_degrees(headers.get("cf-iplongitude")),
        country=headers.get("cf-ipcountry"),
        city=headers.get("cf-ipcity"),
        source="cf-headers",
    )


def _cloudfront(headers: Headers) -> Location | None:
    # Sent when the distribution's origin request policy forwards the viewer location headers.
    return checked_location(
        parse_degrees(headers.get("cloudfront-viewer-latitude")),
        parse_degrees(headers.get("cloudfront-viewer-longitude")),
        country=headers.get("cloudfront-viewer-country"),
        city=headers.get("cloudfront-viewer-city"),
        source="cloudfront-headers",
    )


def _akamai(headers: Headers) -> Location | None:
    # "georegion=246,country_code=US,city=SANJOSE,lat=37.3394,long=-121.8950,..."
    value = headers.get("x-akamai-edgescape")
    if value is None:
        return None
    fields: dict[str, str] = {}
    for item in value.split(","):
        key, equals, field_value = item.partition("=")
        if equals:
            # First occurrence wins: a repeated key is malformed, not an update.
            fields.setdefault(key.strip().lower(), field_value)
    return checked_location(
        parse_degrees(fields.get("lat")),
        parse_degrees(fields.get("long")),
        country=fields.get("country_code"),
        city=fields.get("city"),
        source="akamai",
    )


def _combined_lat_long(value: str | None) -> Location | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2:
        return None
    return checked_location(
        parse_degrees(parts[0]), parse_degrees(parts[1]), source="custom-headers"
    )
