"""Rendering of playlists as served to players: a merged media playlist from its published state,
and a stream's master playlist from its renditions. Pure; the shell caches by state version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence
from urllib.parse import quote

from edge.playlists.merge import PublishedState


def render_media(state: PublishedState, vod: bool = False) -> bytes:
    """The media playlist for `state`: UTF-8 without BOM, absolute segment URIs. `vod`: an ended
    recording, announced as EXT-X-PLAYLIST-TYPE:VOD (it will never change).

    EXT-X-VERSION 3 is the lowest that allows decimal EXTINF, and nothing else here needs more.
    EXT-X-DISCONTINUITY-SEQUENCE is always written, 0 included: it costs one line and spares a
    reader the rule that its absence means 0.
    """
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{state.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{state.media_sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{state.discontinuity_sequence}",
    ]
    if vod and state.ended:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    append = lines.append
    for segment in state.segments:
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


def render_master(stream_id: str, renditions: Sequence[Rendition]) -> bytes:
    """The master playlist served at `/stream/<stream_id>.m3u8`, variants in the order given
    (players start with the first). URIs are relative, `<stream_id>/<rendition>.m3u8`, so the
    playlist works behind any host or CDN name."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    # quote(safe="") also escapes ":", which would otherwise turn "a:b/..." into a URI scheme.
    prefix = quote(stream_id, safe="") + "/"
    for rendition in renditions:
        attributes = [f"BANDWIDTH={rendition.bandwidth}"]
        if rendition.width is not None and rendition.height is not None:
            attributes.append(f"RESOLUTION={rendition.width}x{rendition.height}")
        if rendition.frame_rate is not None:
            attributes.append(f"FRAME-RATE={rendition.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(prefix + quote(rendition.name, safe="") + ".m3u8")
    lines.append("")
    return "\n".join(lines).encode()
