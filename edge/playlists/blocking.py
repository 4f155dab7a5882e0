"""LL-HLS delivery directives for whole segments (draft-pantos-hls-rfc8216bis §6.2.5): what a
player's query asks (`_HLS_msn`, `_HLS_skip`), and whether a media playlist answers it now, after a
wait, or not at all. Pure functions of the request, the served version and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

# §6.2.5.2: a request for an MSN more than two beyond the last one published is refused at once,
# and one not satisfied within three target durations is answered 503.
MSN_AHEAD_LIMIT = 2
BLOCK_TARGETS = 3
# Appendix B: a blocking answer is tied to its MSN, so a CDN may keep it six target durations.
BLOCKING_CACHE_TARGETS = 6
_DIGITS = frozenset("0123456789")


class BadDirectives(ValueError):
    """The query is not one this server answers; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class Directives:
    """What the query asks, whatever the order of its parameters (so that equal requests have equal
    answers and cache keys)."""

    msn: int | None = None  # _HLS_msn: block until this media sequence number is published
    skip: bool = False  # _HLS_skip=YES: a Playlist Delta Update will do

    @property
    def blocking(self) -> bool:
        return self.msn is not None

    def query(self) -> str:
        """The normalised query string: parameters in one order, nothing else."""
        parts = []
        if self.msn is not None:
            parts.append(f"_HLS_msn={self.msn}")
        if self.skip:
            parts.append("_HLS_skip=YES")
        return "&".join(parts)


def parse_directives(query: str) -> Directives:
    """The delivery directives of a raw query string. Other parameters (a CDN's cache-buster or
    signature, a player's token) are ignored: they change nothing in the answer, and the directives
    alone make its cache key (`Directives.query`). BadDirectives for a malformed or repeated `_HLS_`
    directive, and for `_HLS_part` (no partial segments are published)."""
    if not query:
        return Directives()
    seen: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=64)
    except ValueError:
        raise BadDirectives("query: more than 64 parameters") from None
    for name, value in pairs:
        if not name.startswith("_HLS_"):
            continue
        if name in seen:
            raise BadDirectives(f"{name}: given more than once")
        seen[name] = value
    for name in seen:
        if name == "_HLS_part":
            raise BadDirectives("_HLS_part: no partial segments are published")
        if name not in ("_HLS_msn", "_HLS_skip"):
            raise BadDirectives(f"{name}: not a delivery directive this server knows")
    msn = None
    if "_HLS_msn" in seen:
        raw = seen["_HLS_msn"]
        if not raw or not set(raw) <= _DIGITS or len(raw) > 18:
            raise BadDirectives("_HLS_msn: must be a media sequence number (a non-negative integer)")
        msn = int(raw)
    skip = False
    if "_HLS_skip" in seen:
        if seen["_HLS_skip"] != "YES":  # "v2" also skips date ranges, which are never announced
            raise BadDirectives("_HLS_skip: must be YES")
        skip = True
    return Directives(msn=msn, skip=skip)


@dataclass(frozen=True, slots=True)
class Answer:
    """Serve the current version."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Hold the request until a newer version, at most until `until` (on the same clock as `now`)."""

    until: float


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int  # 400: too far ahead; 503: not published in time
    reason: str


Verdict = Answer | Wait | Refuse


def decide(msn: int | None, next_msn: int, ended: bool, target_duration: int, asked_at: float, now: float) -> Verdict:
    """A blocking reload's fate given the served version (`next_msn`: one past its last segment).

    Once the playlist has ENDLIST nothing more will come: every request is answered at once."""
    if msn is None or ended or msn < next_msn:
        return Answer()
    last = next_msn - 1
    if msn > last + MSN_AHEAD_LIMIT:
        return Refuse(400, f"_HLS_msn {msn}: more than {MSN_AHEAD_LIMIT} beyond the last published, {last}")
    deadline = asked_at + BLOCK_TARGETS * target_duration
    if now >= deadline:
        return Refuse(503, f"_HLS_msn {msn}: not published within {BLOCK_TARGETS} target durations")
    return Wait(deadline)


def cache_seconds(directives: Directives, target_duration: int, ended: bool, ended_max_age: int) -> int:
    """Cache lifetime of an answer (Appendix B): half a target duration for a plain reload, six for
    a blocking one (its URL names the MSN it waited for), long once the playlist has ended."""
    if ended:
        return ended_max_age
    if directives.blocking:
        return BLOCKING_CACHE_TARGETS * target_duration
    return max(1, target_duration // 2)
