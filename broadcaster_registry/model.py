"""The broadcaster as a value: what it said of itself, what we observed of its health, and the one
pure step that turns a (re-)registration into the next version of that value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

State = Literal["active", "draining"]
"""`draining`: no new ingests, but the streams it already carries are still merged (like a
Kubernetes endpoint that is `serving` and `terminating`)."""

Source = Literal["self", "static"]
"""`self`: registered and kept alive by its own heartbeats. `static`: listed in the config file,
kept alive by our active probes."""

STATES: tuple[State, ...] = ("active", "draining")


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    """The load a broadcaster reported with its last heartbeat; None means "not reported"."""

    active_streams: int | None = None
    cpu: float | None = None  # 0..1, share of all cores
    bandwidth_bps: float | None = None  # egress in use
    bandwidth_capacity_bps: float | None = None  # egress the node can sustain


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeState:
    """Result of our active probes (static broadcasters).

    `down` is kept explicitly rather than derived from the counters: going down and coming back
    use different thresholds (hysteresis), so the counters alone do not say which side we are on.
    A broadcaster starts up: at boot no probe has run yet, and refusing every ingest for a probe
    interval is worse than one failed upload that the ingest retries elsewhere.
    """

    consecutive_failures: int = 0
    consecutive_successes: int = 0
    down: bool = False
    last_probe_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EjectionState:
    """Passive outlier detection from our playlist fetches (Envoy-style)."""

    consecutive_failures: int = 0
    times_ejected: int = 0  # drives the growing back-off
    ejected_until: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """A validated registration or heartbeat body: everything a broadcaster says of itself.

    A heartbeat is a full replacement (PUT semantics): a field left out is "unknown", not "as
    before", so a broadcaster that stops reporting load is not judged on a stale report.
    """

    address: str  # normalised origin, e.g. "https://fra-1.example.net:8935"
    region: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    capacity: int | None = None
    load: Load = field(default_factory=Load)
    streams: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcaster:
    """A transcoding node that ingests may be sent to.

    Values are only built from validated input (validation.py holds every rule); nothing here
    re-checks them, so that each rule lives in one place.
    """

    name: str  # DNS-label slug, the registry key
    address: str  # normalised http(s) origin, no trailing slash
    region: str | None = None
    latitude: float | None = None  # latitude and longitude are both set or both None
    longitude: float | None = None
    capacity: int | None = None  # most streams it should carry
    load: Load = field(default_factory=Load)
    streams: frozenset[str] = frozenset()  # stream ids it reported carrying
    state: State = "active"
    source: Source = "self"
    last_heartbeat: float  # for static ones: when the config was loaded
    registered_at: float
    probe: ProbeState = field(default_factory=ProbeState)
    ejection: EjectionState = field(default_factory=EjectionState)

    @property
    def point(self) -> tuple[float, float] | None:
        """(latitude, longitude), or None when the broadcaster did not say where it is."""
        if self.latitude is None or self.longitude is None:
            return None
        return (self.latitude, self.longitude)


def from_registration(
    name: str,
    registration: Registration,
    now: float,
    *,
    source: Source = "self",
    previous: Broadcaster | None = None,
) -> Broadcaster:
    """The broadcaster after a registration or heartbeat at `now`.

    Kept from `previous`: when it first registered, its state (a heartbeat must not undo a drain:
    a draining node keeps heartbeating until its streams are done) and its health history, unless
    the address changed: the history of another endpoint says nothing about this one.
    """
    fresh = Broadcaster(
        name=name,
        address=registration.address,
        region=registration.region,
        latitude=registration.latitude,
        longitude=registration.longitude,
        capacity=registration.capacity,
        load=registration.load,
        streams=registration.streams,
        source=source,
        last_heartbeat=now,
        registered_at=now,
    )
    if previous is None:
        return fresh
    same_endpoint = previous.address == registration.address
    return replace(
        fresh,
        registered_at=previous.registered_at,
        state=previous.state,
        probe=previous.probe if same_endpoint else ProbeState(),
        ejection=previous.ejection if same_endpoint else EjectionState(),
    )
