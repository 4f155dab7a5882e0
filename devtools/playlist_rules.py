"""The rules a merged live media playlist must keep, checked on what a player received.

One copy for the tests and the chaos soak (`devtools.soak`). Every check returns the problems it
found as `Problem(kind, detail)` values, so that a long run can count them by kind; `check_one` and
`check_reload` raise AssertionError on the first one, for tests.

- one playlist: EXT-X-VERSION, TARGETDURATION >= every EXTINF rounded, absolute URIs;
- two successive reloads (RFC 8216 §6.2.1): MEDIA-SEQUENCE never decreases and grows by exactly the
  number of segments removed from the front; a published (MSN -> URI, duration, discontinuity)
  never changes; discontinuity numbering carries on; TARGETDURATION constant; nothing changes after
  ENDLIST; the window never shrinks below 3 target durations once it got there (§6.2.2);
- two renditions of one stream (§6.2.4): the same MSN is the same ingest segment (`<n>.ts`) with
  the same discontinuity number, and the target duration is the same;
- the layout: every URI is `/stream/<id>/<rendition>/<n>.ts` on a known broadcaster origin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple
from urllib.parse import urlsplit

import m3u8

# What a playlist with decimal EXTINF and no BYTERANGE, MAP or other later feature needs (§7).
EXPECTED_VERSION = 3
_NUMBER = re.compile(r"/([0-9]+)\.ts\Z")


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # a stable short name, for counting
    detail: str


class SegmentSeen(NamedTuple):
    uri: str
    duration: float
    discontinuity: bool  # an EXT-X-DISCONTINUITY precedes it


@dataclass(frozen=True)
class Seen:
    """One served playlist, reduced to what the rules talk about (`text` is kept for reports)."""

    msn: int
    dseq: int
    target: int
    ended: bool
    version: int | None
    segments: tuple[SegmentSeen, ...]
    text: str = field(default="", compare=False, repr=False)

    @classmethod
    def of(cls, text: str) -> "Seen":
        """Raises ValueError when `text` is not a media playlist."""
        if not text.startswith("#EXTM3U"):
            raise ValueError("not an M3U8 playlist")
        try:
            playlist = m3u8.loads(text)
        except Exception as exc:  # the library raises assorted types on malformed input
            raise ValueError(f"unparsable playlist: {exc}") from None
        if playlist.target_duration is None:
            raise ValueError("no EXT-X-TARGETDURATION")
        return cls(
            msn=playlist.media_sequence or 0,
            dseq=playlist.discontinuity_sequence or 0,
            target=int(playlist.target_duration),
            ended=bool(playlist.is_endlist),
            version=playlist.version,
            segments=tuple(SegmentSeen(s.uri, float(s.duration), bool(s.discontinuity)) for s in playlist.segments),
            text=text,
        )

    @property
    def next_msn(self) -> int:
        return self.msn + len(self.segments)

    @property
    def content(self) -> float:
        """Seconds of media listed."""
        return sum(s.duration for s in self.segments)

    def discontinuity_numbers(self) -> list[int]:
        """The discontinuity sequence number of each segment."""
        numbers, current = [], self.dseq
        for segment in self.segments:
            current += segment.discontinuity
            numbers.append(current)
        return numbers

    def by_msn(self) -> dict[int, tuple[SegmentSeen, int]]:
        """MSN -> (segment, its discontinuity number)."""
        return {
            self.msn + i: (segment, dnum)
            for i, (segment, dnum) in enumerate(zip(self.segments, self.discontinuity_numbers()))
        }


def ingest_number(uri: str) -> int | None:
    """`<n>` of a URI ending in `/<n>.ts` (the ingest's sequence number), else None."""
    match = _NUMBER.search(urlsplit(uri).path)
    return int(match[1]) if match else None


def one_problems(seen: Seen) -> list[Problem]:
    problems = []
    if seen.version != EXPECTED_VERSION:
        problems.append(Problem("version", f"EXT-X-VERSION {seen.version}, expected {EXPECTED_VERSION}"))
    for s in seen.segments:
        if round(s.duration) > seen.target:
            problems.append(Problem("extinf_over_target", f"EXTINF {s.duration} > target {seen.target}: {s.uri}"))
        if not s.uri.startswith(("http://", "https://")):
            problems.append(Problem("relative_uri", s.uri))
    return problems


def reload_problems(before: Seen, after: Seen) -> list[Problem]:
    """Only append at the end, remove from the front, and count what was removed (§6.2.1)."""
    problems = []
    if after.target != before.target:
        problems.append(Problem("target_changed", f"EXT-X-TARGETDURATION {before.target} -> {after.target}"))
    if after.msn < before.msn:
        problems.append(Problem("msn_decreased", f"MEDIA-SEQUENCE {before.msn} -> {after.msn}"))
        return problems  # what follows compares positions that no longer mean anything
    removed = after.msn - before.msn
    if removed > len(before.segments) and before.segments:
        problems.append(Problem(
            "msn_jump", f"MEDIA-SEQUENCE {before.msn} -> {after.msn} skips past the {len(before.segments)} listed"))
        return problems
    kept = before.segments[removed:]
    for i, (old, new) in enumerate(zip(kept, after.segments)):
        if old != new:
            problems.append(Problem("segment_changed", f"MSN {after.msn + i}: {_show(old)} -> {_show(new)}"))
            break
    if len(after.segments) < len(kept):
        problems.append(Problem(
            "segments_removed_from_end",
            f"MSN {after.next_msn}..{before.next_msn - 1} vanished while MEDIA-SEQUENCE grew by {removed}"))
    if after.dseq < before.dseq:
        problems.append(Problem("dseq_decreased", f"DISCONTINUITY-SEQUENCE {before.dseq} -> {after.dseq}"))
    elif before.discontinuity_numbers()[removed:][: len(after.segments)] != after.discontinuity_numbers()[: len(kept)]:
        problems.append(Problem(
            "discontinuity_numbering",
            f"DISCONTINUITY-SEQUENCE {before.dseq} -> {after.dseq} with {removed} removed: kept segments renumbered"))
    if before.ended and after != before:
        problems.append(Problem("changed_after_endlist", "the playlist changed after EXT-X-ENDLIST"))
    if before.content >= 3 * before.target and not after.ended and after.content < 3 * after.target - 1e-6:
        problems.append(Problem(
            "window_shrank", f"{after.content:.3f} s listed, below 3 x target duration {after.target}"))
    return problems


def alignment_problems(a: Seen, b: Seen) -> list[tuple[Problem, int]]:
    """For every MSN in both renditions' playlists: the same ingest number and discontinuity
    number (§6.2.4). Each problem comes with the MSN, and with the offset in ingest numbers or
    discontinuity numbers, so that one drift can be told from the next."""
    found: list[tuple[Problem, int]] = []
    if a.target != b.target:
        found.append((Problem("target_differs", f"EXT-X-TARGETDURATION {a.target} vs {b.target}"), 0))
    theirs = b.by_msn()
    for msn, (segment, dnum) in a.by_msn().items():
        if msn not in theirs:
            continue
        other, other_dnum = theirs[msn]
        n, m = ingest_number(segment.uri), ingest_number(other.uri)
        if n is not None and m is not None and n != m:
            found.append((Problem("misaligned", f"MSN {msn}: {segment.uri} vs {other.uri}"), n - m))
        if dnum != other_dnum:
            found.append((Problem(
                "discontinuity_misaligned", f"MSN {msn}: discontinuity number {dnum} vs {other_dnum}"), dnum - other_dnum))
    return found


def layout_problem(
    uri: str, stream_id: str, rendition: str, origins: Iterable[str], stand_ins: Iterable[str] = ()
) -> Problem | None:
    """A URI must be `<origin>/stream/<id>/<rendition>/<n>.ts` for one of `origins`, and nothing more;
    or, where the edge shows another rendition's copy of a number this one lacks, the same in one of
    the stream's other renditions (`stand_ins`; see `stand_in_problems` for how they must be framed)."""
    try:
        parts = urlsplit(uri)
        origin = f"{parts.scheme}://{parts.netloc}"
    except ValueError:
        return Problem("uri_outside_layout", f"unparsable: {uri}")
    if origin not in set(origins):
        return Problem("uri_foreign_host", uri)
    names = "|".join(re.escape(r) for r in (rendition, *stand_ins))
    expected = re.compile(rf"/stream/{re.escape(stream_id)}/(?:{names})/[0-9]+\.ts")
    if parts.query or parts.fragment or not expected.fullmatch(parts.path):
        return Problem("uri_outside_layout", uri)
    return None


def stand_in_problems(seen: Seen, rendition: str) -> list[Problem]:
    """Another rendition's copy shown in this one is a change of encoding: a DISCONTINUITY must come
    before it, and before the first own segment after it (RFC 8216 §4.4.4.3)."""
    problems = []
    previous: str | None = None  # the rendition of the previous segment's copy
    for uri, _, discontinuity in seen.segments:
        parts = urlsplit(uri).path.split("/")
        source = parts[-2] if len(parts) >= 2 else rendition
        if previous is not None and source != previous and not discontinuity:
            problems.append(Problem("stand_in_unframed", f"{uri} follows a copy of {previous} without a DISCONTINUITY"))
        previous = source
    return problems


class ReloadChecker:
    """What one player keeps between reloads: the previous playlist, and whether the window ever
    reached 3 target durations (from then on it must never be shorter)."""

    def __init__(self) -> None:
        self.last: Seen | None = None
        self.window_reached = False

    def check(self, seen: Seen) -> list[Problem]:
        problems = one_problems(seen)
        if self.last is not None:
            problems += [p for p in reload_problems(self.last, seen) if p.kind != "window_shrank"]
        full = seen.content >= 3 * seen.target - 1e-6
        if self.window_reached and not full and not seen.ended:
            problems.append(Problem(
                "window_shrank", f"{seen.content:.3f} s listed, below 3 x target duration {seen.target}"))
        self.window_reached = self.window_reached or full
        self.last = seen
        return problems


def check_one(seen: Seen) -> None:
    problems = one_problems(seen)
    assert not problems, problems[0]


def check_reload(before: Seen, after: Seen) -> None:
    problems = reload_problems(before, after)
    assert not problems, problems[0]


def _show(segment: SegmentSeen) -> str:
    return f"{segment.uri} ({segment.duration:.3f} s{', after a discontinuity' if segment.discontinuity else ''})"


def check_next(seen: list[Seen], current: Seen) -> None:
    """A player's next reload: `current` is valid alone and against the last of `seen`, then kept."""
    check_one(current)
    if seen:
        check_reload(seen[-1], current)
    seen.append(current)
