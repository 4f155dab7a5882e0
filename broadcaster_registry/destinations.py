"""Where the edge may connect to a broadcaster: the rules that keep a registered address from
pointing the edge at itself, its neighbours or a cloud metadata service (SSRF).

Pure decisions over addresses and host names. The same policy judges an address when it is
registered (its literal host) and, in edge/upstream.py, every address a name resolves to right
before the edge connects: a name may resolve elsewhere later.

By default only globally routable unicast addresses are allowed. Loopback, link-local (where cloud
metadata services answer), unspecified, private, shared (CGNAT), multicast and reserved addresses,
IPv6 forms that embed one of those IPv4 addresses, `localhost` names and metadata names are
refused unless the operator allows their networks (or, for a metadata name, lists it literally).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from geo.addresses import IPAddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that reach a cloud provider's instance metadata (credentials, user data) from inside it.
# Refused even when their addresses are allowed: a fleet on private networks must not be one
# typo away from its metadata service. Allowed only when listed literally in the host patterns.
METADATA_NAMES = frozenset({
    "metadata",  # GCE's short name (search domain)
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",  # AWS
    "instance-data.ec2.internal",
    "metadata.azure.internal",
    "metadata.platformequinix.com",
})

# IPv6 prefixes that carry an IPv4 address in their low 32 bits (NAT64, RFC 6052 and RFC 8215):
# a gateway translating them would connect to that IPv4 address.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")

_SETTING_HINT = "unless the operator allows it (broadcaster_networks)"


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs ("10.0.0.0/8", "::1/128"; a bare address is that one host), or ValueError naming the
    entry. Strict: "10.0.0.1/8" is more likely a typo than a wish to allow all of 10/8."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a network: {exc}") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Allowed networks beyond the public internet, and host patterns an address must match.

    `hosts` empty: any host name (or public address) will do; otherwise the host as written in
    the address (a name, or an IP literal) must match one of the patterns ("*.fleet.example.net",
    "fra-1.example.net", "203.0.113.7"), compared in lower case.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def build(cls, networks: Iterable[str] = (), hosts: Iterable[str] = ()) -> DestinationPolicy:
        patterns = tuple(h.strip().lower() for h in hosts if h.strip())
        return cls(parse_networks(networks), patterns)

    def refuse_ip(self, ip: IPAddress) -> str | None:
        """Why the edge may not connect to `ip`, or None when it may."""
        if any(ip in network for network in self.networks):
            return None
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            if any(embedded in network for network in self.networks):
                return None
            reason = _kind(embedded)
            return f"{ip} embeds {embedded}, {reason}" if reason else None
        reason = _kind(ip)
        return f"{ip} is {reason}" if reason else None

    def refuse_host(self, host: str) -> str | None:
        """Why an address whose host is `host` (a normalised name, an IPv4 address or a bracketed
        IPv6 address) may not be registered, or None. Names are judged again, resolved, at fetch time."""
        host = host.lower()
        if self.hosts and not any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts):
            return f"{host} matches none of the allowed host patterns (broadcaster_hosts)"
        ip = _ip_literal(host)
        if ip is not None:
            reason = self.refuse_ip(ip)
            return f"{reason}; broadcasters may not be there {_SETTING_HINT}" if reason else None
        if host in METADATA_NAMES and host not in self.hosts:
            return (f"{host} names a cloud metadata service; allowed only when listed literally in "
                    "broadcaster_hosts")
        if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
            if self.refuse_ip(_LOOPBACK_V4) is not None:
                return f"{host} is a loopback name; broadcasters may not be there {_SETTING_HINT}"
        return None

    def refuse_address(self, address: str) -> str | None:
        """`refuse_host` for a normalised origin ("https://fra-1.example.net:8935")."""
        return self.refuse_host(host_of(address))


def host_of(address: str) -> str:
    """The host of a normalised origin (see validation.normalise_address), IPv6 in brackets."""
    netloc = address.partition("://")[2]
    if netloc.startswith("["):
        return netloc[: netloc.index("]") + 1]
    return netloc.partition(":")[0]


def _ip_literal(host: str) -> IPAddress | None:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    6to4 (2002::/16), Teredo, or NAT64."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d; not :: (unspecified) nor ::1 (loopback)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if any(ip in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes `ip` a place the edge must not reach by default, or None for a public unicast address."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    return None


_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598; Alibaba's metadata is 100.100.100.200

DEFAULT_DESTINATIONS = DestinationPolicy()
"""Public unicast addresses only: what a fresh install allows."""
