"""Every rule a broadcaster's self-description must pass: registration/heartbeat bodies, static
config entries and names, turned into validated values or a ValidationError naming each bad field.

Bodies arrive already decoded from JSON (dicts, lists, str, int, float, bool, None).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from broadcaster_registry.destinations import DEFAULT_DESTINATIONS, DestinationPolicy
from broadcaster_registry.model import STATES, Load, Registration, State

T = TypeVar("T")


class ValidationError(ValueError):
    """Bad input; `errors` holds one message per problem, each starting with the field's name."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _FieldError(Exception):
    """One field's problem, raised by a reader and collected by the parse that called it."""


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

_REGISTRATION_FIELDS = frozenset(
    {"address", "region", "latitude", "longitude", "capacity", "load", "streams"}
)
_LOAD_FIELDS = frozenset({"activeStreams", "cpu", "bandwidthBps", "bandwidthCapacityBps"})


def parse_name(value: Any) -> str:
    """A broadcaster name (a path parameter), or ValidationError."""
    errors: list[str] = []
    name = _collect(errors, _name, value, "name")
    if name is None:
        raise ValidationError(errors)
    return name


def parse_state(value: Any) -> State:
    """A state to set (drain or reactivate), or ValidationError."""
    if value not in STATES:
        raise ValidationError(['state: must be "active" or "draining"'])
    return cast(State, value)


def parse_registration(body: Any, destinations: DestinationPolicy = DEFAULT_DESTINATIONS) -> Registration:
    """A registration or heartbeat body, e.g.
    `{"address": "https://fra-1.example.net", "region": "eu", "latitude": 50.11, "longitude": 8.68,
    "capacity": 40, "load": {"activeStreams": 3, "cpu": 0.2}, "streams": ["abc"]}`, whose address
    `destinations` allows.
    """
    if not isinstance(body, dict):
        raise ValidationError(["body: must be a JSON object"])
    errors = [f"{key}: unknown field" for key in body if key not in _REGISTRATION_FIELDS]
    registration = _registration(body, errors, destinations)
    if errors:
        raise ValidationError(errors)
    assert registration is not None
    return registration


def parse_static_entry(
    entry: Any, destinations: DestinationPolicy = DEFAULT_DESTINATIONS
) -> tuple[str, Registration]:
    """One broadcaster of the config file's static list: a registration body plus its "name"."""
    if not isinstance(entry, dict):
        raise ValidationError(["body: must be a JSON object"])
    allowed = _REGISTRATION_FIELDS | {"name"}
    errors = [f"{key}: unknown field" for key in entry if key not in allowed]
    name = _collect(errors, _name, entry.get("name"), "name")
    registration = _registration(entry, errors, destinations)
    if errors:
        raise ValidationError(errors)
    assert name is not None and registration is not None
    return name, registration


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


def _registration(
    body: Mapping[str, Any], errors: list[str], destinations: DestinationPolicy
) -> Registration | None:
    """The registration fields of `body`, adding each problem to `errors`."""
    before = len(errors)
    if body.get("address") is None:
        errors.append("address: is required")
        address = None
    else:
        address = _collect(errors, _address, body["address"], "address")
        refused = destinations.refuse_address(address) if address is not None else None
        if refused is not None:
            errors.append(f"address: {refused}")
    region = _optional(errors, body, "region", _region)
    latitude = _optional(errors, body, "latitude", _number_between(-90, 90))
    longitude = _optional(errors, body, "longitude", _number_between(-180, 180))
    if (body.get("latitude") is None) != (body.get("longitude") is None):
        missing = "longitude" if body.get("longitude") is None else "latitude"
        given = "latitude" if missing == "longitude" else "longitude"
        errors.append(f"{missing}: is required when {given} is given")
    capacity = _optional(errors, body, "capacity", _integer_at_least(1))
    load = _optional(errors, body, "load", _load) or Load()
    streams = _optional(errors, body, "streams", _streams) or frozenset()
    if len(errors) > before:
        return None
    assert address is not None
    return Registration(
        address=address,
        region=region,
        latitude=latitude,
        longitude=longitude,
        capacity=capacity,
        load=load,
        streams=streams,
    )


def _load(value: Any, path: str) -> Load:
    if not isinstance(value, dict):
        raise _FieldError(f"{path}: must be a JSON object")
    errors = [f"{path}.{key}: unknown field" for key in value if key not in _LOAD_FIELDS]
    load = Load(
        active_streams=_optional(errors, value, "activeStreams", _integer_at_least(0), path),
        cpu=_optional(errors, value, "cpu", _number_between(0, 1), path),
        bandwidth_bps=_optional(errors, value, "bandwidthBps", _number_at_least(0), path),
        bandwidth_capacity_bps=_optional(
            errors, value, "bandwidthCapacityBps", _number_above(0), path
        ),
    )
    if errors:
        raise _FieldError(*errors)
    return load


def _streams(value: Any, path: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise _FieldError(f"{path}: must be an array of stream ids")
    if len(value) > _MAX_STREAMS:
        raise _FieldError(f"{path}: at most {_MAX_STREAMS} stream ids")
    errors = [
        f"{path}[{i}]: {_STREAM_ID_RULE}" for i, item in enumerate(value) if not _is_stream_id(item)
    ]
    if errors:
        raise _FieldError(*errors)
    return frozenset(value)


def _is_stream_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and _STREAM_ID.fullmatch(value) is not None
        and value not in (".", "..")
    )


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        raise _FieldError(f"{path}: {_NAME_RULE}")
    return value


def _region(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise _FieldError(f"{path}: {_REGION_RULE}")
    return value


def _address(value: Any, path: str) -> str:
    address = normalise_address(value) if isinstance(value, str) else None
    if address is None:
        raise _FieldError(f"{path}: {_ADDRESS_RULE}")
    return address


# Numbers. JSON has one number type, so an integer field takes 30.0 (as the rest of the API does);
# booleans are ints in Python but never numbers in JSON; NaN and infinities are refused everywhere.


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range: no sane count or rate is that large
        return None
    return number if math.isfinite(number) else None


def _number_check(accept: Callable[[float], bool], rule: str) -> Callable[[Any, str], float]:
    def read(value: Any, path: str) -> float:
        number = _finite(value)
        if number is None or not accept(number):
            raise _FieldError(f"{path}: {rule}")
        return number

    return read


def _number_between(low: float, high: float) -> Callable[[Any, str], float]:
    return _number_check(lambda x: low <= x <= high, f"must be a number between {low} and {high}")


def _number_at_least(low: float) -> Callable[[Any, str], float]:
    return _number_check(lambda x: x >= low, f"must be a number >= {low}")


def _number_above(low: float) -> Callable[[Any, str], float]:
    return _number_check(lambda x: x > low, f"must be a number greater than {low}")


def _integer_at_least(low: int) -> Callable[[Any, str], int]:
    rule = f"must be an integer >= {low}"

    def read(value: Any, path: str) -> int:
        number = _finite(value)
        if number is None or not number.is_integer() or number < low:
            raise _FieldError(f"{path}: {rule}")
        return int(value)

    return read


def _optional(
    errors: list[str],
    obj: Mapping[str, Any],
    key: str,
    read: Callable[[Any, str], T],
    parent: str = "",
) -> T | None:
    """`read` applied to obj[key]; None when absent or null (null means "not reported")."""
    value = obj.get(key)
    if value is None:
        return None
    return _collect(errors, read, value, f"{parent}.{key}" if parent else key)


def _collect(errors: list[str], read: Callable[[Any, str], T], value: Any, path: str) -> T | None:
    """Run one reader, adding its problems to `errors` instead of stopping at the first."""
    try:
        return read(value, path)
    except _FieldError as exc:
        errors.extend(str(arg) for arg in exc.args)
        return None
