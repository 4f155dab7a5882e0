"""Who is the client behind our proxies: trusted proxy ranges and the walk of forwarding headers.

Forwarding headers are only believed when the direct peer is a proxy we trust; anyone else could
write them, so from an untrusted peer the client is the peer and no header is read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping

from geo.addresses import IPAddress, parse_ip

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The address ranges (IPv4 and IPv6) of the proxies and CDNs whose headers we believe.

    Built once at start-up from CIDR strings ("10.0.0.0/8", "2400:cb00::/32"; a bare address
    means that one host). Immutable afterwards.
    """

    __slots__ = ("_networks",)

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        # A lone string is iterable too: "10.0.0.0/8" would be read character by character.
        if isinstance(cidrs, str):
            raise TypeError("TrustedProxies takes a list of CIDR strings, not a single string")
        self._networks: tuple[IPNetwork, ...] = tuple(_parse_network(entry) for entry in cidrs)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return self._networks

    def contains(self, ip: str) -> bool:
        """True if `ip` is a valid address inside one of the trusted ranges."""
        address = parse_ip(ip)
        return address is not None and self.trusts(address)

    def trusts(self, address: IPAddress) -> bool:
        """Like contains(), for an address already parsed with geo.addresses.parse_ip."""
        # Membership across IP versions is simply False, so one loop serves both families.
        return any(address in network for network in self._networks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustedProxies) and self._networks == other._networks

    def __hash__(self) -> int:
        return hash(self._networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(network) for network in self._networks]!r})"


def _parse_network(entry: str) -> IPNetwork:
    try:
        # strict: "10.0.0.1/8" is more likely a typo than a wish to trust all of 10/8.
        return ipaddress.ip_network(entry.strip(), strict=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"invalid trusted proxy entry {entry!r}: {exc}") from None


def client_address(peer: str, headers: Mapping[str, str], trusted: TrustedProxies) -> str:
    """The address of the client, given the direct peer, the request headers and our proxies.

    `headers` has lower-case names; a header sent several times must be joined with "," in the
    order received (what HTTP says they mean), or the X-Forwarded-For walk sees only one part.

    From an untrusted peer: the peer, unchanged. From a trusted one, the first valid of:
    CF-Connecting-IP, CloudFront-Viewer-Address, X-Forwarded-For walked right to left over
    trusted hops; otherwise the peer. Header-derived addresses come back in canonical form.
    """
    peer_address = parse_ip(peer)
    if peer_address is None or not trusted.trusts(peer_address):
        return peer
    for address in _addresses_from_headers(headers, trusted):
        if address is not None:
            return str(address)
    return peer


def _addresses_from_headers(
    headers: Mapping[str, str], trusted: TrustedProxies
) -> Iterator[IPAddress | None]:
    # In order of trust, and lazily: a later header is not even parsed once one has answered.
    yield parse_ip(headers.get("cf-connecting-ip"))
    yield _cloudfront_viewer_ip(headers.get("cloudfront-viewer-address"))
    yield _forwarded_for_client(headers.get("x-forwarded-for"), trusted)


def _cloudfront_viewer_ip(value: str | None) -> IPAddress | None:
    # "IP:port", IPv6 not bracketed ("2001:db8::1:443"), so the port is after the LAST colon.
    # The whole value must not be tried as an address: that IPv6 example is a valid one too.
    if value is None:
        return None
    host, colon, port = value.strip().rpartition(":")
    if not colon or not port.isascii() or not port.isdigit():
        return None
    return parse_ip(host)


def _forwarded_for_client(value: str | None, trusted: TrustedProxies) -> IPAddress | None:
    # Each proxy appends the address it received from, so the right end was written by our
    # proxies and everything left of the first untrusted hop was written by the client itself.
    if value is None:
        return None
    hops = value.split(",")
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            # Garbage where the client's address should be: believing anything further left
            # would mean believing the client, so this header tells us nothing.
            return None
        if not trusted.trusts(address):
            return address
    # Every hop is one of ours: the client is itself a trusted host (uvicorn does the same).
    return parse_ip(hops[0])
