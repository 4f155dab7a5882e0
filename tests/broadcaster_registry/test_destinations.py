"""Where broadcasters may be: the default refuses every address that is not public unicast, in
every spelling, and the operator's allowances open exactly what they name."""

from __future__ import annotations

import ipaddress

import pytest

from broadcaster_registry.destinations import DEFAULT_DESTINATIONS, DestinationPolicy, host_of

LOOPBACK = DestinationPolicy.build(["127.0.0.0/8", "::1/128"])
PRIVATE_FLEET = DestinationPolicy.build(["10.0.0.0/8"])
OUR_NAMES = DestinationPolicy.build([], ["*.fleet.example.net", "203.0.113.7"])

# (address, policy, refused because ... or None when allowed)
CASES = [
    ("https://fra-1.example.net:8935", DEFAULT_DESTINATIONS, None),
    ("http://8.8.8.8", DEFAULT_DESTINATIONS, None),
    ("http://[2001:4860:4860::8888]", DEFAULT_DESTINATIONS, None),
    # the reproductions
    ("http://127.0.0.1:6379", DEFAULT_DESTINATIONS, "loopback"),
    ("http://169.254.169.254", DEFAULT_DESTINATIONS, "link-local"),
    ("http://metadata.google.internal", DEFAULT_DESTINATIONS, "cloud metadata"),
    ("http://localhost:8935", DEFAULT_DESTINATIONS, "loopback name"),
    ("http://[::ffff:127.0.0.1]:8935", DEFAULT_DESTINATIONS, "embeds 127.0.0.1, a loopback"),
    ("http://0.0.0.0:8935", DEFAULT_DESTINATIONS, "unspecified"),
    ("http://10.0.0.7:8935", DEFAULT_DESTINATIONS, "private"),
    ("http://192.168.1.1", DEFAULT_DESTINATIONS, "private"),
    ("http://172.16.0.1", DEFAULT_DESTINATIONS, "private"),
    # other spellings and neighbours
    ("http://[::1]", DEFAULT_DESTINATIONS, "loopback"),
    ("http://[::]", DEFAULT_DESTINATIONS, "unspecified"),
    ("http://[fe80::1]", DEFAULT_DESTINATIONS, "link-local"),
    ("http://[fd00::1]", DEFAULT_DESTINATIONS, "private"),
    ("http://[::127.0.0.1]", DEFAULT_DESTINATIONS, "embeds 127.0.0.1"),
    ("http://[::ffff:a9fe:a9fe]", DEFAULT_DESTINATIONS, "embeds 169.254.169.254"),
    ("http://[2002:7f00:1::]", DEFAULT_DESTINATIONS, "embeds 127.0.0.1"),  # 6to4
    ("http://[64:ff9b::a00:7]", DEFAULT_DESTINATIONS, "embeds 10.0.0.7"),  # NAT64
    ("http://100.100.100.200", DEFAULT_DESTINATIONS, "shared"),  # Alibaba's metadata
    ("http://224.0.0.1", DEFAULT_DESTINATIONS, "multicast"),
    ("http://[ff02::1]", DEFAULT_DESTINATIONS, "multicast"),
    ("http://240.0.0.1", DEFAULT_DESTINATIONS, "reserved"),
    ("http://255.255.255.255", DEFAULT_DESTINATIONS, "reserved"),
    ("http://192.0.2.1", DEFAULT_DESTINATIONS, "private"),  # documentation range
    ("http://metadata", DEFAULT_DESTINATIONS, "cloud metadata"),
    ("http://instance-data", DEFAULT_DESTINATIONS, "cloud metadata"),
    ("http://b1.localhost", DEFAULT_DESTINATIONS, "loopback name"),
    # allowances open what they name, and only that
    ("http://127.0.0.1:8935", LOOPBACK, None),
    ("http://localhost:8935", LOOPBACK, None),
    ("http://[::1]:8935", LOOPBACK, None),
    ("http://[::ffff:127.0.0.1]:8935", LOOPBACK, None),
    ("http://169.254.169.254", LOOPBACK, "link-local"),
    ("http://metadata.google.internal", LOOPBACK, "cloud metadata"),
    ("http://10.0.0.7:8935", PRIVATE_FLEET, None),
    ("http://10.0.0.7:8935", LOOPBACK, "private"),
    ("http://127.0.0.1", PRIVATE_FLEET, "loopback"),
    # host patterns: the host as written must match one
    ("https://fra-1.fleet.example.net", OUR_NAMES, None),
    ("https://a.b.fleet.example.net", OUR_NAMES, None),
    ("http://203.0.113.7", OUR_NAMES, "private"),  # matched, and still judged as an address
    ("https://fleet.example.net.evil.net", OUR_NAMES, "matches none"),
    ("http://8.8.8.8", OUR_NAMES, "matches none"),
    ("http://metadata.google.internal", DestinationPolicy.build([], ["metadata.google.internal"]), None),
    ("http://metadata.google.internal", DestinationPolicy.build([], ["*.internal"]), "cloud metadata"),
]


@pytest.mark.parametrize("address, policy, refused", CASES)
def test_where_broadcasters_may_be(address: str, policy: DestinationPolicy, refused: str | None) -> None:
    reason = policy.refuse_address(address)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_resolved_addresses_are_judged_alike() -> None:
    assert DEFAULT_DESTINATIONS.refuse_ip(ipaddress.ip_address("127.0.0.53")) == "127.0.0.53 is a loopback address"
    assert LOOPBACK.refuse_ip(ipaddress.ip_address("127.0.0.53")) is None
    assert DEFAULT_DESTINATIONS.refuse_ip(ipaddress.ip_address("93.184.216.34")) is None


@pytest.mark.parametrize("address, host", [
    ("https://fra-1.example.net:8935", "fra-1.example.net"),
    ("http://[2001:db8::1]:8935", "[2001:db8::1]"),
    ("http://[::1]", "[::1]"),
    ("http://10.0.0.7", "10.0.0.7"),
])
def test_host_of_a_normalised_address(address: str, host: str) -> None:
    assert host_of(address) == host


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match="'10.0.0.1/8' is not a network"):
        DestinationPolicy.build(["10.0.0.1/8"])
