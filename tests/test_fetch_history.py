"""Recent fetches per broadcaster (edge.fetch_history) on an injected clock: buckets, the last fetch,
what is forgotten."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.fetch_history import FetchHistory


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_buckets_count_outcomes_and_latency_and_the_last_fetch_is_kept() -> None:
    clock = Clock(1000.0)
    history = FetchHistory(clock, bucket_seconds=10, buckets=6)
    history.record("a", "ok", 200, 0.02)
    clock.now = 1004.0
    history.record("a", "timeout", None, 0.5)
    clock.now = 1021.0
    history.record("a", "http_error", 404, 0.01)  # answered: up, without what was asked
    history.record("a", "http_error", 503, 0.01)  # not answered
    history.record("a", "ok", 200, 0.04)
    series = history.to_json("a", 1025.0)
    assert [(b["start"], b["ok"], b["errors"], b["failed"]) for b in series["buckets"]] == [
        (970.0, 0, 0, 0), (980.0, 0, 0, 0), (990.0, 0, 0, 0), (1000.0, 1, 0, 1), (1010.0, 0, 0, 0), (1020.0, 1, 1, 1)]
    assert series["buckets"][3]["latencyMeanSeconds"] == 0.26 and series["buckets"][3]["latencyMaxSeconds"] == 0.5
    assert series["buckets"][4]["latencyMeanSeconds"] is None
    assert series["lastFetch"] == {"outcome": "ok", "status": 200, "latencySeconds": 0.04, "at": 1021.0}


def test_a_broadcaster_not_fetched_for_the_whole_horizon_is_forgotten() -> None:
    clock = Clock(0.0)
    history = FetchHistory(clock, bucket_seconds=10, buckets=6)
    history.record("gone", "ok", 200, 0.01)
    clock.now = 55.0
    history.record("kept", "ok", 200, 0.01)
    assert set(history.last) == {"gone", "kept"}  # 50 s: still within the minute shown
    clock.now = 60.0
    history.record("kept", "ok", 200, 0.01)
    assert set(history.last) == {"kept"}
    assert history.to_json("gone", 60.0)["lastFetch"] is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.booleans(), st.floats(0, 5)), max_size=80))
def test_the_series_always_spans_the_horizon_and_counts_what_it_covers(
    fetches: list[tuple[float, bool, float]]
) -> None:
    clock = Clock(0.0)
    history = FetchHistory(clock, bucket_seconds=10, buckets=12)
    for step, ok, latency in fetches:
        clock.now += step
        history.record("a", "ok" if ok else "timeout", 200 if ok else None, latency)
    now = clock.now
    series = history.series("a", now)
    assert len(series) == 12 and [b.index for b in series] == list(range(int(now // 10) - 11, int(now // 10) + 1))
    assert len(history._series.get("a", ())) <= 12
    times, at = [], 0.0
    for step, ok, _ in fetches:
        at += step
        times.append((at, ok))
    covered = [(t, ok) for t, ok in times if int(t // 10) >= int(now // 10) - 11]
    assert sum(b.ok for b in series) == sum(ok for _, ok in covered)
    assert sum(b.failed for b in series) == sum(not ok for _, ok in covered)
