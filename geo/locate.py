"""Where is this client: the order in which the geolocation sources are believed.

A thin composition of the proxy walk, the CDN geo headers and a city database, with no I/O of
its own beyond the database read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cachetools import LRUCache

from geo.cdn_headers import location_from_cdn_headers
from geo.location import Location
from geo.proxies import TrustedProxies, client_address


class CityLookup(Protocol):
    """What locate needs of a city database (geo.database.CityDatabase, or a fake in tests)."""

    def lookup(self, ip: str) -> Location | None: ...


@dataclass(frozen=True, slots=True)
class GeoPolicy:
    """Which peers are believed, and which custom headers (Fastly, Google Cloud) carry geo data.

    Header names are matched case-insensitively. A latitude header without a longitude header
    (or the reverse) is a configuration error, reported when the policy is built.
    """

    trusted_proxies: TrustedProxies
    custom_lat_header: str | None = None
    custom_lon_header: str | None = None
    custom_latlon_header: str | None = None

    def __post_init__(self) -> None:
        if bool(self.custom_lat_header) != bool(self.custom_lon_header):
            raise ValueError(
                "custom_lat_header and custom_lon_header must be set together "
                f"(got {self.custom_lat_header!r} and {self.custom_lon_header!r})"
            )


def locate(
    peer: str,
    headers: Mapping[str, str],
    policy: GeoPolicy,
    database: CityLookup | None,
) -> Location | None:
    """The client's location, or None when no source knows it.

    From a trusted peer: the CDN geo headers, then the client address (see
    geo.proxies.client_address) in the database. From any other peer: only the peer address in
    the database; its headers are never read, since anyone can write them.
    """
    if policy.trusted_proxies.contains(peer):
        location = location_from_cdn_headers(
            headers,
            custom_lat_header=policy.custom_lat_header,
            custom_lon_header=policy.custom_lon_header,
            custom_latlon_header=policy.custom_latlon_header,
        )
        if location is not None:
            return location
    if database is None:
        return None
    # client_address itself returns the untrusted peer untouched, without reading any header.
    return database.lookup(client_address(peer, headers, policy.trusted_proxies))


class LocationCache:
    """`locate` remembered per (peer, headers): the same ingest asks again and again from the same
    address through the same proxies, and the answer depends on nothing else (the database is
    opened once). `Authorization` is left out of the key, so no credential is kept here."""

    def __init__(self, policy: GeoPolicy, maxsize: int = 65536) -> None:
        self.policy = policy
        self._known: LRUCache[tuple[object, ...], Location | None] = LRUCache(maxsize=maxsize)

    def locate(self, peer: str, headers: Mapping[str, str], database: CityLookup | None) -> Location | None:
        key = (peer, id(database), *(item for item in headers.items() if item[0] != "authorization"))
        try:
            return self._known[key]
        except KeyError:
            location = self._known[key] = locate(peer, headers, self.policy, database)
            return location
