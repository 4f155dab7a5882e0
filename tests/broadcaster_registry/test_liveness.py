"""Liveness with an injected clock: heartbeat TTL, active probes, passive ejection, draining."""

from __future__ import annotations

import dataclasses

import pytest

from broadcaster_registry.liveness import (
    DEFAULT_LIVENESS,
    Health,
    LivenessPolicy,
    can_take_new_streams,
    health,
    is_serving,
    record_fetch,
    record_probe,
    should_forget,
)
from broadcaster_registry.model import Broadcaster, EjectionState

from .builders import FRANKFURT, NOW, node

# ttl 30 s; probes 3 down, 2 up; eject after 5 failures for 30 s x n, at most 300 s, at most 50 %
POLICY = DEFAULT_LIVENESS


# (seconds since the last heartbeat, expected health)
HEARTBEAT_AGES = [
    (0, Health(True, True, "ok")),
    (29.999, Health(True, True, "ok")),
    (30, Health(True, True, "ok")),  # at the TTL exactly: still alive
    (30.001, Health(False, False, "heartbeat expired 0s ago (last heartbeat 30s ago, ttl 30s)")),
    (72, Health(False, False, "heartbeat expired 42s ago (last heartbeat 72s ago, ttl 30s)")),
]


@pytest.mark.parametrize("age, expected", HEARTBEAT_AGES)
def test_self_registered_expire_after_the_ttl(age: float, expected: Health) -> None:
    b = node("fra", FRANKFURT, heartbeat_age=0)
    assert health(b, NOW + age, POLICY) == expected


def test_static_ones_do_not_expire() -> None:
    b = node("fra", FRANKFURT, source="static", heartbeat_age=0)
    assert health(b, NOW + 86_400, POLICY) == Health(True, True, "ok")


# (case, probe outcomes in order, reason after the last one)
PROBE_SEQUENCES = [
    ("one failure is not enough", "F", "ok"),
    ("two failures are not enough", "FF", "ok"),
    ("three in a row take it out", "FFF", "probe failed 3 times"),
    ("it stays out while failing", "FFFFF", "probe failed 5 times"),
    ("a success in between resets the count", "FFSFF", "ok"),
    ("one success does not bring it back", "FFFS", "probe down, 1 of 2 successes needed to return"),
    ("two successes in a row do", "FFFSS", "ok"),
    ("the successes must be in a row", "FFFSFS", "probe down, 1 of 2 successes needed to return"),
    ("and it can go down again", "FFFSSFFF", "probe failed 3 times"),
]


@pytest.mark.parametrize(
    "outcomes, reason", [c[1:] for c in PROBE_SEQUENCES], ids=[c[0] for c in PROBE_SEQUENCES]
)
def test_probes_take_static_ones_out_and_back(outcomes: str, reason: str) -> None:
    b = node("fra", FRANKFURT, source="static")
    for i, outcome in enumerate(outcomes):
        b = record_probe(b, outcome == "S", NOW + i, POLICY)
    assert health(b, NOW + len(outcomes), POLICY).reason == reason
    assert b.probe.last_probe_at == NOW + len(outcomes) - 1


def _fail(b: Broadcaster, times: int, now: float, fleet: list[Broadcaster]) -> Broadcaster:
    for _ in range(times):
        b = record_fetch(b, False, now, POLICY, fleet)
    return b


def _big_fleet() -> list[Broadcaster]:
    """Nine others, static so that they stay in the fleet however far the clock moves."""
    return [node(f"other-{i}", FRANKFURT, source="static") for i in range(9)]


def test_ejection_after_five_consecutive_failures() -> None:
    fleet = _big_fleet()
    b = _fail(node("fra", FRANKFURT, source="static"), 4, NOW, fleet)
    assert can_take_new_streams(b, NOW, POLICY)
    b = _fail(b, 1, NOW, fleet)
    assert health(b, NOW, POLICY) == Health(
        False,
        False,
        "ejected until 2023-11-14T22:13:50Z (30s left) "
        "after 5 consecutive fetch failures (ejection 1)",
    )
    assert not is_serving(b, NOW + 29.9, POLICY)
    assert is_serving(b, NOW + 30, POLICY)


def test_a_success_resets_the_failure_count() -> None:
    fleet = _big_fleet()
    b = _fail(node("fra", FRANKFURT), 4, NOW, fleet)
    b = record_fetch(b, True, NOW, POLICY, fleet)
    b = _fail(b, 4, NOW, fleet)
    assert can_take_new_streams(b, NOW, POLICY)


def test_ejections_grow_and_are_capped() -> None:
    fleet = _big_fleet()
    b = node("fra", FRANKFURT, source="static")
    now = NOW
    durations = []
    for _ in range(12):
        b = _fail(b, 5, now, fleet)
        assert b.ejection.ejected_until is not None
        durations.append(b.ejection.ejected_until - now)
        now = b.ejection.ejected_until  # back in service, and failing again at once
    assert durations == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    fleet = _big_fleet()
    b = _fail(node("fra", FRANKFURT), 5, NOW, fleet)
    assert _fail(b, 10, NOW + 1, fleet) == b


def test_a_long_quiet_spell_forgives_past_ejections() -> None:
    fleet = _big_fleet()
    b = _fail(node("fra", FRANKFURT, source="static"), 5, NOW, fleet)  # ejected until NOW + 30
    soon = record_fetch(b, True, NOW + 30 + 299, POLICY, fleet)
    later = record_fetch(b, True, NOW + 30 + 300, POLICY, fleet)
    assert (soon.ejection.times_ejected, later.ejection.times_ejected) == (1, 0)


def _ejected(name: str) -> Broadcaster:
    b = node(name, FRANKFURT)
    return dataclasses.replace(b, ejection=EjectionState(times_ejected=1, ejected_until=NOW + 60))


# (case, the rest of the fleet, may "fra" be ejected at its fifth failure?)
EJECTION_CAP = [
    ("alone: never, a failing node beats none", [], False),
    ("one of two: yes, 50 %", [node("b", FRANKFURT)], True),
    ("one of two, the other ejected: no", [_ejected("b")], False),
    (
        "third of four with two ejected: no, 75 %",
        [_ejected("b"), _ejected("c"), node("d", FRANKFURT)],
        False,
    ),
    (
        "second of four with one ejected: yes, 50 %",
        [_ejected("b"), node("c", FRANKFURT), node("d", FRANKFURT)],
        True,
    ),
    # Nodes that are gone anyway do not count towards the fleet the cap protects.
    ("expired ones do not count", [node("b", FRANKFURT, heartbeat_age=31)], False),
    ("its own stale entry in the fleet does not count twice", [node("fra", FRANKFURT)], False),
]


@pytest.mark.parametrize(
    "others, ejected", [c[1:] for c in EJECTION_CAP], ids=[c[0] for c in EJECTION_CAP]
)
def test_never_eject_more_than_half_the_fleet(others: list[Broadcaster], ejected: bool) -> None:
    b = _fail(node("fra", FRANKFURT), 5, NOW, others)
    assert (not is_serving(b, NOW, POLICY)) == ejected
    if not ejected:
        # Still counting, so it is ejected as soon as the cap allows.
        assert b.ejection.consecutive_failures == 5


def test_draining_keeps_serving_but_takes_nothing_new() -> None:
    b = node("fra", FRANKFURT, state="draining", heartbeat_age=0)
    assert health(b, NOW, POLICY) == Health(False, True, "draining")
    assert not can_take_new_streams(b, NOW, POLICY)
    assert is_serving(b, NOW + 30, POLICY)
    assert not is_serving(b, NOW + 31, POLICY)  # until it expires


def test_only_long_expired_self_registered_ones_are_forgotten() -> None:
    policy = LivenessPolicy(forget_after_s=600)
    assert not should_forget(node("a", heartbeat_age=0), NOW + 600, policy)
    assert should_forget(node("a", heartbeat_age=0), NOW + 601, policy)
    assert not should_forget(node("a", source="static", heartbeat_age=0), NOW + 10_000, policy)
