"""The reload rules of RFC 8216 §6.2.1, checked between two successive playlists a player received."""

from __future__ import annotations

import math
from dataclasses import dataclass

import m3u8


@dataclass(frozen=True)
class Seen:
    """One served playlist, reduced to what the rules talk about."""

    msn: int
    dseq: int
    target: int
    ended: bool
    version: int | None
    segments: tuple[tuple[str, float, bool], ...]  # (uri, duration, discontinuity before it)

    @classmethod
    def of(cls, text: str) -> "Seen":
        playlist = m3u8.loads(text)
        return cls(
            msn=playlist.media_sequence or 0,
            dseq=playlist.discontinuity_sequence or 0,
            target=int(playlist.target_duration),
            ended=bool(playlist.is_endlist),
            version=playlist.version,
            segments=tuple((s.uri, float(s.duration), bool(s.discontinuity)) for s in playlist.segments),
        )

    def discontinuity_numbers(self) -> list[int]:
        numbers, current = [], self.dseq
        for _, _, discontinuity in self.segments:
            current += discontinuity
            numbers.append(current)
        return numbers


def check_one(seen: Seen) -> None:
    assert seen.version == 3
    for uri, duration, _ in seen.segments:
        assert uri.startswith(("http://", "https://")), uri
        assert round(duration) <= seen.target, (duration, seen.target)


def content(seen: Seen) -> float:
    return sum(d for _, d, _ in seen.segments)


def check_reload(before: Seen, after: Seen) -> None:
    """Only append at the end, remove from the front, and count what was removed."""
    assert after.target == before.target, "EXT-X-TARGETDURATION changed"
    assert after.msn >= before.msn, "MEDIA-SEQUENCE went back"
    removed = after.msn - before.msn
    assert removed <= len(before.segments) or not before.segments, "MEDIA-SEQUENCE jumped past the window"
    kept = before.segments[removed:]
    assert after.segments[: len(kept)] == kept, "a published segment changed its URI, duration or tags"
    before_numbers = before.discontinuity_numbers()[removed:]
    assert after.discontinuity_numbers()[: len(kept)] == before_numbers, "discontinuity numbering changed"
    if before.ended:
        assert after == before, "a playlist changed after EXT-X-ENDLIST"
    if content(before) >= 3 * before.target:
        assert content(after) >= 3 * after.target - 1e-6, "the live window shrank below 3 target durations"
    assert math.isfinite(after.dseq) and after.dseq >= before.dseq
