"""A stream's master playlist: its ladder as HLS variants, `source` first, rendered once per stream
value. What the renditions were found to carry (codecs, picture size, measured bit rates: probed
from their first segments, see edge/playlists/probing.py) wins over what the profiles declare;
until it is known, the declaration stands and CODECS is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import replace

from edge.playlists.render import Rendition, etag_of, render_master
from edge.streams.model import SOURCE, RenditionMedia, Stream

# Without a measured source bit rate, estimate it from the picture: ~0.1 bit per pixel per frame
# is a common H.264 figure for live 1080p30 (~6 Mbit/s).
BITS_PER_PIXEL = 0.1
UNKNOWN_SOURCE_BPS = 6_000_000


def renditions(stream: Stream) -> list[Rendition]:
    source = stream.source_info
    if source is not None:
        source_bps = max(1, int(source.width * source.height * source.fps * BITS_PER_PIXEL))
        declared = Rendition(name=SOURCE, bandwidth=source_bps, width=source.width, height=source.height,
                             frame_rate=source.fps)
    else:
        top = max((p.bitrate for p in stream.profiles), default=0)
        declared = Rendition(name=SOURCE, bandwidth=max(UNKNOWN_SOURCE_BPS, top))
    variants = [_measured(declared, stream.media_of(SOURCE), estimated=True)]
    variants += [
        _measured(
            Rendition(name=p.name, bandwidth=p.bitrate, width=p.width, height=p.height,
                      frame_rate=p.fps / (p.fps_den or 1)),
            stream.media_of(p.name), estimated=False,
        )
        for p in stream.profiles
    ]
    return variants


def _measured(declared: Rendition, media: RenditionMedia | None, estimated: bool) -> Rendition:
    """`declared` corrected by what the media was found to be. The source's bit rate is only an
    estimate, so a measured one replaces it; a profile's is what its encoder aims at, and a few
    measured segments may miss the peak, so BANDWIDTH is the higher of the two."""
    if media is None:
        return declared
    bandwidth = declared.bandwidth
    if media.bandwidth is not None:
        bandwidth = media.bandwidth if estimated else max(bandwidth, media.bandwidth)
    width, height = (media.width, media.height) if media.width is not None else (declared.width, declared.height)
    return replace(declared, bandwidth=bandwidth, width=width, height=height, codecs=media.codecs,
                   average_bandwidth=media.average_bandwidth)


# How long players and CDNs may keep a master playlist: the ladder never changes, but what the
# renditions carry is learnt from their first segments, so until every one is known the master is
# kept briefly, and players and CDNs that ask after the probe get CODECS.
MAX_AGE_S = 60
MAX_AGE_UNPROBED_S = 2


def max_age(stream: Stream) -> int:
    return MAX_AGE_S if all(stream.media_of(r) is not None for r in stream.rendition_names) else MAX_AGE_UNPROBED_S


def master_playlist(stream: Stream) -> tuple[bytes, str]:
    """(body, ETag) of the stream's master playlist (cached by the route, per stream value)."""
    body = render_master(stream.id, renditions(stream))
    return body, etag_of(body)
