"""The round as a pure decision over every rendition of a stream: renditions failing alone, a
rendition that dies, health verdicts, the target duration and the events counted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.playlists.merge import BroadcasterRef, FetchedPlaylist, Policy, PublishedState, renditions_agree
from edge.playlists.round import TARGET_HEADROOM_S, StreamPolicy, decide, discovery_asks, discovery_due, substitutes_by_bitrate
from tests.playlists.builders import B1, B2, offer, upstream

POLICY = StreamPolicy(
    merge=Policy(window_seconds=30.0, hole_wait_seconds=2.0),
    fixed_target_duration=2,
    substitutes={"hi": ("lo",), "lo": ("hi",)},
)


def rounds(steps: list[tuple[float, dict[str, list[int]]]], policy: StreamPolicy = POLICY) -> list[dict[str, PublishedState]]:
    """Every round's states, B1 offering these numbers per rendition."""
    states: dict[str, PublishedState] = {}
    out = []
    for now, offered in steps:
        fetched = {r: [offer(B1, numbers)] for r, numbers in offered.items()}
        states = dict(decide(states, fetched, now, policy).states)
        out.append(states)
    return out


def shown(state: PublishedState) -> list[tuple[int, str | None, bool]]:
    return [(s.number, s.substitute, s.discontinuity) for s in state.segments]


def test_a_number_missing_in_one_rendition_is_waited_for_then_shown_from_the_other() -> None:
    *_, last = rounds([
        (0.0, {"hi": [1, 2], "lo": [1]}),  # lo's 2 may still be transcoding: wait
        (1.0, {"hi": [1, 2, 3], "lo": [1, 3]}),
        (2.0, {"hi": [1, 2, 3], "lo": [1, 3]}),  # waited 2 s: lo shows hi's 2
    ])  # fmt: skip
    assert shown(last["hi"]) == [(1, None, False), (2, None, True), (3, None, True)]
    assert shown(last["lo"]) == [(1, None, False), (2, "hi", True), (3, None, True)]
    assert last["lo"].segments[1].uri == last["hi"].segments[1].uri
    assert renditions_agree(last.values())


def test_a_late_transcode_within_the_wait_shows_no_seam() -> None:
    *_, last = rounds([(0.0, {"hi": [1, 2], "lo": [1]}), (1.5, {"hi": [1, 2, 3], "lo": [1, 2, 3]})])
    assert shown(last["lo"]) == [(1, None, False), (2, None, False), (3, None, False)]


def test_a_rendition_that_dies_holds_the_others_back_once_then_never() -> None:
    states = rounds([
        (0.0, {"hi": [1], "lo": [1]}),
        (1.0, {"hi": [1, 2], "lo": [1]}),  # lo stops producing
        (3.0, {"hi": [1, 2], "lo": [1]}),  # after one wait: stand-ins
        (4.0, {"hi": [1, 2, 3], "lo": [1]}),  # published at once, no second wait
        (5.0, {"hi": [1, 2, 3, 4], "lo": [1]}),
        (6.0, {"hi": [1, 2, 3, 4, 5], "lo": [1, 5]}),  # lo is back
    ])  # fmt: skip
    assert [s.number for s in states[3]["hi"].segments] == [1, 2, 3]
    assert [s.number for s in states[4]["hi"].segments] == [1, 2, 3, 4]
    assert shown(states[-1]["lo"]) == [(1, None, False), (2, "hi", True), (3, "hi", False), (4, "hi", False), (5, None, True)]
    assert [d for _, _, d in shown(states[-1]["hi"])] == [False, True, False, False, True]
    assert all(renditions_agree(s.values()) for s in states)


def test_a_number_nobody_has_is_a_hole_in_every_rendition() -> None:
    *_, last = rounds([(0.0, {"hi": [1, 3], "lo": [1, 3]}), (2.0, {"hi": [1, 3], "lo": [1, 3]})])
    assert shown(last["hi"]) == shown(last["lo"]) == [(1, None, False), (3, None, True)]


def test_health_one_answer_below_500_is_alive() -> None:
    def fetch(ref: BroadcasterRef, status: int | None) -> FetchedPlaylist:
        return FetchedPlaylist(broadcaster=ref, playlist=upstream(ref, [1]) if status == 200 else None, status=status)

    b3 = BroadcasterRef("b3", "http://b3.test")
    fetched = {"hi": [fetch(B1, 404), fetch(B2, 503), fetch(b3, None)], "lo": [fetch(B1, 503), fetch(B2, 500), fetch(b3, 200)]}
    assert dict(decide({}, fetched, 0.0, POLICY).health) == {"b1": True, "b2": False, "b3": True}


def test_target_duration_is_chosen_once_from_any_rendition() -> None:
    policy = StreamPolicy(merge=Policy(hole_wait_seconds=2.0), substitutes={})
    first = decide({}, {"hi": [], "lo": [offer(B1, [1], duration=3.9)]}, 0.0, policy)
    assert {s.target_duration for s in first.states.values()} == {4}  # 3.9 s + 0.25 s headroom rounds to 4
    later = decide(first.states, {"hi": [offer(B1, [1, 2], duration=2.0)], "lo": [offer(B1, [1, 2], duration=2.0)]}, 1.0, policy)
    assert {s.target_duration for s in later.states.values()} == {4}


def test_two_second_segments_get_a_target_of_two_and_a_later_longer_one_is_passed_as_lost() -> None:
    """The answer for a later segment that does not fit: the target stays (RFC 8216 §6.2.1), the
    segment is passed like a lost one, with a DISCONTINUITY, and counted; one that fits is shown."""
    policy = StreamPolicy(merge=Policy(hole_wait_seconds=2.0), substitutes={})
    steps = [([1, 2], {}), ([1, 2, 3], {3: 2.45}), ([1, 2, 3, 4], {3: 2.45, 4: 2.6}),
             ([1, 2, 3, 4, 5], {3: 2.45, 4: 2.6}), ([1, 2, 3, 4, 5], {3: 2.45, 4: 2.6})]  # 4 waited for, then passed
    states: dict[str, PublishedState] = {}
    for now, (numbers, durations) in enumerate(steps):
        durations = {1: 2.02, 2: 1.98, **durations}
        outcome = decide(states, {"hi": [offer(B1, numbers, durations=durations)]}, 3.0 * now, policy)
        states = dict(outcome.states)
    hi = states["hi"]
    assert hi.target_duration == 2
    assert [(s.number, s.duration, s.discontinuity) for s in hi.segments] == [
        (1, 2.02, False), (2, 1.98, False), (3, 2.45, False), (5, 2.0, True)]
    assert hi.counts.too_long_skipped == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.floats(0.2, 7.0), min_size=1, max_size=3), min_size=1, max_size=10),
       st.lists(st.booleans(), min_size=10, max_size=10))
def test_every_published_extinf_fits_a_target_that_never_changes(batches: list[list[float]], lost: list[bool]) -> None:
    """Any durations, arriving in any batches: the target is the tightest for the first segments
    seen (plus the headroom), never changes, and every published EXTINF rounds to at most it."""
    policy = StreamPolicy(merge=Policy(hole_wait_seconds=2.0), substitutes={"hi": ("lo",), "lo": ("hi",)})
    states: dict[str, PublishedState] = {}
    durations: dict[int, float] = {}
    target = None
    for step, batch in enumerate(batches):
        first = len(durations) + 1
        durations.update({first + i: d for i, d in enumerate(batch)})
        held = sorted(durations)[-6:]
        fetched = {"hi": [offer(B1, held, durations=durations)],
                   "lo": [offer(B1, [n for n in held if not lost[n % 10]], durations=durations)]}
        states = dict(decide(states, fetched, 2.5 * step, policy).states)
        if target is None:
            target = max(1, math.floor(round(max(batch) + TARGET_HEADROOM_S, 3) + 0.5))
        for state in states.values():
            assert state.target_duration == target
            assert all(math.floor(s.duration + 0.5) <= target for s in state.segments)
        assert renditions_agree(states.values())


def test_nothing_offered_and_the_stream_ended_is_final() -> None:
    outcome = decide({}, {"hi": [], "lo": []}, 10.0, POLICY, ended_at=5.0)
    assert outcome.final and not outcome.changed


def test_events_count_stream_events_once_and_stand_ins_per_rendition() -> None:
    states: dict[str, PublishedState] = {}
    events: dict[str, int] = {}
    for now, hi, lo in [(0.0, [1, 3, 4], [1, 3]), (2.0, [1, 3, 4], [1, 3]), (4.0, [1, 3, 4], [1, 3])]:
        outcome = decide(states, {"hi": [offer(B1, hi)], "lo": [offer(B1, lo)]}, now, POLICY)
        states = dict(outcome.states)
        for k, v in outcome.events.items():
            events[k] = events.get(k, 0) + v
    assert events == {"holes_passed": 1, "numbers_skipped": 1, "substituted": 1}


def test_only_visible_changes_are_rerendered() -> None:
    first = decide({}, {"hi": [offer(B1, [1])], "lo": [offer(B1, [1])]}, 0.0, POLICY)
    waiting = decide(first.states, {"hi": [offer(B1, [1, 3])], "lo": [offer(B1, [1, 3])]}, 1.0, POLICY)
    assert set(waiting.changed) == {"hi", "lo"}  # the wait began: stored, so a new holder knows it
    assert waiting.visible == frozenset()


@pytest.mark.parametrize(
    "bitrates, expected",
    [
        ({"source": 6_000_000, "720p": 3_000_000, "360p": 1_000_000}, {"source": ("720p", "360p"), "720p": ("source", "360p"), "360p": ("720p", "source")}),
        ({"a": 1_000_000, "b": 2_000_000, "c": 500_000}, {"a": ("c", "b"), "b": ("a", "c"), "c": ("a", "b")}),
        ({"only": 1}, {"only": ()}),
    ],
)
def test_stand_ins_come_from_the_nearest_bitrate_lower_first(bitrates: dict[str, int], expected: dict[str, tuple[str, ...]]) -> None:
    assert substitutes_by_bitrate(bitrates) == expected


# (case, now, last discovery, last progress, target duration, due) with poll 0.5 s, discovery every 10 s
DISCOVERY_CASES = [
    ("on time: the regular interval only", 100.0, 95.0, 98.0, 2, False),
    ("on time, interval passed", 100.0, 90.0, 98.0, 2, True),
    ("just late: every poll", 100.0, 99.4, 96.9, 2, True),
    ("just late, polled a moment ago", 100.0, 99.8, 96.9, 2, False),
    ("late for less than players hold back: every poll", 100.0, 99.5, 93.5, 2, True),
    ("late for less than players hold back, polled a moment ago", 100.0, 99.7, 93.5, 2, False),
    ("long stalled: slower", 100.0, 97.0, 80.0, 2, False),
    ("long stalled, gap reached", 100.0, 91.0, 80.0, 2, True),
    ("never discovered", 100.0, float("-inf"), 100.0, 2, True),
]


@pytest.mark.parametrize(
    "now, last, progress, target, due", [c[1:] for c in DISCOVERY_CASES], ids=[c[0] for c in DISCOVERY_CASES]
)
def test_discovery_is_due_on_its_interval_and_sooner_once_late(now: float, last: float, progress: float, target: int, due: bool) -> None:
    assert discovery_due(now, last, progress, target, 0.5, 10.0) is due


# (case, late, carriers known, turn, asked) among the broadcasters a b c d, one asked in turn
DISCOVERY_ASKS = [
    ("first discovery of the feed: everyone", False, True, 0, "abcd"),
    ("late: the ingest may be anywhere", True, True, 5, "abcd"),
    ("no carrier known", False, False, 5, "abcd"),
    ("on time: one, in turn", False, True, 1, "b"),
    ("on time, next turn", False, True, 2, "c"),
    ("on time, wraps around", False, True, 4, "a"),
]


@pytest.mark.parametrize("late, known, turn, asked", [c[1:] for c in DISCOVERY_ASKS], ids=[c[0] for c in DISCOVERY_ASKS])
def test_discovery_asks_everyone_when_it_must_and_one_in_turn_otherwise(late: bool, known: bool, turn: int, asked: str) -> None:
    assert "".join(discovery_asks(list("abcd"), late, known, turn)) == asked


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 40), st.integers(1, 5), st.integers(1, 1000))
def test_a_backstop_discovery_asks_at_most_its_sample_and_everyone_within_a_cycle(n: int, sample: int, first: int) -> None:
    others = list(range(n))
    cycle = -(-n // sample) if n else 1
    seen: set[int] = set()
    for turn in range(first, first + cycle):
        asked = discovery_asks(others, False, True, turn, sample)
        assert len(asked) == min(n, sample) or len(asked) == n and n <= sample
        assert set(asked) <= set(others)
        seen |= set(asked)
    assert seen == set(others)  # nobody is left out for longer than a cycle


from hypothesis import assume, given, settings, strategies as st  # noqa: E402

from edge.playlists.round import quiet  # noqa: E402

offers = st.lists(st.integers(0, 30), max_size=8).map(lambda n: sorted(set(n)))


def played(steps: list[tuple[float, list[int], list[int]]]) -> tuple[dict[str, PublishedState], float, dict[str, list[FetchedPlaylist]]]:
    """The states after rounds (time gap, hi's offer, lo's offer) from B1, the last round's time and offers."""
    states: dict[str, PublishedState] = {}
    now = 0.0
    fetched: dict[str, list[FetchedPlaylist]] = {}
    for gap, hi, lo in steps:
        now += gap
        fetched = {"hi": [offer(B1, hi)], "lo": [offer(B1, lo)]}
        states = dict(decide(states, fetched, now, POLICY).states)
    return states, now, fetched


@settings(max_examples=600, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0, 3), offers, offers), min_size=1, max_size=8),
       later=st.floats(0, 100), data=st.data())
def test_a_quiet_round_changes_nothing_however_late(steps, later, data) -> None:
    # Whatever happened before, when `quiet` says so (here: offering again published numbers, mostly
    # up to the newest, unless a wait is pending), deciding again, any time later, changes nothing.
    states, now, _ = played(steps)
    fetched = {
        r: [offer(B1, sorted(data.draw(st.sets(st.sampled_from([s.number for s in states[r].segments] or [0])))
                             | {data.draw(st.sampled_from([(states[r].next_number or 0) - 1, 0]))}))]
        for r in ("hi", "lo") if r in states
    }
    if len(fetched) == 2 and quiet(states, fetched, None, POLICY.merge.restart_margin):
        outcome = decide(states, fetched, now + later, POLICY)
        assert not outcome.changed and not outcome.visible


def test_quiet_only_when_everything_offered_is_published() -> None:
    states = dict(decide({}, {"hi": [offer(B1, [1, 2])], "lo": [offer(B1, [1, 2])]}, 0.0, POLICY).states)
    assert quiet(states, {"hi": [offer(B1, [1, 2])], "lo": [offer(B1, [2])]}, None, POLICY.merge.restart_margin)
    assert not quiet(states, {"hi": [offer(B1, [1, 2, 3])], "lo": [offer(B1, [1, 2])]}, None, POLICY.merge.restart_margin)
    assert not quiet(states, {"hi": [offer(B1, [1, 2])], "lo": [offer(B1, [1, 2])]}, 5.0, POLICY.merge.restart_margin)  # ended


def test_a_published_number_listed_far_below_the_newest_is_not_quiet() -> None:
    # Found by the property above: 0 and 12 are both published, but a list starting 12 below the
    # next number is what an ingest restart looks like, and the merge starts watching it.
    states: dict[str, PublishedState] = {}
    for now, hi, lo in ((0.0, [0], [0, 1]), (2.0, [12], [12])):
        states = dict(decide(states, {"hi": [offer(B1, hi)], "lo": [offer(B1, lo)]}, now, POLICY).states)
    fetched = {"hi": [offer(B1, [12])], "lo": [offer(B1, [0, 12])]}
    assert decide(states, fetched, 2.0, POLICY).changed  # the merge watches a restart
    assert not quiet(states, fetched, None, POLICY.merge.restart_margin)


from edge.playlists.round import waits_end  # noqa: E402


@settings(max_examples=600, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0, 3), offers, offers), min_size=1, max_size=8),
       before=st.floats(0, 1), data=st.data())
def test_nothing_changes_with_time_alone_before_a_wait_runs_out(steps, before, data) -> None:
    # The feed's rounds between asks come at `waits_end` (cadence.next_round_at): deciding again on
    # the same offers any time before it shows players nothing new, so no round is needed there.
    states, now, fetched = played(steps)
    end = waits_end(states, POLICY.merge, now)
    assert end > now
    if math.isfinite(end):
        at = now + before * (end - now)  # anywhere in [now, end)
        assume(at < end)
        assert not decide(states, fetched, at, POLICY).visible


def test_a_hole_is_passed_in_the_round_when_its_wait_runs_out() -> None:
    first = decide({}, {"hi": [offer(B1, [1])], "lo": [offer(B1, [1])]}, 0.0, POLICY).states
    fetched = {"hi": [offer(B1, [1, 3])], "lo": [offer(B1, [1, 3])]}  # 2 lost
    waiting = decide(first, fetched, 10.0, POLICY).states
    end = waits_end(waiting, POLICY.merge, 10.0)
    assert end == 10.0 + POLICY.merge.hole_wait_seconds
    passed = decide(waiting, fetched, end, POLICY).states
    assert shown(passed["hi"]) == [(1, None, False), (3, None, True)]
    assert waits_end(passed, POLICY.merge, end) == math.inf


from edge.playlists.round import LEASE_WATCH_S, lease_watch_due  # noqa: E402


@pytest.mark.parametrize("since_progress, expected", [
    (1.0, 100.5),  # on time: every poll
    (2.9, 100.5),  # not yet 1.5 targets (3 s) without a new segment
    (3.0, 100.0 + LEASE_WATCH_S),  # late: the holder may be dead, its lease is watched closely
    (8.9, 100.0 + LEASE_WATCH_S),
    (9.0, 100.5),  # late for as long as players hold back (3 targets), then every poll again
])
def test_a_follower_watches_the_lease_of_a_late_stream_closely(since_progress: float, expected: float) -> None:
    assert lease_watch_due(100.0, 100.0 - since_progress, 2, 0.5) == pytest.approx(expected)


def test_a_hole_and_a_number_a_rendition_lacks_after_it_are_waited_for_side_by_side() -> None:
    """The chaos soak (seed 1): 82 lost, 83 listed in one rendition only. Both waits count from 83's
    first listing, so 83 is published (with a stand-in) one wait after it was first seen, not after
    the hole wait and then the rendition wait. Without listing times, the waits add up."""
    def play(with_seen: bool) -> list[dict[str, PublishedState]]:
        states: dict[str, PublishedState] = {}
        seen: dict[int, float] = {}
        out = []
        for now, offered in [
            (0.0, {"hi": [81], "lo": [81]}),
            (10.0, {"hi": [81, 83], "lo": [81]}),  # 82 lost; lo lacks 83
            (12.0, {"hi": [81, 83], "lo": [81]}),  # the hole's wait (2 s) ran out, and 83's
            (14.0, {"hi": [81, 83], "lo": [81]}),
        ]:
            for numbers in offered.values():
                for n in numbers:
                    seen.setdefault(n, now)
            fetched = {r: [offer(B1, numbers)] for r, numbers in offered.items()}
            states = dict(decide(states, fetched, now, POLICY, seen=seen if with_seen else None).states)
            out.append(states)
        return out

    at_12 = play(True)[2]  # both waits (2 s each) ran out: 83 published, a stand-in in lo
    assert shown(at_12["lo"])[-1] == (83, "hi", True)
    assert shown(at_12["hi"])[-1] == (83, None, True)
    one_after_another = play(False)
    assert one_after_another[2]["lo"].segments[-1].number == 81  # the hole passed, 83's wait begins
    assert shown(one_after_another[3]["lo"])[-1] == (83, "hi", True)
