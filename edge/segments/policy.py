"""Which URI a published segment gets, as pure functions: the segment modes.

- `direct`: the broadcaster's own URI (as before).
- `redirect`: the edge's own `/stream/<id>/<rendition>/<name>.ts`, which redirects to a live copy.
- `mirror`: the copy in the segment store; a number is held back until it is stored, for at most
  `mirror_wait` seconds, after which that one segment is published `direct` (counted, never a stall).

MSN -> URI is forever, so the URI is decided before a number is published: which segments are
stored is an input of the round (`Copies`), like the fetched playlists and the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Iterable, Mapping, Sequence

from edge.playlists.merge import FetchedPlaylist, PublishedSegment, PublishedState
from edge.streams.model import is_rendition_name, is_stream_id


class SegmentMode(StrEnum):
    DIRECT = "direct"
    REDIRECT = "redirect"
    MIRROR = "mirror"


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentPolicy:
    """How one stream's segments are published and kept."""

    mode: SegmentMode = SegmentMode.DIRECT
    stream_id: str = ""
    copy: bool = False  # copy every segment into the store (mirror mode, or a recording)
    public_base: str = ""  # mirror: URL prefix of the store's objects ("": the edge's segment route)
    mirror_wait: float = 2.0  # seconds a number may wait for its copy before it goes out direct


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentDefaults:
    """The deployment's segment settings, from which each stream's SegmentPolicy is made."""

    mode: SegmentMode = SegmentMode.DIRECT  # a stream may choose its own
    public_base: str = ""
    mirror_wait: float = 2.0
    max_recording: float = 4 * 3600.0  # a recording keeps at most this much of the stream (seconds)
    recording_retention: float = 3 * 86400.0  # an ended recording is served this long (seconds)


@dataclass(frozen=True, slots=True)
class Copies:
    """What the copier knows this round: object keys stored, and when each key was first wanted."""

    stored: frozenset[str] = frozenset()
    wanted_since: Mapping[str, float] = field(default_factory=dict)


def segment_name(epoch: int, number: int) -> str:
    """The file name of a number: ingest restarts begin again at 0, so every epoch after the first
    has names of its own (an MSN's URI must never be reused for other media)."""
    return f"{number}" if epoch == 0 else f"e{epoch}-{number}"


def object_key(stream_id: str, rendition: str, epoch: int, number: int) -> str:
    """Where a segment's copy lives in the store, and the path of the edge's route after /stream/."""
    return f"{stream_id}/{rendition}/{segment_name(epoch, number)}.ts"


def edge_path(key: str) -> str:
    return "/stream/" + key


def epoch_of(state: PublishedState | None) -> int:
    return state.counts.restarts if state is not None else 0


def wanted(
    states: Mapping[str, PublishedState], fetched: Mapping[str, Sequence[FetchedPlaylist]], policy: SegmentPolicy
) -> dict[str, list[tuple[str, str]]]:
    """The segments to copy this round: object key -> (broadcaster, URL) of each copy, preferred
    carrier first. Only numbers not yet published (from the stream's next number on)."""
    if not policy.copy:
        return {}
    reference = max(states.values(), key=lambda s: s.next_msn, default=None)
    lowest = reference.next_number if reference is not None and reference.next_number is not None else 0
    epoch = epoch_of(reference)
    out: dict[str, list[tuple[str, str]]] = {}
    for rendition, items in fetched.items():
        ordered = sorted(
            (i for i in items if i.playlist is not None),
            key=lambda i: (i.broadcaster.rank, i.broadcaster.tiebreak or i.broadcaster.origin, i.broadcaster.name),
        )
        for item in ordered:
            assert item.playlist is not None
            for segment in item.playlist.segments:
                if segment.number >= lowest:
                    out.setdefault(object_key(policy.stream_id, rendition, epoch, segment.number), []).append((item.broadcaster.name, segment.uri))
    return out


def waiting_copies(copies: Copies, keys: Iterable[str], policy: SegmentPolicy, now: float) -> dict[str, float]:
    """Mirror mode: the keys among these whose number `hold_back` still holds for its copy (not
    stored, its `mirror_wait` not run out at `now`), each with when that wait runs out; the feed
    runs a round then, not up to a poll later. Empty in the other modes: nothing waits."""
    if policy.mode is not SegmentMode.MIRROR:
        return {}
    waiting = {}
    for key in keys:
        since = copies.wanted_since.get(key)
        if key not in copies.stored and since is not None and since + policy.mirror_wait > now:
            waiting[key] = since + policy.mirror_wait
    return waiting


def hold_back(
    states: Mapping[str, PublishedState],
    fetched: Mapping[str, Sequence[FetchedPlaylist]],
    now: float,
    policy: SegmentPolicy,
    copies: Copies,
) -> dict[str, Sequence[FetchedPlaylist]]:
    """Mirror mode: the fetched playlists cut before the first number that is neither stored in
    every rendition offering it nor waited for `mirror_wait` already. The merge sees nothing past
    it, so it neither publishes it nor passes it as a hole: it simply is not there yet."""
    if policy.mode is not SegmentMode.MIRROR:
        return dict(fetched)
    reference = max(states.values(), key=lambda s: s.next_msn, default=None)
    lowest = reference.next_number if reference is not None and reference.next_number is not None else 0
    epoch = epoch_of(reference)
    offered: dict[int, set[str]] = {}
    for rendition, items in fetched.items():
        for item in items:
            if item.playlist is not None:
                for segment in item.playlist.segments:
                    if segment.number >= lowest:
                        offered.setdefault(segment.number, set()).add(rendition)
    cut = None
    for number in sorted(offered):
        keys = [object_key(policy.stream_id, r, epoch, number) for r in offered[number]]
        ready = all(k in copies.stored or now - copies.wanted_since.get(k, now) >= policy.mirror_wait for k in keys)
        if not ready:
            cut = number
            break
    if cut is None:
        return dict(fetched)
    return {
        rendition: [
            item if item.playlist is None else replace(
                item, playlist=replace(item.playlist, segments=tuple(s for s in item.playlist.segments if s.number < cut))
            )
            for item in items
        ]
        for rendition, items in fetched.items()
    }


@dataclass(frozen=True, slots=True)
class Assigned:
    states: dict[str, PublishedState]
    fell_back: frozenset[str]  # object keys published direct in mirror mode: not stored in time


def assign_uris(
    before: Mapping[str, PublishedState], after: Mapping[str, PublishedState], policy: SegmentPolicy, copies: Copies
) -> Assigned:
    """The newly published segments of `after` with the URIs of the stream's mode. A state with
    nothing new stays the same object."""
    if policy.mode is SegmentMode.DIRECT:
        return Assigned(dict(after), frozenset())
    out: dict[str, PublishedState] = {}
    fell_back: set[str] = set()
    for rendition, state in after.items():
        earlier = before.get(rendition)
        first_new = earlier.next_msn if earlier is not None else state.media_sequence
        if state is earlier or not state.segments or state.segments[-1].msn < first_new:
            out[rendition] = state
            continue
        epoch = epoch_of(state)
        segments = list(state.segments)
        for i, segment in enumerate(segments):
            if segment.msn < first_new:
                continue
            key = object_key(policy.stream_id, segment.substitute or rendition, epoch, segment.number)
            uri = _uri(key, segment, policy, copies)
            if uri == segment.uri and policy.mode is SegmentMode.MIRROR:
                fell_back.add(key)
            segments[i] = replace(segment, uri=uri)
        out[rendition] = replace(state, segments=tuple(segments))
    return Assigned(out, frozenset(fell_back))


def _uri(key: str, segment: PublishedSegment, policy: SegmentPolicy, copies: Copies) -> str:
    if policy.mode is SegmentMode.REDIRECT:
        return edge_path(key)
    if key not in copies.stored:
        return segment.uri  # not stored in time: this one segment stays on its broadcaster
    return f"{policy.public_base.rstrip('/')}/{key}" if policy.public_base else edge_path(key)


SEGMENT_NAME_PATTERN = r"^(?:e[1-9][0-9]{0,8}-)?(?:0|[1-9][0-9]{0,19})$"
_NAME = re.compile(SEGMENT_NAME_PATTERN)


def key_of(stream_id: str, rendition: str, name: str) -> str | None:
    """The object key the edge's route `/stream/<id>/<rendition>/<name>.ts` stands for, or None if
    the path names nothing this edge could have published (no traversal can hide in a key)."""
    if not (is_stream_id(stream_id) and is_rendition_name(rendition) and _NAME.match(name)):
        return None
    return f"{stream_id}/{rendition}/{name}.ts"
