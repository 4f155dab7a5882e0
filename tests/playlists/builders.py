"""Small constructors for upstream playlists and merge inputs, shared by the playlist tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from edge.playlists.merge import BroadcasterRef, FetchedPlaylist, Policy, PublishedState, merge
from edge.playlists.upstream_parse import UpstreamPlaylist, UpstreamSegment

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

B1 = BroadcasterRef("b1", "http://b1.test", rank=0)
B2 = BroadcasterRef("b2", "http://b2.test", rank=1)
B3 = BroadcasterRef("b3", "http://b3.test", rank=1)


def uri(source: BroadcasterRef, number: int) -> str:
    return f"{source.origin}/stream/s/r/{number}.ts"


def upstream(
    source: BroadcasterRef,
    numbers: Iterable[int],
    duration: float = 2.0,
    durations: dict[int, float] | None = None,
    dated: bool = False,
    discontinuity_before: Iterable[int] = (),
) -> UpstreamPlaylist:
    marks = set(discontinuity_before)
    return UpstreamPlaylist(
        segments=tuple(
            UpstreamSegment(
                number=n,
                uri=uri(source, n),
                duration=(durations or {}).get(n, duration),
                program_date_time=T0 + timedelta(seconds=2 * n) if dated else None,
                discontinuity=n in marks,
            )
            for n in sorted(set(numbers))
        )
    )


def offer(source: BroadcasterRef, numbers: Iterable[int], **kwargs: object) -> FetchedPlaylist:
    return FetchedPlaylist(broadcaster=source, playlist=upstream(source, numbers, **kwargs))  # type: ignore[arg-type]


def failed(source: BroadcasterRef) -> FetchedPlaylist:
    return FetchedPlaylist(broadcaster=source, playlist=None, error="timeout")


def run(
    steps: list[tuple[float, list[FetchedPlaylist]]],
    policy: Policy,
    target_duration: int = 2,
    state: PublishedState | None = None,
    ended_from: float | None = None,
) -> list[PublishedState]:
    """Every state a sequence of (time, fetched) rounds produces."""
    states = []
    for now, fetched in steps:
        ended = ended_from is not None and now >= ended_from
        state = merge(state, fetched, now, policy, target_duration, ended=ended)
        states.append(state)
    return states


def numbers(state: PublishedState) -> list[int]:
    return [s.number for s in state.segments]


def marked(state: PublishedState) -> list[int]:
    """Numbers of the segments preceded by a DISCONTINUITY."""
    return [s.number for s in state.segments if s.discontinuity]
