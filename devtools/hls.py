"""A broadcaster's HLS, go-livepeer style: the sliding window of one rendition and the rendering of
its media playlist and of the stream's master playlist.

Segment URIs are `/stream/<id>/<rendition>/<n>.ts`, `<n>` being the ingest's sequence number; the
EXT-X-MEDIA-SEQUENCE is the window's own counter, unrelated to `<n>` (as go-livepeer's).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True, slots=True)
class Segment:
    number: int  # the ingest's sequence number
    duration: float  # seconds
    data: bytes


@dataclass(frozen=True, slots=True)
class Variant:
    """One line of the master playlist."""

    rendition: str
    bandwidth: int  # bit/s
    width: int | None
    height: int | None


class RenditionWindow:
    """The last `window` segments of one rendition, listed in the playlist, ordered by number.

    Segments that slid out stay downloadable until `retain` segments are held in all: a player (or
    the edge's longer merged window) may still ask for a segment shortly after it left the listing.
    """

    def __init__(self, window: int = 6, retain: int = 30) -> None:
        if window < 1:
            raise ValueError("window: must be >= 1")
        self.window = window
        self.retain = max(retain, window)
        self.media_sequence = 0  # grows by one for each segment that slides out of the listing
        self._listed: list[Segment] = []
        self._numbers: list[int] = []  # the numbers of _listed, for bisect
        self._slid_out: OrderedDict[int, Segment] = OrderedDict()
        self.max_duration = 0.0  # over the rendition's life, so that TARGETDURATION never shrinks

    def add(self, segment: Segment) -> None:
        """Add a segment; the same number again replaces the bytes in place (a retried upload)."""
        self.max_duration = max(self.max_duration, segment.duration)
        i = bisect.bisect_left(self._numbers, segment.number)
        if i < len(self._numbers) and self._numbers[i] == segment.number:
            self._listed[i] = segment
            return
        if segment.number in self._slid_out or (i == 0 and len(self._listed) >= self.window):
            # Older than everything listed: keep it downloadable, but listing it would shift the
            # numbering of what players already saw.
            self._slid_out[segment.number] = segment
            self._trim()
            return
        self._listed.insert(i, segment)
        self._numbers.insert(i, segment.number)
        while len(self._listed) > self.window:
            oldest = self._listed.pop(0)
            self._numbers.pop(0)
            self._slid_out[oldest.number] = oldest
            self.media_sequence += 1
        self._trim()

    def _trim(self) -> None:
        while self._slid_out and len(self._slid_out) + len(self._listed) > self.retain:
            self._slid_out.popitem(last=False)

    def listed(self) -> tuple[Segment, ...]:
        return tuple(self._listed)

    def get(self, number: int) -> Segment | None:
        i = bisect.bisect_left(self._numbers, number)
        if i < len(self._numbers) and self._numbers[i] == number:
            return self._listed[i]
        return self._slid_out.get(number)

    def __len__(self) -> int:
        return len(self._listed)


def target_duration(max_duration: float, default: int = 2) -> int:
    """EXT-X-TARGETDURATION: the longest EXTINF as rendered (milliseconds) rounded up, at least 1."""
    return max(1, math.ceil(round(max_duration, 3))) if max_duration > 0 else default


def render_media_playlist(
    stream_id: str, rendition: str, media_sequence: int, segments: Sequence[Segment], max_duration: float
) -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
        f"#EXT-X-TARGETDURATION:{target_duration(max_duration)}",
    ]
    for segment in segments:
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(f"/stream/{stream_id}/{rendition}/{segment.number}.ts")
    return "\n".join(lines) + "\n"


def render_master_playlist(stream_id: str, variants: Sequence[Variant]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for v in variants:
        attributes = f"PROGRAM-ID=0,BANDWIDTH={max(1, v.bandwidth)}"
        if v.width and v.height:
            attributes += f",RESOLUTION={v.width}x{v.height}"
        lines.append(f"#EXT-X-STREAM-INF:{attributes}")
        lines.append(f"{stream_id}/{v.rendition}.m3u8")  # relative to /stream/<id>.m3u8
    return "\n".join(lines) + "\n"
