"""A registration or heartbeat updates what the broadcaster says of itself and keeps our history."""

from __future__ import annotations

import dataclasses

from broadcaster_registry.liveness import DEFAULT_LIVENESS, record_fetch, record_probe
from broadcaster_registry.model import (
    Broadcaster,
    EjectionState,
    Load,
    ProbeState,
    Registration,
    from_registration,
)

from .builders import NOW

FIRST = Registration(address="https://fra-1.example.net", region="eu", capacity=10)


def test_first_registration() -> None:
    assert from_registration("fra-1", FIRST, NOW) == Broadcaster(
        name="fra-1",
        address="https://fra-1.example.net",
        region="eu",
        capacity=10,
        last_heartbeat=NOW,
        registered_at=NOW,
    )


def _with_history() -> Broadcaster:
    b = from_registration("fra-1", FIRST, NOW)
    b = record_probe(b, False, NOW + 1)
    b = record_fetch(b, False, NOW + 1, DEFAULT_LIVENESS, [])
    return dataclasses.replace(b, state="draining")


def test_a_heartbeat_replaces_the_description_and_keeps_state_and_history() -> None:
    before = _with_history()
    heartbeat = Registration(address="https://fra-1.example.net", load=Load(cpu=0.4))
    after = from_registration("fra-1", heartbeat, NOW + 10, previous=before)
    # Left out means unknown now: region and capacity are gone, the new load is there.
    assert (after.region, after.capacity, after.load) == (None, None, Load(cpu=0.4))
    assert (after.last_heartbeat, after.registered_at) == (NOW + 10, NOW)
    # A heartbeat does not undo a drain, nor wipe what we observed.
    assert after.state == "draining"
    assert (after.probe, after.ejection) == (before.probe, before.ejection)
    assert after.probe.consecutive_failures == 1 and after.ejection.consecutive_failures == 1


def test_a_new_address_starts_a_new_health_history() -> None:
    moved = Registration(address="https://fra-1b.example.net")
    after = from_registration("fra-1", moved, NOW + 10, previous=_with_history())
    assert (after.probe, after.ejection) == (ProbeState(), EjectionState())
    assert (after.state, after.registered_at) == ("draining", NOW)


def test_points_need_both_coordinates() -> None:
    b = from_registration("a", Registration(address="http://a", latitude=1.0, longitude=2.0), NOW)
    assert b.point == (1.0, 2.0)
    assert dataclasses.replace(b, longitude=None).point is None
