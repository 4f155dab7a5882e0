"""A stream's master playlist: its ladder as HLS variants, `source` first, rendered once per stream."""

from __future__ import annotations

from edge.playlists.render import Rendition, etag_of, render_master
from edge.streams.model import Stream

# Without a measured source bit rate, estimate it from the picture: ~0.1 bit per pixel per frame
# is a common H.264 figure for live 1080p30 (~6 Mbit/s).
BITS_PER_PIXEL = 0.1
UNKNOWN_SOURCE_BPS = 6_000_000


def renditions(stream: Stream) -> list[Rendition]:
    source = stream.source_info
    if source is not None:
        source_bps = max(1, int(source.width * source.height * source.fps * BITS_PER_PIXEL))
        variants = [Rendition(name="source", bandwidth=source_bps, width=source.width, height=source.height,
                              frame_rate=source.fps)]
    else:
        top = max((p.bitrate for p in stream.profiles), default=0)
        variants = [Rendition(name="source", bandwidth=max(UNKNOWN_SOURCE_BPS, top))]
    variants += [
        Rendition(name=p.name, bandwidth=p.bitrate, width=p.width, height=p.height,
                  frame_rate=p.fps / (p.fps_den or 1))
        for p in stream.profiles
    ]
    return variants


def master_playlist(stream: Stream) -> tuple[bytes, str]:
    """(body, ETag) of the stream's master playlist (cached by the route, per stream value)."""
    body = render_master(stream.id, renditions(stream))
    return body, etag_of(body)
