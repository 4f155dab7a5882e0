"""The scrape-time health gauges' rules, as tables: a broadcaster's state label, and when a watched
stream counts as stalled. That the gauges reach /metrics is tested on a real edge
(tests/deploy/test_metrics_exported.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from broadcaster_registry.liveness import DEFAULT_LIVENESS
from broadcaster_registry.model import EjectionState, ProbeState
from edge.health_metrics import BROADCASTER_STATES, FeedView, broadcaster_counts, broadcaster_state, stalled
from tests.broadcaster_registry.builders import NOW, node

EJECTED = EjectionState(times_ejected=1, ejected_until=NOW + 30)


@pytest.mark.parametrize(("broadcaster", "state"), [
    (node("ok"), "healthy"),
    (node("draining", state="draining"), "draining"),
    (replace(node("ejected"), ejection=EJECTED), "ejected"),
    (replace(node("ejected-and-draining", state="draining"), ejection=EJECTED), "ejected"),
    (replace(node("ejection-over"), ejection=EjectionState(times_ejected=1, ejected_until=NOW - 1)), "healthy"),
    (node("silent", heartbeat_age=DEFAULT_LIVENESS.heartbeat_ttl_s + 1), "down"),
    (replace(node("probed-down", source="static"), probe=ProbeState(consecutive_failures=3, down=True)), "down"),
    (replace(node("silent-and-ejected", heartbeat_age=600), ejection=EJECTED), "down"),  # the worse reason
])
def test_a_broadcaster_state(broadcaster, state: str) -> None:  # type: ignore[no-untyped-def]
    assert broadcaster_state(broadcaster, NOW, DEFAULT_LIVENESS) == state


def test_counts_name_every_state_even_when_none_is_in_it() -> None:
    fleet = [node("a"), node("b"), replace(node("c"), ejection=EJECTED)]
    assert broadcaster_counts(fleet, NOW, DEFAULT_LIVENESS) == {"healthy": 2, "draining": 0, "ejected": 1, "down": 0}
    assert broadcaster_counts([], NOW, DEFAULT_LIVENESS) == dict.fromkeys(BROADCASTER_STATES, 0)


LIVE = FeedView(ended=False, has_segments=True, target_duration=2, last_progress=100.0)


@pytest.mark.parametrize(("feed", "now", "expected"), [
    (LIVE, 106.0, False),  # exactly three target durations: not yet
    (LIVE, 106.01, True),
    (replace(LIVE, ended=True), 1000.0, False),  # an ended stream does not advance, rightly
    (replace(LIVE, has_segments=False), 1000.0, False),  # never started: not a stall of what players saw
    (replace(LIVE, target_duration=0), 103.01, True),  # an unknown target counts as 1 s
])
def test_a_stall(feed: FeedView, now: float, expected: bool) -> None:
    assert stalled(feed, now) is expected


@given(target=st.integers(1, 20), waited=st.floats(0, 200), later=st.floats(0, 100))
def test_a_stall_lasts_until_progress(target: int, waited: float, later: float) -> None:
    feed = replace(LIVE, target_duration=target)
    if stalled(feed, feed.last_progress + waited):
        assert stalled(feed, feed.last_progress + waited + later)  # time alone never ends a stall
    assert stalled(feed, feed.last_progress + waited) is (waited > 3 * target)
