"""What one node saw of one stream over the last minutes, for operators: every segment it saw
published (with the broadcaster that supplied it, the hole or restart before it, when a carrier first
listed its number and how many carriers did), and the late arrivals of numbers already passed over.

Kept in memory, bounded, per node (the JSON says which node): the published window is only the
last ~24 s, and what is stored for other nodes is exactly the window, so minutes of history cannot be
derived from either. A node learns a segment when it adopts a state (publishing it, or following the
node that did), so every node has a timeline; listing times (hence the lag) only on the lease holder,
which is the node that reads the broadcasters' lists. The feed calls `listed` with each round's
fetches and `adopted` with each state it takes; the rest is plain functions over those values.
"""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from edge.playlists.merge import FetchedPlaylist, PublishedSegment, PublishedState

HISTORY_SECONDS = 300.0  # what the timeline shows
MAX_ENTRIES = 1024  # per rendition: 300 s of 0.3 s segments; a memory bound for absurd ones
MAX_EVENTS = 256
MAX_LISTED = 8192  # (rendition, number) first-listing times kept, oldest dropped first
MAX_SKIPPED = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One published segment as this node saw it appear."""

    msn: int
    number: int
    uri: str
    duration: float
    broadcaster: str
    discontinuity: bool
    substitute: str | None
    skipped_before: int  # ingest numbers passed over just before it: a hole of that many
    restart: bool  # its number is not above the previous one: a new ingest epoch
    published_at: float | None  # None: already published when this node began watching
    listed_at: float | None  # when a carrier was first seen listing its number (lease holder only)
    copies: int  # carriers listing its number when it was published: >1 is a duplicate arrival

    @property
    def lag(self) -> float | None:
        if self.published_at is None or self.listed_at is None:
            return None
        return max(0.0, self.published_at - self.listed_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    at: float
    kind: str  # "late": a number listed only after it was passed over
    rendition: str
    number: int
    broadcaster: str


def entries_for(
    previous: PublishedSegment | None,
    segments: Sequence[PublishedSegment],
    published_at: float | None,
    listed: Mapping[int, float],
    copies: Mapping[int, int],
) -> list[Entry]:
    """Timeline entries for newly seen `segments` (in MSN order), `previous` being the segment seen
    just before them: a hole is a DISCONTINUITY over numbers passed, a restart one over a number that
    did not grow."""
    out = []
    for segment in segments:
        skipped, restart = 0, False
        if previous is not None and segment.msn == previous.msn + 1:
            gap = segment.number - previous.number
            restart = gap <= 0
            if segment.discontinuity and gap > 1:
                skipped = gap - 1
        out.append(Entry(
            msn=segment.msn, number=segment.number, uri=segment.uri, duration=segment.duration,
            broadcaster=segment.broadcaster, discontinuity=segment.discontinuity, substitute=segment.substitute,
            skipped_before=skipped, restart=restart, published_at=published_at,
            listed_at=listed.get(segment.number), copies=copies.get(segment.number, 0),
        ))
        previous = segment
    return out


class StreamHistory:
    """The bounded memory behind a stream's timeline on this node."""

    def __init__(self, horizon: float = HISTORY_SECONDS) -> None:
        self.horizon = horizon
        self.entries: dict[str, deque[Entry]] = {}
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._last: dict[str, PublishedSegment] = {}  # per rendition, the newest segment seen
        self._listed: dict[tuple[str, int], float] = {}
        self._listers: dict[tuple[str, int], set[str]] = {}
        self._skipped: dict[tuple[str, int], None] = {}  # passed over, not (yet) listed: late if it comes

    def listed(self, fetched: Mapping[str, Sequence[FetchedPlaylist]], now: float) -> None:
        """A round's fetches: when each number was first listed, by whom, and late arrivals."""
        for rendition, items in fetched.items():
            for item in items:
                if item.playlist is None:
                    continue
                for segment in item.playlist.segments:
                    key = (rendition, segment.number)
                    seen = self._listed.get(key)
                    # Broadcasters list a number for seconds: one listed again long after is a new
                    # ingest epoch's (a restart numbers from 0 again), listed for the first time.
                    if seen is None or now - seen > self.horizon:
                        self._listed.pop(key, None)
                        self._listers.pop(key, None)
                        self._listed[key] = now
                        if key in self._skipped:
                            del self._skipped[key]
                            self.events.append(Event(at=now, kind="late", rendition=rendition,
                                                     number=segment.number, broadcaster=item.broadcaster.name))
                    self._listers.setdefault(key, set()).add(item.broadcaster.name)
        _bound(self._listed, MAX_LISTED)
        _bound(self._listers, MAX_LISTED)

    def first_listed(self, fetched: Mapping[str, Sequence[FetchedPlaylist]], above: int | None) -> dict[int, float]:
        """Per number these fetches list above `above` (all if None): when this node first saw it
        listed, in any rendition (the merge's waits count from then: merge_stream's `seen`)."""
        seen: dict[int, float] = {}
        for rendition, items in fetched.items():
            for item in items:
                if item.playlist is None:
                    continue
                for segment in reversed(item.playlist.segments):  # newest last: only the new tail
                    number = segment.number
                    if above is not None and number <= above:
                        break
                    at = self._listed.get((rendition, number))
                    if at is not None and at < seen.get(number, math.inf):
                        seen[number] = at
        return seen

    def adopted(self, states: Mapping[str, PublishedState], now: float) -> list[Entry]:
        """States this node took (published or followed): the segments it had not seen yet, which
        are returned (with their publish lag where this node saw them listed)."""
        added: list[Entry] = []
        for rendition, state in states.items():
            last = self._last.get(rendition)
            first_sight = last is None
            # Segments are in MSN order: the unseen ones are a tail, found without a scan (long
            # DVR windows), and never more than the ring keeps.
            start = 0 if last is None else max(0, last.msn + 1 - state.media_sequence)
            fresh = state.segments[max(start, len(state.segments) - MAX_ENTRIES):]
            if not fresh:
                continue
            numbers = {s.number for s in fresh}
            listed = {n: self._listed[(rendition, n)] for n in numbers if (rendition, n) in self._listed}
            copies = {n: len(self._listers.get((rendition, n), ())) for n in numbers}
            previous = last if last is not None and fresh[0].msn == last.msn + 1 else None
            new = entries_for(previous, fresh, None if first_sight else now, listed, copies)
            ring = self.entries.setdefault(rendition, deque(maxlen=MAX_ENTRIES))
            ring.extend(new)
            added += new
            for entry in new:
                for number in range(entry.number - min(entry.skipped_before, MAX_SKIPPED), entry.number):
                    if (rendition, number) not in self._listed:
                        self._skipped[(rendition, number)] = None
            self._last[rendition] = fresh[-1]
        _bound(self._skipped, MAX_SKIPPED)
        return added

    def timeline(self, rendition: str, now: float) -> list[Entry]:
        """The rendition's entries of the last `horizon` seconds (those seen at start-up included
        while they are younger than that)."""
        ring = self.entries.get(rendition, ())
        start = now - self.horizon
        out = [e for e in ring if e.published_at is None or e.published_at >= start]
        # Entries seen at start-up have no time: keep them only while newer timed ones do not fill it.
        timed = [e for e in out if e.published_at is not None]
        if timed and sum(e.duration for e in timed) >= self.horizon:
            out = timed
        return out

    def recent_events(self, now: float) -> list[Event]:
        return [e for e in self.events if e.at >= now - self.horizon]


def _bound(kept: dict[Any, Any], limit: int) -> None:
    """Drop the oldest insertions beyond `limit`."""
    for key in list(islice(kept, max(0, len(kept) - limit))):
        del kept[key]
