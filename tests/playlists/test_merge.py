"""Merge scenarios a viewer would notice: duplicates, holes, late arrivals, the window, the end,
failing broadcasters and ingest restarts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from edge.playlists.merge import (
    BroadcasterRef,
    FetchedPlaylist,
    MergeCounts,
    Policy,
    choose_target_duration,
    merge,
    new_state,
    renditions_agree,
)
from edge.playlists.upstream_parse import UpstreamPlaylist, UpstreamSegment
from tests.playlists.builders import B1, B2, B3, T0, failed, marked, numbers, offer, run, upstream, uri

POLICY = Policy(window_seconds=12.0, hole_wait_seconds=2.0, restart_margin=5)


# --- one number on several broadcasters ---------------------------------------------------------

# (case, broadcasters offering 5 (in fetch order), the one whose copy is published)
CHOICE_CASES = [
    ("preferred rank wins", [B2, B1], B1),
    ("fetch order does not matter", [B1, B2], B1),
    ("equal rank: origin decides", [B3, B2], B2),
    ("equal rank, other fetch order", [B2, B3], B2),
]


@pytest.mark.parametrize("offering, chosen", [c[1:] for c in CHOICE_CASES], ids=[c[0] for c in CHOICE_CASES])
def test_a_number_on_several_broadcasters_appears_once(
    offering: list[BroadcasterRef], chosen: BroadcasterRef
) -> None:
    state = merge(None, [offer(b, [5]) for b in offering], 0.0, POLICY, 2)
    assert [(s.number, s.uri, s.broadcaster) for s in state.segments] == [(5, uri(chosen, 5), chosen.name)]


def test_a_published_choice_is_kept_when_a_preferred_copy_appears_later() -> None:
    first = merge(None, [offer(B2, [5])], 0.0, POLICY, 2)
    later = merge(first, [offer(B1, [5, 6]), offer(B2, [5])], 1.0, POLICY, 2)
    assert [s.uri for s in later.segments] == [uri(B2, 5), uri(B1, 6)]


def test_a_too_long_copy_gives_way_to_a_valid_one() -> None:
    state = merge(None, [offer(B1, [5], duration=2.6), offer(B2, [5], duration=2.0)], 0.0, POLICY, 2)
    assert [s.uri for s in state.segments] == [uri(B2, 5)]


# --- holes ----------------------------------------------------------------------------------------


def test_a_hole_is_waited_for_then_passed_with_a_discontinuity() -> None:
    states = run(
        [
            (0.0, [offer(B1, [1, 2])]),
            (1.0, [offer(B1, [1, 2, 4])]),  # 3 is missing while 4 exists: the wait starts
            (2.9, [offer(B1, [1, 2, 4, 5])]),  # not waited long enough
            (3.0, [offer(B1, [1, 2, 4, 5])]),  # waited 2 s: pass 3
        ],
        POLICY,
    )
    assert [numbers(s) for s in states] == [[1, 2], [1, 2], [1, 2], [1, 2, 4, 5]]
    assert [s.waiting_since for s in states] == [None, 1.0, 1.0, None]
    assert marked(states[-1]) == [4]
    assert states[-1].counts == MergeCounts(holes_passed=1, numbers_skipped=1)
    assert states[-1].next_number == 6


def test_a_hole_passed_in_one_merge_keeps_its_discontinuity_when_the_next_number_waits() -> None:
    # 3 is passed at 3.0, but 4 is then only offered by a broadcaster that merely claims the stream
    # (provisional): it is waited for, and published by a later merge. The hole must still be marked.
    claimer = replace(B2, provisional=True)
    states = run(
        [
            (0.0, [offer(B1, [1, 2])]),
            (1.0, [offer(B1, [1, 2]), offer(claimer, [4])]),
            (3.0, [offer(B1, [1, 2]), offer(claimer, [4])]),  # 3 passed; 4 waited for
            (5.5, [offer(B1, [1, 2]), offer(claimer, [4])]),  # waited long enough: 4 published
        ],
        POLICY,
    )
    assert [numbers(s) for s in states[2:]] == [[1, 2], [1, 2, 4]]
    assert marked(states[-1]) == [4]
    assert states[-1].counts.holes_passed == 1


def test_a_hole_filled_in_time_gives_no_discontinuity() -> None:
    states = run(
        [
            (0.0, [offer(B1, [1, 2, 4])]),
            (1.0, [offer(B1, [1, 2, 4]), offer(B2, [3])]),
        ],
        POLICY,
    )
    assert numbers(states[-1]) == [1, 2, 3, 4]
    assert marked(states[-1]) == []


def test_a_late_arrival_of_a_passed_number_is_ignored() -> None:
    states = run(
        [
            (0.0, [offer(B1, [1, 2, 4])]),
            (2.0, [offer(B1, [1, 2, 4])]),  # 3 passed
            (3.0, [offer(B1, [2, 4, 5]), offer(B2, [3])]),  # 3 shows up at last
        ],
        POLICY,
    )
    assert numbers(states[-1]) == [1, 2, 4, 5]
    assert marked(states[-1]) == [4]


def test_nothing_later_means_no_wait_and_no_stall() -> None:
    # The stream is just not further yet; each segment is published as soon as it is next.
    states = run([(float(t), [offer(B1, range(1, t + 2))]) for t in range(4)], POLICY)
    assert [numbers(s) for s in states] == [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]
    assert all(s.waiting_since is None for s in states)


def test_a_long_outage_is_passed_in_one_jump() -> None:
    states = run([(0.0, [offer(B1, [1])]), (1.0, [offer(B1, [1, 2**40])]), (3.0, [offer(B1, [2**40])])], POLICY)
    assert numbers(states[-1]) == [1, 2**40]
    assert states[-1].counts.numbers_skipped == 2**40 - 2


def test_a_too_long_segment_is_skipped_like_a_hole_and_counted() -> None:
    states = run(
        [
            (0.0, [offer(B1, [1, 2, 3], durations={2: 2.5})]),  # 2.5 rounds to 3 > 2
            (2.0, [offer(B1, [1, 2, 3], durations={2: 2.5})]),
        ],
        POLICY,
    )
    assert [numbers(s) for s in states] == [[1], [1, 3]]
    assert marked(states[-1]) == [3]
    assert states[-1].counts == MergeCounts(holes_passed=1, numbers_skipped=1, too_long_skipped=1)


def test_a_segment_just_under_the_rounding_limit_is_published() -> None:
    state = merge(None, [offer(B1, [1], duration=2.499)], 0.0, POLICY, 2)
    assert numbers(state) == [1]


# --- first publish --------------------------------------------------------------------------------


def test_first_publish_starts_at_most_a_window_back() -> None:
    # window 12 s / target 2 s = 6 numbers back from the newest; an old stretch is left out.
    state = merge(None, [offer(B1, [100, 101, 102]), offer(B2, [120, 121, 122, 123])], 0.0, POLICY, 2)
    assert numbers(state) == [120, 121, 122, 123]
    assert state.media_sequence == 0


def test_first_publish_from_the_lowest_number_when_within_the_window() -> None:
    state = merge(None, [offer(B1, [7, 8]), offer(B2, [9, 10])], 0.0, POLICY, 2)
    assert numbers(state) == [7, 8, 9, 10]
    assert marked(state) == []


def test_nothing_offered_yet() -> None:
    state = merge(None, [failed(B1)], 0.0, POLICY, 2)
    assert state.segments == () and state.next_number is None and state.version == 0
    assert merge(state, [], 1.0, POLICY, 2) is state


# --- the window -------------------------------------------------------------------------------------


def test_window_trimming_and_discontinuity_sequence() -> None:
    policy = Policy(window_seconds=6.0, hole_wait_seconds=0.0)
    states = run(
        [
            (0.0, [offer(B1, [1, 2])]),
            (1.0, [offer(B1, [1, 2, 4])]),  # 4 marked (hole passed at once)
            (2.0, [offer(B1, [1, 2, 4, 5])]),
            (3.0, [offer(B1, [4, 5, 6])]),
            (4.0, [offer(B1, [5, 6, 7])]),  # 4 slides out with its DISCONTINUITY
        ],
        policy,
    )
    shapes = [(s.media_sequence, s.discontinuity_sequence, numbers(s), marked(s)) for s in states]
    assert shapes == [
        (0, 0, [1, 2], []),
        (0, 0, [1, 2, 4], [4]),
        (1, 0, [2, 4, 5], [4]),
        (2, 0, [4, 5, 6], [4]),
        (3, 1, [5, 6, 7], []),
    ]
    assert [s.msn for s in states[-1].segments] == [3, 4, 5]


def test_a_burst_after_an_outage_is_listed_whole_once_then_the_window_slides_back() -> None:
    """Segments that piled up while nobody polled (a lease holder dead, the store down) arrive in
    one merge. The version that adds them lists every one of them, so a player holding the previous
    version finds the segment after its last (the MSN never jumps past what it listed: players skip
    or re-download then, see DESIGN.md); the next version trims back to the window."""
    policy = Policy(window_seconds=6.0, hole_wait_seconds=0.0)
    steady = [(float(t), [offer(B1, range(t + 1), duration=1.0)]) for t in range(10)]
    burst = [(30.0, [offer(B1, range(4, 22), duration=1.0)]), (31.0, [offer(B1, range(5, 23), duration=1.0)])]
    *_, before, piled, after = run(steady + burst, policy, target_duration=1)
    assert numbers(before) == [4, 5, 6, 7, 8, 9]
    assert numbers(piled) == list(range(10, 22))  # 12 new ones: all listed, the old ones gone
    assert piled.media_sequence - before.media_sequence == len(before.segments)
    assert numbers(after) == [17, 18, 19, 20, 21, 22]  # back to the 6 s window


def test_window_never_below_three_target_durations() -> None:
    policy = Policy(window_seconds=1.0, hole_wait_seconds=0.0)  # asks for less than allowed
    state = run([(float(t), [offer(B1, range(t + 1))]) for t in range(10)], policy, target_duration=4)[-1]
    assert numbers(state) == [4, 5, 6, 7, 8, 9]  # 12 s: one fewer would be under 3 x 4 s


def test_window_of_short_segments_is_kept_by_duration() -> None:
    policy = Policy(window_seconds=6.0, hole_wait_seconds=0.0)
    state = run([(float(t), [offer(B1, range(t + 1), duration=0.5)]) for t in range(20)], policy)[-1]
    assert len(state.segments) == 12


# --- the end ---------------------------------------------------------------------------------------


def test_ended_publishes_what_is_there_then_never_changes() -> None:
    states = run(
        [
            (0.0, [offer(B1, [1, 2])]),
            (1.0, [offer(B1, [1, 2, 4, 5])]),  # hole at 3, waiting
            (1.5, [offer(B1, [1, 2, 4, 5])]),  # stream over: 3 passed at once, ENDLIST
            (9.0, [offer(B1, [3, 4, 5, 6, 7])]),
        ],
        POLICY,
        ended_from=1.5,
    )
    assert [numbers(s) for s in states] == [[1, 2], [1, 2], [1, 2, 4, 5], [1, 2, 4, 5]]
    assert [s.ended for s in states] == [False, False, True, True]
    assert states[3] is states[2]
    assert merge(states[2], [offer(B1, [6])], 20.0, POLICY, 2, ended=False) is states[2]


def test_ended_with_nothing_published() -> None:
    state = merge(None, [], 0.0, POLICY, 2, ended=True)
    assert state.ended and state.segments == ()


# --- failing broadcasters ----------------------------------------------------------------------------


def test_a_failing_broadcaster_contributes_nothing_and_breaks_nothing() -> None:
    with_failure = run(
        [
            (0.0, [offer(B1, [1, 2]), offer(B2, [1, 2])]),
            (1.0, [failed(B1), offer(B2, [2, 3])]),
            (2.0, [failed(B1), failed(B2)]),
            (3.0, [offer(B1, [3, 4]), failed(B2)]),
        ],
        POLICY,
    )
    without = run(
        [(0.0, [offer(B1, [1, 2]), offer(B2, [1, 2])]), (1.0, [offer(B2, [2, 3])]), (2.0, []), (3.0, [offer(B1, [3, 4])])],
        POLICY,
    )
    assert with_failure == without
    assert [s.uri for s in with_failure[-1].segments] == [uri(B1, 1), uri(B1, 2), uri(B2, 3), uri(B1, 4)]


def test_a_flapping_broadcaster_does_not_restart_the_wait() -> None:
    states = run(
        [
            (0.0, [offer(B1, [1, 3])]),  # waiting for 2 from 0.0
            (1.0, [failed(B1)]),
            (2.0, [offer(B1, [1, 3])]),
        ],
        POLICY,
    )
    assert numbers(states[-1]) == [1, 3]


# --- ingest restart ----------------------------------------------------------------------------------


def test_ingest_restart_starts_a_new_epoch_with_a_discontinuity() -> None:
    old_tail = list(range(94, 100))
    states = run(
        [
            (0.0, [offer(B1, old_tail)]),  # published 94..99
            (2.0, [offer(B1, old_tail + [0])]),  # ingest restarted at 0: watch starts
            (3.0, [offer(B1, old_tail + [0])]),  # no growth yet
            (4.0, [offer(B1, old_tail[1:] + [0, 1])]),  # grown and waited 2 s: new epoch
            (5.0, [offer(B1, old_tail[2:] + [0, 1, 2])]),  # old tail still listed: ignored
            (7.0, [offer(B1, [0, 1, 2, 3]), offer(B2, [5])]),  # an ordinary hole in the new epoch
            (9.0, [offer(B1, [0, 1, 2, 3]), offer(B2, [5])]),
        ],
        POLICY,
    )
    assert [numbers(s)[-3:] for s in states] == [
        [97, 98, 99],
        [97, 98, 99],
        [97, 98, 99],
        [99, 0, 1],
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 5],
    ]
    restarted = states[3]
    assert restarted.counts.restarts == 1
    assert marked(restarted) == [0]
    assert restarted.stale_numbers == (95, 104)  # old tail and stragglers
    assert states[-1].stale_numbers is None or states[-1].next_number < states[-1].stale_numbers[0]
    assert marked(states[-1]) == [0, 5]
    msns = [s.msn for s in states[-1].segments]
    assert msns == list(range(states[-1].media_sequence, states[-1].media_sequence + len(msns)))


def test_a_stalled_ingest_with_an_old_stretch_listed_is_not_a_restart() -> None:
    # b2 still lists what it carried long ago; the live ingest (on b1) pauses.
    states = run(
        [(0.0, [offer(B1, range(40, 46)), offer(B2, range(20, 26))])]
        + [(float(t), [offer(B1, range(40, 46)), offer(B2, range(20, 26))]) for t in range(1, 30)],
        POLICY,
    )
    assert numbers(states[-1]) == list(range(40, 46))
    assert states[-1].counts.restarts == 0


def test_broadcasters_flapping_over_old_stretches_are_not_a_restart() -> None:
    # b1 and b2 list different old stretches; b1 fails every third round. Seen together, the
    # numbers far below "grow" each time b1 comes back: growth only counts within one broadcaster.
    live = [offer(B3, range(40, 46))]
    rounds = [(0.0, live + [offer(B1, [20, 21]), offer(B2, [20])])]
    for t in range(1, 30):
        b1 = failed(B1) if t % 3 == 1 else offer(B1, [20, 21])
        rounds.append((float(t), [offer(B3, range(40, 46)), b1, offer(B2, [20])]))
    state = run(rounds, POLICY)[-1]
    assert numbers(state) == list(range(40, 46))
    assert state.counts.restarts == 0


def test_a_restart_is_seen_through_a_flapping_broadcaster() -> None:
    old = list(range(94, 100))
    states = run(
        [
            (0.0, [offer(B1, old)]),
            (1.0, [offer(B1, old), offer(B2, [0])]),  # watch b2's run 0..0
            (2.0, [offer(B1, old), failed(B2)]),  # a young watch waits for b2
            (3.0, [offer(B1, old), offer(B2, [0, 1])]),  # grown, watched 2 s: new epoch
        ],
        POLICY,
    )
    assert numbers(states[-1])[-3:] == [99, 0, 1]
    assert states[-1].counts.restarts == 1


def test_late_arrivals_during_a_stall_are_not_a_restart() -> None:
    states = run(
        [
            (0.0, [offer(B1, [10, 11, 12, 14])]),
            (2.0, [offer(B1, [10, 11, 12, 14])]),  # 13 passed
            (3.0, [offer(B1, [11, 12, 13, 14])]),  # ... and arrives late during a stall
            (9.0, [offer(B1, [11, 12, 13, 14])]),
        ],
        POLICY,
    )
    assert numbers(states[-1]) == [10, 11, 12, 14]
    assert states[-1].counts.restarts == 0


# --- dates ---------------------------------------------------------------------------------------------


def test_program_date_time_is_carried_and_extended() -> None:
    dated = upstream(B1, [1, 2], dated=True)
    undated = upstream(B2, [3])
    state = merge(
        None,
        [FetchedPlaylist(broadcaster=B1, playlist=dated), FetchedPlaylist(broadcaster=B2, playlist=undated)],
        0.0,
        POLICY,
        2,
    )
    assert [s.program_date_time for s in state.segments] == [
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=4),
        T0 + timedelta(seconds=6),  # extended from 2's date and duration
    ]


def test_upstream_discontinuity_is_honoured_but_not_on_the_first_segment() -> None:
    state = merge(None, [offer(B1, [1, 2, 3], discontinuity_before=[1, 3])], 0.0, POLICY, 2)
    assert marked(state) == [3]


# --- renditions ------------------------------------------------------------------------------------


def test_renditions_agree_until_a_number_is_missing_in_one_only() -> None:
    both = [(0.0, [offer(B1, [1, 2])]), (1.0, [offer(B1, [1, 2, 3])])]
    low, high = run(both, POLICY), run(both, POLICY)
    assert renditions_agree([low[-1], high[-1]])
    # 4 lost in the high rendition only: it passes 4, the low one publishes it.
    low = run([(2.0, [offer(B1, [2, 3, 4, 5])])], POLICY, state=low[-1])
    high = run([(2.0, [offer(B1, [2, 3, 5])]), (4.0, [offer(B1, [2, 3, 5])])], POLICY, state=high[-1])
    assert numbers(low[-1]) == [1, 2, 3, 4, 5] and numbers(high[-1]) == [1, 2, 3, 5]
    assert not renditions_agree([low[-1], high[-1]])


def test_renditions_with_different_target_durations_disagree() -> None:
    assert not renditions_agree([new_state(2, POLICY), new_state(3, POLICY)])


# --- inputs, versions, target duration ----------------------------------------------------------------


def test_version_grows_by_one_on_change_and_unchanged_state_is_returned_as_is() -> None:
    first = merge(None, [offer(B1, [1])], 0.0, POLICY, 2)
    same = merge(first, [offer(B1, [1])], 1.0, POLICY, 2)
    second = merge(first, [offer(B1, [1, 2])], 2.0, POLICY, 2)
    assert (first.version, same is first, second.version) == (1, True, 2)


def test_an_existing_state_keeps_its_target_duration() -> None:
    state = merge(None, [offer(B1, [1])], 0.0, POLICY, 2)
    assert merge(state, [offer(B1, [1, 2])], 1.0, POLICY, 6).target_duration == 2


@pytest.mark.parametrize("target", [0, 21, -1])
def test_target_duration_out_of_bounds_is_a_caller_bug(target: int) -> None:
    with pytest.raises(ValueError):
        new_state(target, POLICY)


@pytest.mark.parametrize(
    "kwargs", [dict(window_seconds=0), dict(hole_wait_seconds=-1), dict(restart_margin=0), dict(max_target_duration=0)]
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)  # type: ignore[arg-type]


# (observed durations, minimum, maximum, headroom, expected)
TARGET_CASES = [
    ([2.0, 2.0, 1.8], 1, None, 0.0, 2),
    ([2.002, 2.0], 1, None, 0.0, 2),  # RFC rounding: 2.002 fits a target of 2
    ([2.02, 1.98], 1, None, 0.25, 2),  # 2.0 s +- a frame: 2, and later ones up to 2.499 s still fit
    ([2.2], 1, None, 0.25, 2),  # 2.45 rounds to 2
    ([2.25], 1, None, 0.25, 3),  # a later 2.5 s would not fit 2
    ([2.49], 1, None, 0.0, 2),
    ([2.5], 1, None, 0.0, 3),  # halves go up, as the RFC's comparison does
    ([1.0], 4, None, 0.25, 4),  # configured minimum
    ([], 2, None, 0.25, 2),
    ([float("nan"), float("inf"), -1.0, 3.2], 1, None, 0.0, 3),
    ([45.0], 1, 10, 0.25, 10),
    ([0.3], 1, None, 0.0, 1),  # never below 1
    ([2.0004], 1, None, 0.0, 2),  # compared as rendered, to the millisecond
]


@pytest.mark.parametrize("observed, minimum, maximum, headroom, expected", TARGET_CASES)
def test_choose_target_duration(
    observed: list[float], minimum: int, maximum: int | None, headroom: float, expected: int
) -> None:
    assert choose_target_duration(observed, minimum, maximum, headroom) == expected


# --- large windows -----------------------------------------------------------------------------------------
# How long merges take is measured by bench/bench_playlists.py (--only merge), not asserted here: a
# wall-clock bound in a test fails on a loaded machine and cannot tell a slow round from a slow box.


def test_large_windows_from_many_broadcasters_slide_one_segment_a_round() -> None:
    # 20 broadcasters listing 3,600 segments each, window of 3,600 x 2 s; one new segment a round.
    policy = Policy(window_seconds=7200.0, hole_wait_seconds=2.0)
    sources = [BroadcasterRef(f"b{i}", f"http://b{i}.test", rank=i % 3) for i in range(20)]

    offered = {
        b: tuple(UpstreamSegment(number=n, uri=uri(b, n), duration=2.0) for n in range(3605)) for b in sources
    }
    rounds = [
        [FetchedPlaylist(broadcaster=b, playlist=UpstreamPlaylist(segments=offered[b][k : k + 3600])) for b in sources]
        for k in range(6)
    ]
    state = merge(None, rounds[0], 0.0, policy, 2)
    for k, round_ in enumerate(rounds[1:], start=1):
        state = merge(state, round_, float(k), policy, 2)
    assert len(state.segments) == 3600 and state.media_sequence == 5
    assert [s.number for s in state.segments] == list(range(5, 3605))
    assert {s.broadcaster for s in state.segments} == {"b0"}  # the preferred copy, every round
