"""Trusted proxy ranges and the client-address walk, including attempts to spoof it."""

from __future__ import annotations

import pytest

from geo.proxies import TrustedProxies, client_address

# An internal load balancer range, a Cloudflare range and an IPv6 range of our own.
TRUSTED = TrustedProxies(["10.0.0.0/8", "173.245.48.0/20", "2001:db8:cafe::/48"])

LB = "10.0.0.1"  # a trusted peer
ATTACKER = "198.51.100.66"  # an untrusted peer
CLIENT = "203.0.113.9"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.1.2.3", True),
        ("173.245.63.255", True),
        ("173.245.64.0", False),
        ("11.0.0.1", False),
        ("::ffff:10.1.2.3", True),  # dual-stack socket reporting an IPv4 peer
        ("2001:db8:cafe:1::1", True),
        ("[2001:db8:cafe::1]", True),
        ("2001:db8:caff::1", False),
        ("::ffff:11.0.0.1", False),
        ("garbage", False),
        ("", False),
        ("testclient", False),  # what Starlette's TestClient reports as the peer
    ],
)
def test_contains(ip: str, expected: bool) -> None:
    assert TRUSTED.contains(ip) is expected


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not-a-network", "10.0.0.1/8", "", "2001:db8::/129"])
def test_bad_entry_is_named_in_the_error(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid trusted proxy entry") as error:
        TrustedProxies(["192.0.2.0/24", entry])
    assert repr(entry) in str(error.value)


def test_a_single_string_is_refused_rather_than_read_per_character() -> None:
    with pytest.raises(TypeError):
        TrustedProxies("10.0.0.0/8")  # type: ignore[arg-type]


def test_a_bare_address_trusts_that_host_only() -> None:
    proxies = TrustedProxies(["192.0.2.10", "2001:db8::10"])
    assert proxies.contains("192.0.2.10") and proxies.contains("2001:db8::10")
    assert not proxies.contains("192.0.2.11") and not proxies.contains("2001:db8::11")


def test_no_ranges_trusts_nothing() -> None:
    proxies = TrustedProxies([])
    assert not proxies.contains("127.0.0.1")
    assert client_address("127.0.0.1", {"cf-connecting-ip": CLIENT}, proxies) == "127.0.0.1"


def test_equal_when_built_from_the_same_ranges() -> None:
    assert TrustedProxies(["10.0.0.0/8"]) == TrustedProxies((" 10.0.0.0/8 ",))
    assert hash(TrustedProxies(["10.0.0.0/8"])) == hash(TrustedProxies(["10.0.0.0/8"]))


SPOOFING_HEADERS = [
    {"x-forwarded-for": CLIENT},
    {"cf-connecting-ip": CLIENT},
    {"cloudfront-viewer-address": f"{CLIENT}:443"},
    {"x-forwarded-for": f"{CLIENT}, {LB}"},
    {"cf-connecting-ip": CLIENT, "cloudfront-viewer-address": f"{CLIENT}:1", "x-forwarded-for": CLIENT},
]


@pytest.mark.parametrize("headers", SPOOFING_HEADERS)
@pytest.mark.parametrize("peer", [ATTACKER, "2001:db8:beef::66", "::ffff:198.51.100.66"])
def test_untrusted_peer_cannot_choose_its_address(peer: str, headers: dict[str, str]) -> None:
    assert client_address(peer, headers, TRUSTED) == peer


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        pytest.param(LB, {}, LB, id="no-headers"),
        pytest.param(LB, {"cf-connecting-ip": CLIENT}, CLIENT, id="cf"),
        pytest.param(LB, {"cf-connecting-ip": " 2001:DB8::1 "}, "2001:db8::1", id="cf-ipv6-canonical"),
        pytest.param("::ffff:10.0.0.1", {"cf-connecting-ip": CLIENT}, CLIENT, id="mapped-peer"),
        pytest.param("2001:db8:cafe::2", {"cf-connecting-ip": CLIENT}, CLIENT, id="ipv6-peer"),
        pytest.param(
            LB,
            {"cf-connecting-ip": "1.1.1.1", "cloudfront-viewer-address": f"{CLIENT}:443"},
            "1.1.1.1",
            id="cf-before-cloudfront",
        ),
        pytest.param(LB, {"cloudfront-viewer-address": f"{CLIENT}:443"}, CLIENT, id="cloudfront-v4"),
        pytest.param(
            LB,
            {"cloudfront-viewer-address": "2001:db8:1::7:46532"},
            "2001:db8:1::7",
            id="cloudfront-v6-last-colon",
        ),
        pytest.param(
            LB,
            {"cloudfront-viewer-address": "2001:db8:1:0:0:0:0:7:443"},
            "2001:db8:1::7",
            id="cloudfront-v6-full-form",
        ),
        pytest.param(
            LB, {"cloudfront-viewer-address": "[2001:db8::7]:443"}, "2001:db8::7", id="cloudfront-v6-bracketed"
        ),
        pytest.param(
            LB,
            {"cf-connecting-ip": "unknown", "cloudfront-viewer-address": f"{CLIENT}:443"},
            CLIENT,
            id="invalid-cf-falls-through",
        ),
        pytest.param(LB, {"cloudfront-viewer-address": CLIENT}, LB, id="cloudfront-without-port"),
        pytest.param(LB, {"cloudfront-viewer-address": f"{CLIENT}:https"}, LB, id="cloudfront-bad-port"),
        pytest.param(LB, {"cloudfront-viewer-address": ":443"}, LB, id="cloudfront-no-host"),
        pytest.param(LB, {"x-forwarded-for": CLIENT}, CLIENT, id="xff-single"),
        pytest.param(
            LB,
            {"x-forwarded-for": f"6.6.6.6, {CLIENT}, 10.0.0.2"},
            CLIENT,
            id="xff-ignores-what-the-client-wrote",
        ),
        pytest.param(
            LB, {"x-forwarded-for": f"{CLIENT},173.245.48.1,10.9.9.9"}, CLIENT, id="xff-skips-trusted-hops"
        ),
        pytest.param(
            LB, {"x-forwarded-for": f"{CLIENT}, ::ffff:10.0.0.2"}, CLIENT, id="xff-mapped-trusted-hop"
        ),
        pytest.param(LB, {"x-forwarded-for": "10.0.0.5, 10.0.0.2"}, "10.0.0.5", id="xff-all-trusted-leftmost"),
        pytest.param(LB, {"x-forwarded-for": "[2001:db8::9]"}, "2001:db8::9", id="xff-bracketed-v6"),
        pytest.param(LB, {"x-forwarded-for": f"garbage, {CLIENT}"}, CLIENT, id="xff-garbage-left-of-client"),
        pytest.param(
            LB, {"x-forwarded-for": "6.6.6.6, garbage, 10.0.0.2"}, LB, id="xff-garbage-at-client-position"
        ),
        pytest.param(LB, {"x-forwarded-for": f"{CLIENT}, "}, LB, id="xff-empty-hop"),
        pytest.param(LB, {"x-forwarded-for": ""}, LB, id="xff-empty"),
        pytest.param(
            LB,
            {"cf-connecting-ip": "", "cloudfront-viewer-address": "x:1", "x-forwarded-for": "nope"},
            LB,
            id="all-invalid-peer",
        ),
    ],
)
def test_trusted_peer_walk(peer: str, headers: dict[str, str], expected: str) -> None:
    assert client_address(peer, headers, TRUSTED) == expected


def test_peer_that_is_not_an_address_is_returned_unchanged() -> None:
    assert client_address("testclient", {"cf-connecting-ip": CLIENT}, TRUSTED) == "testclient"
