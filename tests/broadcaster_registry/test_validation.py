"""Validation of what broadcasters send: each bad field is refused with a message naming it."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster_registry.destinations import DestinationPolicy
from broadcaster_registry.model import Load, Registration
from broadcaster_registry.validation import (
    ValidationError,
    parse_name,
    parse_registration,
    parse_state,
    parse_static_entry,
)

ADDRESS = "https://fra-1.example.net"
ADDRESS_RULE = "address: must be an absolute http(s) URL without user info, path, query or fragment"
REGION_RULE = (
    "region: must be 1-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
)
STREAM_ID_CHARACTERS = "A-Z, a-z, 0-9, '.', '_', '~' and '-'"


def _errors(body: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_registration(body)
    return caught.value.errors


# (given, stored): accepted addresses and their normal form
GOOD_ADDRESSES = [
    ("https://fra-1.example.net", "https://fra-1.example.net"),
    ("HTTPS://Fra-1.Example.NET/", "https://fra-1.example.net"),
    ("http://10.0.0.7:8935", "http://10.0.0.7:8935"),
    ("https://fra-1.example.net:443", "https://fra-1.example.net"),
    ("http://fra-1.example.net:80/", "http://fra-1.example.net"),
    ("http://fra-1.example.net:443", "http://fra-1.example.net:443"),
    ("http://[2001:DB8:0:0::1]:8935", "http://[2001:db8::1]:8935"),
    ("http://localhost:8935", "http://localhost:8935"),
]


# Normalisation only: where broadcasters may be is tests/broadcaster_registry/test_destinations.py.
ANYWHERE = DestinationPolicy.build(["0.0.0.0/0", "::/0"])


@pytest.mark.parametrize("given, stored", GOOD_ADDRESSES)
def test_good_addresses_are_normalised(given: str, stored: str) -> None:
    assert parse_registration({"address": given}, ANYWHERE).address == stored


def test_an_address_the_destinations_refuse_is_refused_naming_the_field_and_why() -> None:
    errors = _errors({"address": "http://127.0.0.1:6379", "region": "EU"})
    assert errors == [
        "address: 127.0.0.1 is a loopback address; broadcasters may not be there unless the operator "
        "allows it (broadcaster_networks)",
        REGION_RULE,
    ]
    with pytest.raises(ValidationError, match="address: 169.254.169.254 is a link-local"):
        parse_static_entry({"name": "meta", "address": "http://169.254.169.254"})


BAD_ADDRESSES = [
    "ftp://fra-1.example.net",  # not http(s)
    "fra-1.example.net",  # relative
    "/live",  # relative
    "//fra-1.example.net",  # no scheme
    "http:/fra-1.example.net",  # no host
    "http://",  # no host
    "http://user:secret@fra-1.example.net",  # user info
    "http://user@fra-1.example.net",  # user info
    "http://fra-1.example.net/live",  # path
    "http://fra-1.example.net//",  # path
    "http://fra-1.example.net?x=1",  # query
    "http://fra-1.example.net/?",  # empty query
    "http://fra-1.example.net#top",  # fragment
    "http://fra-1.example.net#",  # empty fragment
    "http://fra-1.example.net:0",  # port 0
    "http://fra-1.example.net:65536",  # port too large
    "http://fra-1.example.net:",  # empty port
    "http://fra-1.example.net:8o",  # not a port
    "http://fra 1.example.net",  # space
    "http://fra-1.example.net\n",  # urlsplit would strip it silently
    "http://fra-1.example.net\\@evil.example",  # backslash
    "http://256.1.1.1",  # not an IPv4 address
    "http://-fra.example.net",  # label starting with '-'
    "http://fra_1.example.net",  # underscore
    "http://fra-1.example.net.",  # trailing dot
    "http://[::1%25eth0]",  # IPv6 zone id
    "http://[zz::1]",  # not IPv6
    "http://[::1",  # unclosed bracket
    "http://bücher.example",  # not ASCII (IDNs come punycoded)
    "",
    42,
    True,
    ["https://fra-1.example.net"],
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_addresses_are_refused(address: Any) -> None:
    assert _errors({"address": address}) == [ADDRESS_RULE]


# (case, body, expected errors)
BAD_BODIES = [
    ("not an object", ["address", ADDRESS], ["body: must be a JSON object"]),
    ("no address", {}, ["address: is required"]),
    ("null address", {"address": None}, ["address: is required"]),
    ("unknown field", {"address": ADDRESS, "url": "x"}, ["url: unknown field"]),
    (
        "snake_case is not our JSON",
        {"address": ADDRESS, "load": {"active_streams": 1}},
        ["load.active_streams: unknown field"],
    ),
    (
        "latitude above 90",
        {"address": ADDRESS, "latitude": 90.5, "longitude": 0},
        ["latitude: must be a number between -90 and 90"],
    ),
    (
        "latitude below -90",
        {"address": ADDRESS, "latitude": -91, "longitude": 0},
        ["latitude: must be a number between -90 and 90"],
    ),
    (
        "longitude above 180",
        {"address": ADDRESS, "latitude": 0, "longitude": 180.01},
        ["longitude: must be a number between -180 and 180"],
    ),
    (
        "latitude as text",
        {"address": ADDRESS, "latitude": "50.1", "longitude": 8},
        ["latitude: must be a number between -90 and 90"],
    ),
    (
        "boolean is not a number",
        {"address": ADDRESS, "latitude": True, "longitude": 8},
        ["latitude: must be a number between -90 and 90"],
    ),
    (
        "NaN",
        {"address": ADDRESS, "latitude": float("nan"), "longitude": 8},
        ["latitude: must be a number between -90 and 90"],
    ),
    (
        "infinity",
        {"address": ADDRESS, "latitude": 0, "longitude": float("inf")},
        ["longitude: must be a number between -180 and 180"],
    ),
    (
        "latitude without longitude",
        {"address": ADDRESS, "latitude": 50.1},
        ["longitude: is required when latitude is given"],
    ),
    (
        "longitude without latitude",
        {"address": ADDRESS, "longitude": 8.7},
        ["latitude: is required when longitude is given"],
    ),
    ("capacity 0", {"address": ADDRESS, "capacity": 0}, ["capacity: must be an integer >= 1"]),
    ("capacity 1.5", {"address": ADDRESS, "capacity": 1.5}, ["capacity: must be an integer >= 1"]),
    (
        "capacity as text",
        {"address": ADDRESS, "capacity": "10"},
        ["capacity: must be an integer >= 1"],
    ),
    (
        "capacity true",
        {"address": ADDRESS, "capacity": True},
        ["capacity: must be an integer >= 1"],
    ),
    (
        "capacity beyond floats",
        {"address": ADDRESS, "capacity": 10**400},
        ["capacity: must be an integer >= 1"],
    ),
    (
        "region with spaces",
        {"address": ADDRESS, "region": "EU West"},
        [REGION_RULE],
    ),
    (
        "region as number",
        {"address": ADDRESS, "region": 5},
        [REGION_RULE],
    ),
    ("load not an object", {"address": ADDRESS, "load": [1]}, ["load: must be a JSON object"]),
    (
        "cpu above 1",
        {"address": ADDRESS, "load": {"cpu": 1.5}},
        ["load.cpu: must be a number between 0 and 1"],
    ),
    (
        "negative streams",
        {"address": ADDRESS, "load": {"activeStreams": -1}},
        ["load.activeStreams: must be an integer >= 0"],
    ),
    (
        "negative bandwidth",
        {"address": ADDRESS, "load": {"bandwidthBps": -1}},
        ["load.bandwidthBps: must be a number >= 0"],
    ),
    (
        "zero bandwidth capacity",
        {"address": ADDRESS, "load": {"bandwidthCapacityBps": 0}},
        ["load.bandwidthCapacityBps: must be a number greater than 0"],
    ),
    (
        "streams not a list",
        {"address": ADDRESS, "streams": "abc"},
        ["streams: must be an array of stream ids"],
    ),
    (
        "bad stream ids",
        {"address": ADDRESS, "streams": ["ok-1", 7, "a/b", "..", ""]},
        [
            f"streams[{i}]: must be a stream id: 1-128 characters of {STREAM_ID_CHARACTERS}"
            for i in (1, 2, 3, 4)
        ],
    ),
    (
        "every problem at once",
        {"address": "ftp://x", "latitude": 100, "longitude": 0, "capacity": -1, "x": 1},
        [
            "x: unknown field",
            ADDRESS_RULE,
            "latitude: must be a number between -90 and 90",
            "capacity: must be an integer >= 1",
        ],
    ),
]


@pytest.mark.parametrize(
    "body, expected", [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_bodies_are_refused_naming_each_field(body: Any, expected: list[str]) -> None:
    assert _errors(body) == expected


def test_a_full_body() -> None:
    body = {
        "address": "https://fra-1.example.net:8935/",
        "region": "eu-central",
        "latitude": 50,  # integers are numbers too
        "longitude": 8.68,
        "capacity": 40.0,  # JSON has one number type: 40.0 is an integer
        "load": {
            "activeStreams": 3,
            "cpu": 0.25,
            "bandwidthBps": 1e8,
            "bandwidthCapacityBps": 10**9,
        },
        "streams": ["a1b2", "c3d4", "a1b2"],
    }
    assert parse_registration(body) == Registration(
        address="https://fra-1.example.net:8935",
        region="eu-central",
        latitude=50.0,
        longitude=8.68,
        capacity=40,
        load=Load(active_streams=3, cpu=0.25, bandwidth_bps=1e8, bandwidth_capacity_bps=1e9),
        streams=frozenset({"a1b2", "c3d4"}),
    )


def test_null_means_not_reported() -> None:
    body = {
        "address": ADDRESS,
        "region": None,
        "latitude": None,
        "longitude": None,
        "capacity": None,
        "load": None,
        "streams": None,
    }
    assert parse_registration(body) == Registration(address=ADDRESS)


# (name, valid?)
NAMES = [
    ("fra-1", True),
    ("a", True),
    ("0", True),
    ("a" * 63, True),
    ("a" * 64, False),
    ("", False),
    ("Fra-1", False),
    ("-fra", False),
    ("fra-", False),
    ("fra_1", False),
    ("fra.1", False),
    ("fra/1", False),
    (None, False),
    (1, False),
]


@pytest.mark.parametrize("name, valid", NAMES)
def test_names_are_dns_labels(name: Any, valid: bool) -> None:
    if valid:
        assert parse_name(name) == name
    else:
        with pytest.raises(ValidationError) as caught:
            parse_name(name)
        assert caught.value.errors == [
            "name: must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
        ]


def test_static_entries_carry_their_name() -> None:
    assert parse_static_entry({"name": "fra-1", "address": ADDRESS, "region": "eu"}) == (
        "fra-1",
        Registration(address=ADDRESS, region="eu"),
    )
    with pytest.raises(ValidationError) as caught:
        parse_static_entry({"address": "ftp://x", "extra": 1})
    assert caught.value.errors == [
        "extra: unknown field",
        "name: is required",
        ADDRESS_RULE,
    ]


@pytest.mark.parametrize("state", ["active", "draining"])
def test_states(state: str) -> None:
    assert parse_state(state) == state


@pytest.mark.parametrize("state", ["drain", "ACTIVE", None, 1, ["active"]])
def test_bad_states(state: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_state(state)
    assert caught.value.errors == ['state: must be "active" or "draining"']
