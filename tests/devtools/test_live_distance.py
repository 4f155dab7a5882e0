"""devtools.live_distance's reading of what it measures: segment numbers in the edge's URIs and the
distance from a segment's start to the end of the playlist; ffmpeg's log lines."""

from __future__ import annotations

from devtools.live_distance import EXTINF, NUMBER, OPENING, PlaylistWatch, Run, report

PLAYLIST = """#EXTM3U
#EXT-X-TARGETDURATION:2
#EXTINF:2.000,
http://127.0.0.1:1/stream/abc/source/7.ts
#EXTINF:2.020,
http://127.0.0.1:1/stream/abc/source/8.ts
#EXTINF:1.980,
http://127.0.0.1:1/stream/abc/source/9.ts
"""


def test_behind_is_the_media_from_a_segments_start_to_the_end() -> None:
    watch = PlaylistWatch("unused")
    watch.segments = [(int(NUMBER.search(uri).group(1)), float(d)) for d, uri in EXTINF.findall(PLAYLIST)]  # type: ignore[union-attr]
    assert watch.behind(7) == 6.0
    assert round(watch.behind(9) or 0, 3) == 1.98
    assert watch.behind(6) is None  # no longer listed: not measured


def test_ffmpegs_opening_lines_name_the_segment() -> None:
    line = "[hls @ 0x55] Opening 'http://127.0.0.1:9/stream/abc/source/42.ts' for reading"
    assert [NUMBER.search(uri).group(1) for uri in OPENING.findall(line)] == ["42"]  # type: ignore[union-attr]
    assert OPENING.findall("[hls @ 0x55] Opening 'http://127.0.0.1:9/stream/abc/source.m3u8' for reading") == []


def test_the_report_has_a_row_per_run() -> None:
    runs = [Run(target_setting=3, target=3, hold_back="9.0", hlsjs=[6.0, 6.2], ffmpeg=[4.0, 2.0]),
            Run(target_setting=0, target=2, hold_back="6.0")]
    rows = report(runs, 40).splitlines()[-2:]
    assert rows[0].startswith("| 3 (fixed) | 9.0 s | 6.1 s (6.0-6.2, n=2) | - s | 0 |") and "| 4.0 s |" in rows[0]
    assert rows[1].startswith("| 2 (chosen by the edge) | 6.0 s | no samples")
