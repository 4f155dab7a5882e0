"""Property tests: over random arrivals, duplicates, losses, failures, restarts and time steps, every
pair of successive merged playlists keeps the HLS reload rules, and the merge is deterministic."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import m3u8
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge.playlists.codec import dump_state, load_state
from edge.playlists.merge import BroadcasterRef, FetchedPlaylist, Policy, PublishedState, merge
from edge.playlists.render import render_media
from edge.playlists.layout import SegmentPlace
from edge.playlists.upstream_parse import parse_upstream
from tests.playlists.builders import T0

UPSTREAM_WINDOW = 6  # go-livepeer lists its last 6 segments
PLACE = SegmentPlace("/stream/s/r/", ".ts")


@dataclass(frozen=True)
class Copy:
    broadcaster: int
    index: int  # position in the ingest's output, across restarts
    number: int
    duration: float
    arrival: float


@dataclass(frozen=True)
class Scenario:
    target_duration: int
    policy: Policy
    broadcasters: tuple[BroadcasterRef, ...]
    dated: tuple[bool, ...]
    copies: tuple[Copy, ...]
    restarted: bool
    steps: tuple[tuple[float, frozenset[int]], ...]  # (time, broadcasters failing)
    ended_at: int | None  # step from which the stream is over


@st.composite
def scenarios(draw: st.DrawFn, restart: bool | None = None) -> Scenario:
    """restart: None for any scenario, True to always restart the ingest well into the stream."""
    td = draw(st.sampled_from([2, 3]))
    policy = Policy(
        window_seconds=draw(st.sampled_from([1.0, 8.0, 15.0])),
        hole_wait_seconds=draw(st.sampled_from([0.0, 1.0, 2.5])),
        restart_margin=3,
    )
    count = draw(st.integers(1, 4))
    broadcasters = tuple(
        BroadcasterRef(f"b{i}", f"http://b{i}.test", rank=draw(st.integers(0, 1))) for i in range(count)
    )
    dated = tuple(draw(st.booleans()) for _ in broadcasters)
    segments = draw(st.integers(3, 30))
    if restart:
        segments = max(segments, 12)
        offset = draw(st.integers(10, 40))
        restart_at: int | None = draw(st.integers(4, segments - 4))
    else:
        offset = draw(st.integers(0, 40))
        restart_at = draw(st.none() | st.integers(1, max(1, segments - 1)))
    durations = [1.0, 2.0, td - 0.5, td + 0.4, td + 0.6]  # the last rounds above the target
    copies = []
    for index in range(segments):
        number = index + offset if restart_at is None or index < restart_at else index - restart_at
        # An empty set of holders is a lost segment; a restart is only seen if most are not lost.
        holders = draw(st.sets(st.integers(0, count - 1), min_size=1 if restart else 0, max_size=count))
        for b in sorted(holders):
            copies.append(
                Copy(
                    broadcaster=b,
                    index=index,
                    number=number,
                    duration=draw(st.sampled_from(durations)),
                    arrival=2.0 * index + draw(st.sampled_from([0.0, 0.3, 1.0, 2.5, 6.0])),
                )
            )
    # Rounds until every copy has arrived and a while after, at irregular intervals, some of them
    # outages (nobody polled: a lease holder dead, the store down) after which segments pile up.
    horizon = max((c.arrival for c in copies), default=0.0) + 8.0
    now = 0.0
    steps = []
    while now < horizon and len(steps) < 80:
        now += draw(st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.0, 14.0]))
        failing = frozenset(draw(st.sets(st.integers(0, count - 1), max_size=count)) if draw(st.booleans()) else ())
        steps.append((now, failing))
    ended_at = None if restart else draw(st.none() | st.none() | st.integers(0, len(steps) - 1))
    return Scenario(
        td, policy, broadcasters, dated, tuple(copies), restart_at is not None, tuple(steps), ended_at
    )


def playlist_text(scenario: Scenario, b: int, now: float) -> str:
    """What broadcaster b serves at `now`: its last arrivals, in arrival order, as go-livepeer does."""
    arrived = sorted((c for c in scenario.copies if c.broadcaster == b and c.arrival <= now), key=lambda c: c.arrival)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:12345", "#EXT-X-TARGETDURATION:9"]
    for c in arrived[-UPSTREAM_WINDOW:]:
        if scenario.dated[b]:
            date = T0 + timedelta(seconds=2.0 * c.index)
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + date.isoformat())
        lines += [f"#EXTINF:{c.duration:.3f},", f"/stream/s/r/{c.number}.ts"]
    return "\n".join(lines) + "\n"


def fetch_round(scenario: Scenario, now: float, failing: frozenset[int]) -> list[FetchedPlaylist]:
    fetched = []
    for b, ref in enumerate(scenario.broadcasters):
        if b in failing:
            fetched.append(FetchedPlaylist(broadcaster=ref, playlist=None, error="timeout"))
        else:
            text = playlist_text(scenario, b, now)
            playlist = parse_upstream(text, f"{ref.origin}/stream/s/r.m3u8", ref.origin, PLACE)
            fetched.append(FetchedPlaylist(broadcaster=ref, playlist=playlist))
    return fetched


def play(scenario: Scenario, shuffle: random.Random | None = None) -> list[tuple[float, list[FetchedPlaylist], PublishedState]]:
    state: PublishedState | None = None
    history = []
    for i, (now, failing) in enumerate(scenario.steps):
        fetched = fetch_round(scenario, now, failing)
        if shuffle is not None:
            shuffle.shuffle(fetched)
        ended = scenario.ended_at is not None and i >= scenario.ended_at
        state = merge(state, fetched, now, scenario.policy, scenario.target_duration, ended=ended)
        history.append((now, fetched, state))
    return history


def rounded(duration: float) -> int:
    return int(duration + 0.5)


def discontinuity_numbers(state: PublishedState) -> dict[int, int]:
    """MSN -> its discontinuity number (§6.2.4): the sequence plus the DISCONTINUITY tags up to it."""
    result, current = {}, state.discontinuity_sequence
    for s in state.segments:
        current += s.discontinuity
        result[s.msn] = current
    return result


def offered_numbers(fetched: list[FetchedPlaylist], td: int, state: PublishedState) -> set[int]:
    """Numbers the merge could publish now: a copy within the target duration, not stale."""
    stale = state.stale_numbers
    return {
        s.number
        for f in fetched
        if f.playlist is not None
        for s in f.playlist.segments
        if rounded(s.duration) <= td and not (stale and stale[0] <= s.number <= stale[1])
    }


def check_state(state: PublishedState, now: float, fetched: list[FetchedPlaylist], policy: Policy,
                burst: bool = False) -> None:
    """`burst`: the state starts with a burst listed whole (see check_scenario), which may last
    longer than the window until the next segment is appended."""
    td = state.target_duration
    assert all(rounded(s.duration) <= td for s in state.segments)
    assert [s.msn for s in state.segments] == list(range(state.media_sequence, state.next_msn))
    durations_ms = [round(s.duration * 1000) for s in state.segments]
    if state.media_sequence > 0:  # something was trimmed: at least 3 target durations remain
        assert sum(durations_ms) >= 3000 * td
    if len(durations_ms) > 1 and not burst:  # and no more than the window needs
        assert sum(durations_ms) - durations_ms[0] < round(policy.window_for(td) * 1000)
    for a, b in zip(state.segments, state.segments[1:]):
        if b.number != a.number + 1:
            assert b.discontinuity, "a jump in ingest numbers must carry a DISCONTINUITY"
    if state.ended or state.next_number is None:
        return
    offered = offered_numbers(fetched, td, state)
    assert state.next_number not in offered, "an offered next segment was left unpublished"
    if any(n > state.next_number for n in offered):
        assert state.waiting_since is not None
        assert now - state.waiting_since < policy.hole_wait_seconds, "a hole was waited for too long"


def check_transition(before: PublishedState, after: PublishedState) -> None:
    if before.ended:
        assert after is before, "nothing changes after ENDLIST"
        return
    assert after.target_duration == before.target_duration
    removed = after.media_sequence - before.media_sequence
    assert removed >= 0, "MEDIA-SEQUENCE never decreases"
    assert after.version == before.version + (after is not before)
    if before.segments:
        # A burst (segments piled up after an outage) is listed whole once: a player holding the
        # previous version never finds the window slid past what it listed (an MSN jump).
        assert removed <= len(before.segments), "a new segment was trimmed in the version that added it"
    elif removed:
        return  # nothing was listed before: no player can miss anything
    kept = before.segments[removed:]
    assert after.segments[: len(kept)] == kept, "only append at the end and remove from the front"
    removed_marks = sum(s.discontinuity for s in before.segments[:removed])
    assert after.discontinuity_sequence == before.discontinuity_sequence + removed_marks
    old, new = discontinuity_numbers(before), discontinuity_numbers(after)
    assert all(new[msn] == old[msn] for msn in old.keys() & new.keys())
    if before.next_number is not None and len(after.segments) > len(kept):
        first_new = after.segments[len(kept)]  # the others are checked against their predecessor
        assert first_new.number >= before.next_number or first_new.discontinuity, "never jump back silently"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.randoms(use_true_random=False))
def test_reload_rules_hold_between_every_pair_of_outputs(scenario: Scenario, shuffler: random.Random) -> None:
    check_scenario(scenario, shuffler)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(restart=True), st.randoms(use_true_random=False))
def test_reload_rules_hold_across_ingest_restarts(scenario: Scenario, shuffler: random.Random) -> None:
    check_scenario(scenario, shuffler)


def check_scenario(scenario: Scenario, shuffler: random.Random) -> None:
    history = play(scenario)
    uri_of_msn: dict[int, str] = {}
    highest_number = -1
    previous: PublishedState | None = None
    burst_msn = None  # the first MSN of the last burst listed whole (every older segment trimmed)
    for now, fetched, state in history:
        if previous is not None and previous.segments and state.media_sequence == previous.next_msn < state.next_msn:
            burst_msn = state.media_sequence
        check_state(state, now, fetched, scenario.policy, burst=state.media_sequence == burst_msn)
        if previous is not None:
            check_transition(previous, state)
        for s in state.segments:
            assert uri_of_msn.setdefault(s.msn, s.uri) == s.uri, "an MSN changed its URI"
            if s.msn >= (previous.next_msn if previous else 0) and state.counts.restarts == 0:
                assert s.number > highest_number, "ingest numbers go only forward within an epoch"
                highest_number = s.number
        previous = state
    final = history[-1][2]
    # Shown by --hypothesis-show-statistics: the cases worth having are generated.
    event(f"restarts={min(final.counts.restarts, 1)}")
    event(f"holes passed={min(final.counts.holes_passed, 2)}")
    event(f"too long skipped={min(final.counts.too_long_skipped, 1)}")
    event(f"trimmed={final.media_sequence > 0}")
    event(f"discontinuity sequence > 0={final.discontinuity_sequence > 0}")
    event(f"ended={final.ended}")
    if not scenario.restarted:
        assert final.counts.restarts == 0, "no restart without one"
    if scenario.ended_at is not None:
        assert final.ended
    assert load_state(dump_state(final)) == final
    parsed = m3u8.loads(render_media(final).decode())
    assert parsed.media_sequence == final.media_sequence
    assert parsed.discontinuity_sequence == final.discontinuity_sequence
    assert parsed.is_endlist == final.ended
    assert [(s.uri, s.discontinuity) for s in parsed.segments] == [(s.uri, s.discontinuity) for s in final.segments]
    # Determinism: the same offers fetched in another order give the same states, step by step.
    assert [s for _, _, s in play(scenario, shuffler)] == [s for _, _, s in history]


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_a_broadcaster_failing_is_the_same_as_its_absence(scenario: Scenario) -> None:
    # Replacing every failed fetch by no fetch at all changes nothing.
    states_with, states_without = [], []
    a = b = None
    for i, (now, failing) in enumerate(scenario.steps):
        fetched = fetch_round(scenario, now, failing)
        ended = scenario.ended_at is not None and i >= scenario.ended_at
        a = merge(a, fetched, now, scenario.policy, scenario.target_duration, ended=ended)
        b = merge(b, [f for f in fetched if f.playlist is not None], now, scenario.policy, scenario.target_duration, ended=ended)
        states_with.append(a)
        states_without.append(b)
    assert states_with == states_without
