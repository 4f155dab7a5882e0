"""Parsing IP address text from sockets and headers into one canonical form.

Shared by the trusted-proxy walk and the city database so both agree on what an address is.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str | None) -> IPAddress | None:
    """The address in `text`, or None if it is not exactly one IP address.

    Surrounding blanks and IPv6 brackets ("[2001:db8::1]") are accepted. An IPv4-mapped IPv6
    address ("::ffff:192.0.2.1", what a dual-stack socket reports for an IPv4 peer) becomes the
    IPv4 address, so that IPv4 trust ranges and IPv4 database entries apply to it.
    """
    if text is None:
        return None
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
