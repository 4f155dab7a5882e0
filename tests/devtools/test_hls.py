"""The reference broadcaster's window and playlists, without a network."""

from __future__ import annotations

import pytest

from devtools.hls import (
    RenditionWindow,
    Segment,
    Variant,
    render_master_playlist,
    render_media_playlist,
    target_duration,
)


def seg(n: int, duration: float = 2.0, data: bytes = b"x") -> Segment:
    return Segment(n, duration, data)


def numbers(window: RenditionWindow) -> list[int]:
    return [s.number for s in window.listed()]


@pytest.mark.parametrize(
    "arrivals, listed, media_sequence",
    [
        ([100, 101, 102], [100, 101, 102], 0),
        ([100, 101, 102, 103, 104], [102, 103, 104], 2),  # slid out: the counter grows, unrelated to n
        ([100, 102, 101], [100, 101, 102], 0),  # a late transcode still lands in order
        ([100, 101, 102, 103, 99], [101, 102, 103], 1),  # older than the window: not listed
        ([100, 101, 101, 101], [100, 101], 0),  # a retried upload replaces, never duplicates
        ([5, 9, 20], [5, 9, 20], 0),  # the numbers of a stream spread over broadcasters have holes
    ],
)
def test_window_lists_the_newest_numbers_with_its_own_media_sequence(
    arrivals: list[int], listed: list[int], media_sequence: int
) -> None:
    window = RenditionWindow(window=3, retain=10)
    for n in arrivals:
        window.add(seg(n))
    assert numbers(window) == listed
    assert window.media_sequence == media_sequence


def test_segments_stay_downloadable_for_a_while_after_sliding_out() -> None:
    window = RenditionWindow(window=2, retain=4)
    for n in range(6):
        window.add(seg(n, data=bytes([n])))
    assert numbers(window) == [4, 5]
    assert [window.get(n) is not None for n in range(6)] == [False, False, True, True, True, True]
    window.add(seg(5, data=b"again"))
    assert window.get(5) == seg(5, data=b"again")


@pytest.mark.parametrize("longest, expected", [(2.0, 2), (2.021, 3), (0.5, 1), (0.0, 2), (6.0004, 6)])
def test_target_duration_is_the_longest_extinf_rounded_up(longest: float, expected: int) -> None:
    assert target_duration(longest) == expected


def test_media_playlist_has_go_livepeers_shape() -> None:
    text = render_media_playlist("abc", "P144p30fps16x9", 7, [seg(41, 2.0), seg(42, 2.5)], max_duration=2.5)
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:3\n"
        "#EXTINF:2.000,\n/stream/abc/P144p30fps16x9/41.ts\n"
        "#EXTINF:2.500,\n/stream/abc/P144p30fps16x9/42.ts\n"
    )


def test_master_playlist_points_at_each_rendition_relative_to_itself() -> None:
    text = render_master_playlist("abc", [Variant("source", 900_000, 640, 360), Variant("low", 400_000, None, None)])
    assert text.splitlines() == [
        "#EXTM3U", "#EXT-X-VERSION:3",
        "#EXT-X-STREAM-INF:PROGRAM-ID=0,BANDWIDTH=900000,RESOLUTION=640x360", "abc/source.m3u8",
        "#EXT-X-STREAM-INF:PROGRAM-ID=0,BANDWIDTH=400000", "abc/low.m3u8",
    ]
