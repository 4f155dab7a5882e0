"""Where is this client? Trusted-proxy walk, CDN geo headers, city databases, great-circle distance.

The lowest layer: plain values in, plain values out; it imports nothing from edge or
broadcaster_registry and no web framework objects.
"""

from geo.addresses import IPAddress, parse_ip
from geo.cdn_headers import location_from_cdn_headers
from geo.database import (
    DEFAULT_CACHE_SIZE,
    EMBEDDED_DATABASE_ATTRIBUTION,
    CacheStats,
    CityDatabase,
    DatabaseInfo,
    embedded_database_path,
)
from geo.distance import EARTH_RADIUS_KM, LatLon, distance_km
from geo.locate import CityLookup, GeoPolicy, locate
from geo.location import Location, checked_location, parse_degrees, valid_coordinates
from geo.proxies import TrustedProxies, client_address

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "EARTH_RADIUS_KM",
    "EMBEDDED_DATABASE_ATTRIBUTION",
    "CacheStats",
    "CityDatabase",
    "CityLookup",
    "DatabaseInfo",
    "GeoPolicy",
    "IPAddress",
    "LatLon",
    "Location",
    "TrustedProxies",
    "checked_location",
    "client_address",
    "distance_km",
    "embedded_database_path",
    "locate",
    "location_from_cdn_headers",
    "parse_degrees",
    "parse_ip",
    "valid_coordinates",
]
