"""The polling cadence (edge.playlists.cadence) against simulated carriers: segments listed at a
cadence with jitter, a carrier that stops, pokes. A simulated poller asks exactly when `due` says."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings, strategies as st

from edge.playlists.cadence import LEARNING, NEVER, Cadence, Watch, due, failed, next_round_at, observe, poke, renewal_due, wake_idle

CADENCE = Cadence(retry=1.0, window=24.0)


@dataclass
class Run:
    asks: list[float]
    lags: list[float]  # per segment: first ask that listed it - when it was listed
    watch: Watch


def listed_up_to(times: list[float], now: float) -> int | None:
    newest = None
    for number, t in enumerate(times):
        if t <= now:
            newest = number
    return newest


def poll(times: list[float], duration: float, until: float, cadence: Cadence = CADENCE,
         watch: Watch = Watch(), start: float = 0.0, latency: float = 0.0, supplier: bool = False) -> Run:
    """Ask when due (each answer taking `latency`), up to `until`; segment n is listed from times[n]."""
    now, asks, lags, seen = start, [], [], -1
    while True:
        now = max(now, due(watch, cadence, supplier))
        if now > until:
            break
        asks.append(now)
        newest = listed_up_to(times, now)
        if newest is not None and newest > seen:
            lags += [now - times[n] for n in range(seen + 1, newest + 1)]
            seen = newest
        watch = observe(watch, now, newest, duration if newest is not None else 0.0)
        now += latency
    return Run(asks, lags, watch)


def arrivals(duration: float, offset: float, jitters: list[float]) -> list[float]:
    times: list[float] = []
    for n, jitter in enumerate(jitters):
        times.append(max(offset + n * duration + jitter, times[-1] if times else 0.0))
    return times


durations = st.sampled_from([1.0, 2.0, 4.0, 6.0]) | st.floats(0.5, 10.0)


@settings(max_examples=150, deadline=None)
@given(duration=durations, offset=st.floats(0, 10),
       jitters=st.lists(st.floats(0, 0.1), min_size=30, max_size=80), latency=st.floats(0, 0.05))
def test_asks_per_segment_stay_below_one_and_a_half_with_small_jitter(duration, offset, jitters, latency):
    jitters = [j * duration for j in jitters]  # up to 10 % of a segment
    times = arrivals(duration, offset, jitters)
    run = poll(times, duration, until=times[-1], latency=latency)
    # The first segments are watched at the `retry` pace, while the cadence is learnt.
    learnt = LEARNING + 2
    steady = [t for t in run.asks if t > times[learnt]]
    assert len(steady) <= 1.5 * (len(times) - learnt - 1) + 2, (duration, offset, jitters, latency)


@settings(max_examples=150, deadline=None)
@given(duration=durations, offset=st.floats(0, 10),
       jitters=st.lists(st.floats(0, 0.25), min_size=30, max_size=80))
def test_a_listed_segment_is_found_within_a_step_of_jitter(duration, offset, jitters):
    jitters = [j * duration for j in jitters]
    times = arrivals(duration, offset, jitters)
    run = poll(times, duration, until=times[-1] + 2 * duration)
    step = max(CADENCE.min_step, CADENCE.step * duration)
    # Past the first few (learning the phase), a segment waits at most the spread of the arrival
    # jitter plus one re-ask step.
    spread = max(jitters) - min(jitters)
    for lag in run.lags[20:]:
        assert lag <= spread + step + 1e-9


@settings(max_examples=100, deadline=None)
@given(duration=durations, jitters=st.lists(st.floats(0, 0.5), min_size=30, max_size=60))
def test_asks_stay_bounded_for_any_jitter(duration, jitters):
    # Arrivals up to half a segment late, in any pattern: the asks stay within a fixed multiple.
    times = arrivals(duration, 1.0, [j * duration for j in jitters])
    run = poll(times, duration, until=times[-1])
    learnt = LEARNING + 2
    steady = [t for t in run.asks if t > times[learnt]]
    assert len(steady) <= 4 * (len(times) - learnt - 1) + 2


@settings(max_examples=100, deadline=None)
@given(duration=durations, count=st.integers(3, 20), window=st.floats(4, 60))
def test_a_carrier_that_stops_is_left_alone_once_its_segments_left_the_window(duration, count, window):
    cadence = Cadence(retry=1.0, window=window)
    times = arrivals(duration, 0.5, [0.0] * count)
    run = poll(times, duration, until=times[-1] + window + 10 * duration + 100, cadence=cadence)
    assert due(run.watch, cadence) == NEVER
    last_seen = run.watch.seen_at
    after = [t for t in run.asks if t > last_seen]
    assert after, "a late carrier is asked again"
    assert max(after) <= last_seen + window + max(cadence.retry, duration)
    # While it is late it is still asked at least every `retry` (or step): a stall is noticed.
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert all(g <= max(cadence.retry, cadence.step * duration, cadence.min_step) + 1e-9 for g in gaps)


@settings(max_examples=100, deadline=None)
@given(duration=durations, count=st.integers(3, 20), pause=st.floats(0, 600), window=st.floats(4, 60))
def test_the_supplier_of_a_paused_stream_is_still_asked_and_its_resumption_seen_within_a_retry(
    duration, count, pause, window
):
    # The stream pauses for any time (longer than the window too) and resumes on the same carrier,
    # nobody telling the edge: asked every retry meanwhile, the first resumed segment is seen in one.
    cadence = Cadence(retry=1.0, window=window)
    before = arrivals(duration, 0.5, [0.0] * count)
    after = [before[-1] + pause + duration * (1 + n) for n in range(3)]
    run = poll(before + after, duration, until=after[-1] + 1, cadence=cadence, supplier=True)
    assert due(run.watch, cadence, supplier=True) != NEVER
    paused = [t for t in run.asks if before[-1] + duration <= t <= after[0]]  # once the next one is late
    gaps = [b - a for a, b in zip(paused, paused[1:])]
    assert all(g <= max(cadence.retry, cadence.step * duration, cadence.min_step) + 1e-9 for g in gaps)
    assert max(run.lags[count:]) <= max(cadence.retry, cadence.step * duration, cadence.min_step) + 1e-9


@settings(max_examples=100, deadline=None)
@given(duration=durations, count=st.integers(1, 10), at=st.floats(0, 500))
def test_a_poke_means_ask_at_once(duration, count, at):
    times = arrivals(duration, 0.5, [0.0] * count)
    run = poll(times, duration, until=times[-1] + 200)
    poked_at = run.watch.asked_at + at + 0.001  # any time after its last ask
    assert due(poke(run.watch, poked_at), CADENCE) <= poked_at


def test_a_new_carrier_is_asked_at_once():
    assert due(Watch(), CADENCE) == -math.inf


def test_a_failing_carrier_is_retried_at_the_retry_pace():
    watch = observe(Watch(), 10.0, 5, 2.0)
    assert due(failed(watch, 11.0), CADENCE) == 12.0


def learnt(at: float, newest: int) -> Watch:
    """A carrier watched since well before `at`: `newest` first listed in (at - 0.2, at]."""
    watch = Watch()
    for n in range(newest - LEARNING - 1, newest):
        watch = observe(observe(watch, at - 2.0 * (newest - n) - 0.2, n - 1, 2.0), at - 2.0 * (newest - n), n, 2.0)
    return observe(observe(watch, at - 0.2, newest - 1, 2.0), at, newest, 2.0)


def test_while_learning_a_carrier_is_asked_at_the_retry_pace():
    watch = observe(observe(Watch(), 10.0, 4, 2.0), 10.2, 5, 2.0)
    assert due(watch, CADENCE) == pytest.approx(11.2)


def test_the_next_ask_is_one_segment_after_the_newest_appeared():
    watch = learnt(10.2, 5)  # 5 appeared in (10.0, 10.2]
    assert due(watch, CADENCE) == pytest.approx(12.1)


def test_a_late_segment_is_re_asked_in_steps_that_grow_with_the_lateness():
    watch = learnt(10.2, 5)
    asks = []
    now = 10.2
    for _ in range(8):
        now = due(watch, CADENCE)
        asks.append(now)
        watch = observe(watch, now, 5, 2.0)
    gaps = [b - a for a, b in zip(asks, asks[1:])]
    assert gaps[0] == pytest.approx(0.25)
    assert gaps == sorted(gaps) and gaps[-1] <= CADENCE.retry


@settings(max_examples=50, deadline=None)
@given(duration=st.floats(1.0, 6.0), speedup=st.floats(2.0, 20.0))
def test_a_carrier_listing_faster_than_its_durations_is_followed_at_its_pace(duration, speedup):
    # A carrier catching up (or a compressed clock): segments of `duration` listed every duration/speedup.
    spacing = duration / speedup
    times = arrivals(spacing, 0.5, [0.0] * 400)
    run = poll(times, duration, until=times[-1])
    assert max(run.lags[100:]) <= 2 * spacing + max(CADENCE.min_step, CADENCE.step * spacing) + 1e-9


def test_discovery_wakes_only_the_carriers_left_alone():
    cadence = Cadence(retry=1.0, window=10.0)
    stopped = poll(arrivals(2.0, 0.5, [0.0] * 5), 2.0, until=60.0, cadence=cadence).watch
    live = poll(arrivals(2.0, 0.5, [0.0] * 40), 2.0, until=60.0, cadence=cadence).watch
    assert due(stopped, cadence) == NEVER and due(live, cadence) > 60.0
    woken = wake_idle({"stopped": stopped, "live": live}, 61.0, cadence)
    assert due(woken["stopped"], cadence) <= 61.0
    assert woken["live"] == live



# (case, next ask, settled, deadlines, next round) at now = 100 with a 1 s poll
NEXT_ROUND_CASES = [
    ("unsettled: at least every poll", 101.6, False, [], 101.0),
    ("unsettled, an ask due sooner", 100.3, False, [], 100.3),
    ("settled: only its next ask", 101.9, True, [102.5, 110.0], 101.9),
    ("settled: a deadline before the ask", 101.9, True, [101.4, 110.0], 101.4),
    ("settled, a deadline already past: the poll pace", 101.9, True, [99.0], 101.0),
    ("settled, nothing to ask, no deadline", math.inf, True, [], math.inf),
    ("settled, nothing to ask: the deadline", math.inf, True, [104.0], 104.0),
]


@pytest.mark.parametrize("ask, settled, deadlines, expected", [c[1:] for c in NEXT_ROUND_CASES],
                         ids=[c[0] for c in NEXT_ROUND_CASES])
def test_a_feed_runs_its_next_round_when_an_ask_or_a_deadline_is_due(ask, settled, deadlines, expected):
    assert next_round_at(100.0, ask, settled, deadlines, 1.0) == expected


@settings(max_examples=300, deadline=None)
@given(now=st.floats(0, 1e6), ahead=st.floats(0, 100) | st.just(math.inf), settled=st.booleans(),
       deadlines=st.lists(st.floats(-100, 100), max_size=4), poll=st.floats(0.05, 5))
def test_the_next_round_is_never_after_the_next_ask_nor_later_than_a_poll_unless_settled(now, ahead, settled, deadlines, poll):
    at = next_round_at(now, now + ahead, settled, [now + d for d in deadlines], poll)
    assert now < at <= now + ahead or at == now + ahead
    if not settled:
        assert at <= now + poll
    elif any(now + d <= now for d in deadlines):
        assert at <= now + poll  # a deadline missed is met at the poll pace, not forgotten


# (case, lease until, ttl, poll, shared, renewal round at)
RENEWAL_CASES = [
    ("shared store: once the lease is a poll old", 103.0, 3.0, 1.0, True, 101.0),
    ("alone: half a poll before it lapses", 103.0, 3.0, 1.0, False, 102.5),
    ("the soak's short periods, shared", 101.5, 1.5, 0.5, True, 100.5),
]


@pytest.mark.parametrize("until, ttl, poll, shared, expected", [c[1:] for c in RENEWAL_CASES],
                         ids=[c[0] for c in RENEWAL_CASES])
def test_a_lease_is_renewed_early_where_another_node_could_take_it(until, ttl, poll, shared, expected):
    assert renewal_due(until, ttl, poll, shared) == expected
    assert renewal_due(until, ttl, poll, shared) < until  # never after it lapses
