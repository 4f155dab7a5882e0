"""The operator timeline's memory (edge.playlists.history): holes, restarts, late and duplicate
arrivals, lag, and its bounds, over plain values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.playlists.history import MAX_ENTRIES, Entry, StreamHistory, entries_for
from edge.playlists.merge import PublishedSegment, PublishedState
from tests.playlists.builders import B1, B2, offer


def seg(msn: int, number: int, discontinuity: bool = False, broadcaster: str = "b1") -> PublishedSegment:
    return PublishedSegment(msn=msn, number=number, uri=f"http://{broadcaster}/{number}.ts", duration=2.0,
                            discontinuity=discontinuity, broadcaster=broadcaster)


def state(*segments: PublishedSegment) -> PublishedState:
    return PublishedState(target_duration=2, media_sequence=segments[0].msn if segments else 0, segments=segments,
                          next_number=segments[-1].number + 1 if segments else None)


# (case, previous segment, new segments, expected (skipped_before, restart) per new segment)
CASES = [
    ("consecutive", seg(4, 10), [seg(5, 11), seg(6, 12)], [(0, False), (0, False)]),
    ("hole of two", seg(4, 10), [seg(5, 13, True)], [(2, False)]),
    ("restart", seg(4, 10), [seg(5, 0, True)], [(0, True)]),
    ("gap without a mark is not called a hole", seg(4, 10), [seg(5, 12)], [(0, False)]),
    ("no previous: nothing to compare with", None, [seg(5, 13, True), seg(6, 15, True)], [(0, False), (1, False)]),
    ("previous not adjacent in MSN", seg(2, 10), [seg(5, 13, True)], [(0, False)]),
]


@pytest.mark.parametrize("previous, new, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_holes_and_restarts_are_read_from_numbers_and_marks(
    previous: PublishedSegment | None, new: list[PublishedSegment], expected: list[tuple[int, bool]]
) -> None:
    entries = entries_for(previous, new, 1.0, {}, {})
    assert [(e.skipped_before, e.restart) for e in entries] == expected


def test_lag_duplicates_and_late_arrivals() -> None:
    history = StreamHistory()
    history.adopted({"source": state(seg(0, 0), seg(1, 1))}, 10.0)  # at start-up: untimed
    history.listed({"source": [offer(B1, [2, 3]), offer(B2, [3, 5])]}, 11.0)
    history.adopted({"source": state(seg(0, 0), seg(1, 1), seg(2, 2), seg(3, 3))}, 11.5)
    history.adopted({"source": state(seg(2, 2), seg(3, 3), seg(4, 5, True))}, 14.0)  # 4 passed over
    history.listed({"source": [offer(B1, [4, 5, 6])]}, 15.0)  # 4 arrives late; 6 is new
    timeline = history.timeline("source", 15.0)
    assert [(e.number, e.published_at) for e in timeline] == [(0, None), (1, None), (2, 11.5), (3, 11.5), (5, 14.0)]
    by_number = {e.number: e for e in timeline}
    assert by_number[2].lag == 0.5 and by_number[2].copies == 1
    assert by_number[3].copies == 2  # listed by both: a duplicate arrival
    assert by_number[5].skipped_before == 1 and by_number[5].lag == 3.0
    assert [(e.kind, e.number, e.broadcaster) for e in history.recent_events(15.0)] == [("late", 4, B1.name)]
    # Listed again later: not late twice.
    history.listed({"source": [offer(B2, [4])]}, 16.0)
    assert len(history.recent_events(16.0)) == 1


def test_the_timeline_keeps_the_horizon_and_drops_untimed_entries_once_filled() -> None:
    history = StreamHistory(horizon=10.0)
    history.adopted({"r": state(seg(0, 0))}, 0.0)
    for n in range(1, 12):
        history.adopted({"r": state(seg(n, n))}, float(n * 2))
    timeline = history.timeline("r", 22.0)
    assert [e.number for e in timeline] == [6, 7, 8, 9, 10, 11]  # published within the last 10 s


windows = st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(steps=windows, window=st.integers(1, 8))
def test_every_segment_seen_appears_once_in_msn_order_with_its_hole(steps: list[tuple[int, bool]], window: int) -> None:
    """Whatever windows are adopted (sliding, several new segments at once, some never seen when the
    window slid past them between two adoptions), each MSN seen appears once, in order, and a hole is
    reported exactly where numbers were passed with a discontinuity after a segment seen."""
    segments, number = [], 0
    for msn, (step, _) in enumerate(steps):
        number += step
        segments.append(seg(msn, number, discontinuity=step > 1))
    history = StreamHistory(horizon=1e9)
    seen: set[int] = set()
    for i, (_, adopt) in enumerate(steps, start=1):
        if adopt or i == len(steps):
            shown = segments[max(0, i - window):i]
            history.adopted({"r": state(*shown)}, float(i))
            seen |= {s.msn for s in shown}
    timeline = history.timeline("r", float(len(steps)))
    assert [e.msn for e in timeline] == sorted(seen)
    for e in timeline:
        gap = segments[e.msn].number - segments[e.msn - 1].number - 1 if e.msn - 1 in seen else 0
        assert e.skipped_before == gap


def test_memory_is_bounded() -> None:
    history = StreamHistory(horizon=1e9)
    for n in range(MAX_ENTRIES + 50):
        history.listed({"r": [offer(B1, [n])]}, float(n))
        history.adopted({"r": state(seg(n, n))}, float(n))
    assert len(history.entries["r"]) == MAX_ENTRIES
    assert isinstance(history.timeline("r", 0.0)[0], Entry)


def test_a_number_listed_again_long_after_belongs_to_a_new_epoch() -> None:
    history = StreamHistory(horizon=300.0)
    history.listed({"r": [offer(B1, [0, 1])]}, 0.0)
    history.adopted({"r": state(seg(0, 0))}, 0.0)
    history.listed({"r": [offer(B2, [0, 1])]}, 1000.0)  # the ingest restarted: 0 and 1 again
    history.adopted({"r": state(seg(0, 0), seg(1, 1), seg(2, 0, True))}, 1001.0)
    (restart,) = [e for e in history.timeline("r", 1001.0) if e.restart]
    assert restart.listed_at == 1000.0 and restart.lag == 1.0 and restart.copies == 1


def test_a_huge_hole_costs_no_more_than_the_bound() -> None:
    history = StreamHistory()
    history.adopted({"r": state(seg(0, 0))}, 0.0)
    history.adopted({"r": state(seg(0, 0), seg(1, 10**9, True))}, 1.0)
    assert history.timeline("r", 1.0)[-1].skipped_before == 10**9 - 1
    assert len(history._skipped) <= 4096


def test_first_listed_is_the_earliest_listing_in_any_rendition_of_each_new_number() -> None:
    history = StreamHistory()
    history.listed({"hi": [offer(B1, [1, 2])], "lo": [offer(B1, [1])]}, 10.0)
    fetched = {"hi": [offer(B1, [1, 2, 3])], "lo": [offer(B1, [1, 2]), offer(B2, [4])]}
    history.listed(fetched, 11.0)
    assert history.first_listed(fetched, above=None) == {1: 10.0, 2: 10.0, 3: 11.0, 4: 11.0}
    assert history.first_listed(fetched, above=2) == {3: 11.0, 4: 11.0}  # only the new tail is read
