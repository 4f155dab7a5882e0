"""Every rule a broadcaster's self-description must pass: registration/heartbeat bodies, static
config entries and names, turned into validated values or a ValidationError naming each bad field.

Bodies arrive already decoded from JSON (dicts, lists, str, int, float, bool, None).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, cast
from urllib.parse import urlsplit

from broadcaster_registry.destinations import DEFAULT_DESTINATIONS, DestinationPolicy
from broadcaster_registry.model import STATES, Load, Registration, State
from jsonfields.errors import FieldErrors
from jsonfields.rules import Array, Check, Integer, Nullable, Number, Object, Text

# Bad input; `errors` holds one message per problem, each starting with the field's name. The
# toolkit's error, under the name this package has always raised.
ValidationError = FieldErrors


# A DNS label (RFC 1123), lower case: names may become host names or metric labels, and every
# label of an address's host name follows the same rule.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_NAME_RULE = "must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"

# Regions are operator-chosen tags ("eu-west", "fra", "us-east-1") compared for equality with the
# default region, so one spelling: lower case.
_REGION = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}", re.ASCII)
_REGION_RULE = (
    "must be 1-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
)

# Stream ids end up in URL paths (/stream/<id>/...), so only RFC 3986 unreserved characters, and
# not the dot segments "." and "..". Broadcasters report ids of their own, so no stricter format.
_STREAM_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}", re.ASCII)
_STREAM_ID_RULE = "must be a stream id: 1-128 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'"
_MAX_STREAMS = 10_000  # a node carrying more is a bug or an attack, and the body would be huge

_ADDRESS_RULE = "must be an absolute http(s) URL without user info, path, query or fragment"
_MAX_ADDRESS_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}  # dropped when normalising


def _address(value: Any, path: str) -> str:
    if value is None:
        raise FieldErrors([f"{path}: is required"])
    address = normalise_address(value) if isinstance(value, str) else None
    if address is None:
        raise FieldErrors([f"{path}: {_ADDRESS_RULE}"])
    return address


NAME = Text(pattern=f"^{_DNS_LABEL.pattern}$", message=_NAME_RULE)
STREAM_ID = Text(1, 128, pattern=f"^{_STREAM_ID.pattern}$", reserved=(".", ".."), message=_STREAM_ID_RULE)
STATE = Text(choices=STATES, message='must be "active" or "draining"')
STATE_BODY = Object({"state": STATE}, required=("state",), required_message='must be "active" or "draining"')
LOAD = Object({
    "activeStreams": Nullable(Integer(0, message="must be an integer >= 0")),
    "cpu": Nullable(Number(0, 1, message="must be a number between 0 and 1", doc="share of all cores")),
    "bandwidthBps": Nullable(Number(0, message="must be a number >= 0", doc="egress in use, bit/s")),
    "bandwidthCapacityBps": Nullable(Number(0, exclusive_minimum=True, message="must be a number greater than 0",
                                            doc="egress the node can sustain, bit/s")),
})
# A registration or heartbeat body; null means "not reported".
REGISTRATION_FIELDS: dict[str, Any] = {
    "address": Check(_address, {
        "type": "string", "maxLength": _MAX_ADDRESS_LENGTH, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@ \\\\]+/?$",
        "description": "The broadcaster's origin, where playlists are fetched: " + _ADDRESS_RULE.removeprefix("must be "),
    }),
    "region": Nullable(Text(pattern=f"^{_REGION.pattern}$", message=_REGION_RULE)),
    "latitude": Nullable(Number(-90, 90, message="must be a number between -90 and 90")),
    "longitude": Nullable(Number(-180, 180, message="must be a number between -180 and 180")),
    "capacity": Nullable(Integer(1, message="must be an integer >= 1", doc="streams it can carry")),
    "load": Nullable(LOAD),
    "streams": Nullable(Array(STREAM_ID, _MAX_STREAMS, message="must be an array of stream ids")),
}
REGISTRATION = Object(REGISTRATION_FIELDS, required=("address",), required_message="is required")
STATIC_ENTRY = Object({"name": NAME, **REGISTRATION_FIELDS}, required=("name", "address"),
                      required_message="is required")


def parse_name(value: Any) -> str:
    """A broadcaster name (a path parameter), or ValidationError."""
    return NAME.read(value, "name")


def parse_state(value: Any) -> State:
    """A state to set (drain or reactivate), or ValidationError."""
    return cast(State, STATE.read(value, "state"))


def parse_state_body(body: Any) -> State:
    """The state of a `PUT /api/broadcasters/{name}/state` body, or ValidationError."""
    return cast(State, STATE_BODY.read(body, "")["state"])


def parse_registration(body: Any, destinations: DestinationPolicy = DEFAULT_DESTINATIONS) -> Registration:
    """A registration or heartbeat body, e.g.
    `{"address": "https://fra-1.example.net", "region": "eu", "latitude": 50.11, "longitude": 8.68,
    "capacity": 40, "load": {"activeStreams": 3, "cpu": 0.2}, "streams": ["abc"]}`, at an address
    `destinations` allows.
    """
    return _registration(REGISTRATION, body, destinations)


def parse_static_entry(
    entry: Any, destinations: DestinationPolicy = DEFAULT_DESTINATIONS
) -> tuple[str, Registration]:
    """One broadcaster of the config file's static list: a registration body plus its "name"."""
    registration = _registration(STATIC_ENTRY, entry, destinations)
    return entry["name"], registration


def _registration(rule: Object, body: Any, destinations: DestinationPolicy) -> Registration:
    errors: list[str] = []
    try:
        fields = rule.read(body, "")
    except FieldErrors as exc:
        errors, fields = exc.errors, {}
    address = fields.get("address")  # normalised when valid; read again only to report every problem
    if address is None and isinstance(body, dict) and isinstance(body.get("address"), str):
        address = normalise_address(body["address"])
    refused = destinations.refuse_address(address) if address is not None else None
    if refused is not None:
        errors.insert(0, f"address: {refused}")  # the first field: its problem comes first
    if isinstance(body, dict) and (body.get("latitude") is None) != (body.get("longitude") is None):
        missing = "longitude" if body.get("longitude") is None else "latitude"
        given = "latitude" if missing == "longitude" else "longitude"
        errors.append(f"{missing}: is required when {given} is given")
    if errors:
        raise FieldErrors(errors)
    load = fields.get("load") or {}
    return Registration(
        address=fields["address"],
        region=fields.get("region"),
        latitude=fields.get("latitude"),
        longitude=fields.get("longitude"),
        capacity=fields.get("capacity"),
        load=Load(
            active_streams=load.get("activeStreams"),
            cpu=load.get("cpu"),
            bandwidth_bps=load.get("bandwidthBps"),
            bandwidth_capacity_bps=load.get("bandwidthCapacityBps"),
        ),
        streams=frozenset(fields.get("streams") or ()),
    )


def normalise_address(value: str) -> str | None:
    """The origin `value` names, lower-cased, default port and trailing slash dropped; or None
    when it is not an absolute http(s) origin (user info, path, query, fragment all refused).

    Normalised so that one node registering as "HTTPS://Fra-1.example.net:443/" and later as
    "https://fra-1.example.net" is recognised as the same address.
    """
    # urlsplit silently strips tabs and newlines (WHATWG), so look at the raw text first; "?" and
    # "#" are refused even when empty, since the URL we build by appending a path would carry them.
    if (
        len(value) > _MAX_ADDRESS_LENGTH
        or not value.isascii()
        or not value.isprintable()
        or any(c in value for c in " ?#\\")
    ):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.path not in ("", "/") or "@" in parts.netloc:
        return None
    host_port = _host_and_port(parts.netloc)
    if host_port is None:
        return None
    host, port = host_port
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host_and_port(netloc: str) -> tuple[str, int | None] | None:
    """The normalised host (IPv6 in brackets) and the port, or None if either is malformed."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            return None
        host, rest = _ipv6(netloc[1:end]), netloc[end + 1 :]
    else:
        raw_host, colon, port_text = netloc.partition(":")
        host, rest = _hostname(raw_host.lower()), colon + port_text
    if host is None:
        return None
    if not rest:
        return host, None
    port_text = rest.removeprefix(":")
    # An empty port ("host:") is legal in RFC 3986 but almost always a typo; refuse it.
    if rest[0] != ":" or not port_text.isdigit() or len(port_text) > 5:
        return None
    port = int(port_text)
    return (host, port) if 0 < port < 65536 else None


def _ipv6(text: str) -> str | None:
    if "%" in text:  # a zone id only means something on the host that wrote it
        return None
    try:
        return f"[{ipaddress.IPv6Address(text).compressed}]"
    except ValueError:
        return None


def _hostname(host: str) -> str | None:
    """A DNS name or an IPv4 address; an all-digit last label must be a valid IPv4 address, so
    that "256.1.1.1" is refused rather than taken as a name."""
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            return None
    return host
