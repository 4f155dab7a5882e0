"""The segment modes as pure decisions, through the round (`decide`): which numbers mirror mode
holds back, and which URI each published number gets. Tables of cases, checked by eye."""

from __future__ import annotations

import pytest

from edge.playlists.merge import Policy
from edge.playlists.round import StreamPolicy, decide
from edge.segments.policy import Copies, SegmentMode, SegmentPolicy, key_of, waiting_copies, object_key
from tests.playlists.builders import B1, offer

SID = "8c5f6b5e-0d1c-4a5e-9b1f-0123456789ab"
MERGE = Policy(window_seconds=60.0, hole_wait_seconds=2.0)


def policy(mode: SegmentMode, public_base: str = "", wait: float = 2.0) -> StreamPolicy:
    return StreamPolicy(merge=MERGE, fixed_target_duration=2, segments=SegmentPolicy(
        mode=mode, stream_id=SID, copy=mode is SegmentMode.MIRROR, public_base=public_base, mirror_wait=wait))


def key(n: int, rendition: str = "source", epoch: int = 0) -> str:
    return object_key(SID, rendition, epoch, n)


@pytest.mark.parametrize(
    "stored, wanted_since, now, published, direct",
    [
        # every number stored: all published, from the store
        ({0, 1, 2}, {}, 10.0, [0, 1, 2], []),
        # 1 not stored yet, wanted since 9.5: held back, and 2 behind it (no hole is passed)
        ({0, 2}, {1: 9.5}, 10.0, [0], []),
        # 1 waited the full mirror wait: published direct (counted), the rest from the store
        ({0, 2}, {1: 8.0}, 10.0, [0, 1, 2], [1]),
        # nothing stored, first seen now: nothing published yet
        (set(), {}, 10.0, [], []),
    ],
)
def test_mirror_publishes_a_number_once_stored_or_after_the_wait(
    stored: set[int], wanted_since: dict[int, float], now: float, published: list[int], direct: list[int]
) -> None:
    copies = Copies(stored=frozenset(key(n) for n in stored), wanted_since={key(n): t for n, t in wanted_since.items()})
    outcome = decide({}, {"source": [offer(B1, [0, 1, 2])]}, now, policy(SegmentMode.MIRROR), copies=copies)
    state = outcome.states.get("source")
    segments = state.segments if state is not None else ()
    assert [s.number for s in segments] == published
    for s in segments:
        expected = f"http://b1.test/stream/s/r/{s.number}.ts" if s.number in direct else f"/stream/{key(s.number)}"
        assert s.uri == expected
    assert outcome.fell_back == frozenset(key(n) for n in direct)


def test_mirror_uris_point_at_the_public_base_when_there_is_one() -> None:
    copies = Copies(stored=frozenset({key(0)}))
    outcome = decide({}, {"source": [offer(B1, [0])]}, 0.0, policy(SegmentMode.MIRROR, "https://cdn.test/seg/"),
                     copies=copies)
    assert outcome.states["source"].segments[0].uri == f"https://cdn.test/seg/{key(0)}"


def test_a_number_is_held_back_until_every_rendition_offering_it_is_stored() -> None:
    copies = Copies(stored=frozenset({key(0), key(0, "720p")}), wanted_since={key(1, "720p"): 0.0, key(1): 0.0})
    fetched = {"source": [offer(B1, [0, 1])], "720p": [offer(B1, [0, 1])]}
    outcome = decide({}, fetched, 1.0, policy(SegmentMode.MIRROR), copies=copies)
    assert [s.number for s in outcome.states["source"].segments] == [0]
    later = Copies(stored=copies.stored | {key(1)}, wanted_since=copies.wanted_since)
    outcome = decide(outcome.states, fetched, 1.5, policy(SegmentMode.MIRROR), copies=later)
    assert [s.number for s in outcome.states["720p"].segments] == [0]  # 720p's copy of 1 still missing


def test_redirect_uris_are_the_edges_route_and_never_change() -> None:
    outcome = decide({}, {"source": [offer(B1, [4, 5])]}, 0.0, policy(SegmentMode.REDIRECT))
    assert [s.uri for s in outcome.states["source"].segments] == [f"/stream/{key(4)}", f"/stream/{key(5)}"]
    again = decide(outcome.states, {"source": [offer(B1, [4, 5, 6])]}, 1.0, policy(SegmentMode.REDIRECT))
    assert [s.uri for s in again.states["source"].segments] == [f"/stream/{key(n)}" for n in (4, 5, 6)]
    assert again.states["source"].segments[0] is outcome.states["source"].segments[0]


def test_a_stand_in_points_at_the_copy_of_the_rendition_it_comes_from() -> None:
    fetched = {"source": [offer(B1, [0, 1])], "720p": [offer(B1, [0])]}
    first = decide({}, fetched, 0.0, policy(SegmentMode.REDIRECT))
    outcome = decide(first.states, fetched, 5.0, policy(SegmentMode.REDIRECT))
    stand_in = outcome.states["720p"].segments[-1]
    assert stand_in.substitute == "source" and stand_in.uri == f"/stream/{key(1)}"


def test_direct_mode_is_unchanged() -> None:
    outcome = decide({}, {"source": [offer(B1, [0])]}, 0.0, policy(SegmentMode.DIRECT))
    assert outcome.states["source"].segments[0].uri == "http://b1.test/stream/s/r/0.ts"


@pytest.mark.parametrize(
    "rendition, name, key",
    [
        ("source", "17", f"{SID}/source/17.ts"),
        ("P360p30fps16x9", "e2-0", f"{SID}/P360p30fps16x9/e2-0.ts"),
        ("source", "017", None),  # not a name this edge writes
        ("source", "..", None),
        ("..", "1", None),
        ("source", "e0-1", None),
        ("source", "1.ts", None),
    ],
)
def test_route_names_map_to_object_keys(rendition: str, name: str, key: str | None) -> None:
    assert key_of(SID, rendition, name) == key


def test_the_copies_waited_for_are_those_neither_stored_nor_past_the_mirror_wait() -> None:
    policy = SegmentPolicy(mode=SegmentMode.MIRROR, copy=True, stream_id="s", mirror_wait=2.0)
    copies = Copies(stored=frozenset({"k1"}), wanted_since={"k1": 5.0, "k2": 6.0, "k3": 7.0, "old": 1.0})
    # k1 is stored, "old" ran out already (its number goes out direct), "new" is not wanted yet.
    assert waiting_copies(copies, ["k1", "k2", "k3", "old", "new"], policy, now=7.5) == {"k2": 8.0, "k3": 9.0}
    assert waiting_copies(copies, ["k2"], policy, now=8.0) == {}  # at the end itself: run out
    direct = SegmentPolicy(stream_id="s", copy=True)  # a recording in direct mode holds nothing back
    assert waiting_copies(copies, ["k2"], direct, now=7.5) == {}
