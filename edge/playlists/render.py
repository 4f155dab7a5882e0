"""Rendering of playlists as served to players: a merged media playlist from its published state,
a stream's master playlist from its renditions, and the ETag of a rendered body. Pure; the shell
caches by state version.
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence
from urllib.parse import quote

from edge.playlists.merge import PublishedState
from edge.streams.model import CODEC


# LL-HLS for whole segments (draft-pantos-hls-rfc8216bis §4.4.3.8, §6.2.5): every media playlist
# announces blocking reloads and delta updates. HOLD-BACK and CAN-SKIP-UNTIL are the smallest the
# draft allows (3 and 6 target durations): a player holds back no more than it must, and a delta
# update leaves out as much as it may.
HOLD_BACK_TARGETS = 3
SKIP_UNTIL_TARGETS = 6
# EXT-X-SKIP needs compatibility version 9 (§8); a full playlist needs no more than 3.
VERSION = 3
DELTA_VERSION = 9


def server_control(target_duration: int) -> str:
    return (f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={SKIP_UNTIL_TARGETS * target_duration:.1f},"
            f"HOLD-BACK={HOLD_BACK_TARGETS * target_duration:.1f}")


def skippable(state: PublishedState) -> int:
    """How many segments at the front a Playlist Delta Update leaves out (§6.2.5.1): all those that
    end more than CAN-SKIP-UNTIL seconds before the end of the playlist."""
    boundary = SKIP_UNTIL_TARGETS * state.target_duration
    remaining = sum(segment.duration for segment in state.segments)
    skipped = 0
    for segment in state.segments:
        remaining -= segment.duration
        if remaining < boundary:
            break
        skipped += 1
    return skipped


def render_media(state: PublishedState, delta: bool = False, vod: bool = False) -> bytes:
    """The media playlist for `state`: UTF-8 without BOM, absolute segment URIs. `vod`: an ended
    recording, announced as EXT-X-PLAYLIST-TYPE:VOD (it never changes again). With `delta`, the
    Playlist Delta Update (`_HLS_skip=YES`): the same playlist with the segments before the skip
    boundary replaced by one EXT-X-SKIP tag (MEDIA-SEQUENCE and DISCONTINUITY-SEQUENCE unchanged).

    EXT-X-VERSION 3 is the lowest that allows decimal EXTINF, and nothing else in a full playlist
    needs more. EXT-X-DISCONTINUITY-SEQUENCE is always written, 0 included: it costs one line and
    spares a reader the rule that its absence means 0.
    """
    skipped = skippable(state) if delta else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{DELTA_VERSION if skipped else VERSION}",
        f"#EXT-X-TARGETDURATION:{state.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{state.media_sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{state.discontinuity_sequence}",
        server_control(state.target_duration),
    ]
    if vod and state.ended:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    if vod and state.ended:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    append = lines.append
    if skipped:
        append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    for segment in state.segments[skipped:]:
        if segment.discontinuity:
            append("#EXT-X-DISCONTINUITY")
        if segment.program_date_time is not None:
            append("#EXT-X-PROGRAM-DATE-TIME:" + format_date_time(segment.program_date_time))
        append(f"#EXTINF:{segment.duration:.3f},")
        append(segment.uri)
    if state.ended:
        append("#EXT-X-ENDLIST")
    append("")
    return "\n".join(lines).encode()


def etag_of(body: bytes) -> str:
    """The strong ETag of a rendered playlist: a digest of its bytes, so every node that renders
    the same playlist gives the same tag (a CDN or player may alternate between nodes)."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def encoded(body: bytes) -> tuple[bytes, str]:
    """What a served body also needs, computed once per version: its gzip form and its ETag."""
    return gzip.compress(body, compresslevel=6, mtime=0), etag_of(body)


def format_date_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, the form every player parses."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendition:
    """One variant of a stream as the master playlist announces it."""

    name: str  # e.g. "P144p30fps16x9", or "source"
    bandwidth: int  # peak bit/s
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    codecs: tuple[str, ...] = ()  # RFC 6381; empty: unknown, CODECS left out
    average_bandwidth: int | None = None  # bit/s, when measured

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if isinstance(self.bandwidth, bool) or not isinstance(self.bandwidth, int) or self.bandwidth <= 0:
            raise ValueError("bandwidth must be a positive int")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        if self.width is not None and self.height is not None and (self.width <= 0 or self.height <= 0):
            raise ValueError("width and height must be positive")
        if self.frame_rate is not None and not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError("frame_rate must be positive")
        if not all(CODEC.match(codec) for codec in self.codecs):
            raise ValueError("codecs must be RFC 6381 codec strings")
        if self.average_bandwidth is not None and not 0 < self.average_bandwidth:
            raise ValueError("average_bandwidth must be positive")


def render_master(stream_id: str, renditions: Sequence[Rendition]) -> bytes:
    """The master playlist served at `/stream/<stream_id>.m3u8`, variants in the order given
    (players start with the first). URIs are relative, `<stream_id>/<rendition>.m3u8`, so the
    playlist works behind any host or CDN name."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    # quote(safe="") also escapes ":", which would otherwise turn "a:b/..." into a URI scheme.
    prefix = quote(stream_id, safe="") + "/"
    for rendition in renditions:
        attributes = [f"BANDWIDTH={rendition.bandwidth}"]
        if rendition.average_bandwidth is not None:
            attributes.append(f"AVERAGE-BANDWIDTH={rendition.average_bandwidth}")
        if rendition.codecs:
            attributes.append('CODECS="' + ",".join(rendition.codecs) + '"')
        if rendition.width is not None and rendition.height is not None:
            attributes.append(f"RESOLUTION={rendition.width}x{rendition.height}")
        if rendition.frame_rate is not None:
            attributes.append(f"FRAME-RATE={rendition.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(prefix + quote(rendition.name, safe="") + ".m3u8")
    lines.append("")
    return "\n".join(lines).encode()
