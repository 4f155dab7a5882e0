"""Broadcasters and places for the registry tests, with defaults so each case states only what it
is about."""

from __future__ import annotations

from broadcaster_registry.model import Broadcaster, Load, Source, State
from geo.location import Location

NOW = 1_700_000_000.0

# Broadcaster sites and client cities (decimal degrees).
FRANKFURT = (50.11, 8.68)
AMSTERDAM = (52.37, 4.90)
ASHBURN = (39.04, -77.49)
SINGAPORE = (1.35, 103.82)

LONDON = Location(51.51, -0.09)
SAN_DIEGO = Location(32.74, -117.09)
MELBOURNE = Location(-37.82, 144.97)


def node(
    name: str,
    point: tuple[float, float] | None = None,
    *,
    cpu: float | None = None,
    active: int | None = None,
    capacity: int | None = None,
    region: str | None = None,
    state: State = "active",
    source: Source = "self",
    heartbeat_age: float = 1.0,
) -> Broadcaster:
    """A healthy broadcaster that heartbeated `heartbeat_age` seconds before NOW."""
    return Broadcaster(
        name=name,
        address=f"https://{name}.example.net",
        region=region,
        latitude=None if point is None else point[0],
        longitude=None if point is None else point[1],
        capacity=capacity,
        load=Load(cpu=cpu, active_streams=active),
        state=state,
        source=source,
        last_heartbeat=NOW - heartbeat_age,
        registered_at=NOW - 3600,
    )
