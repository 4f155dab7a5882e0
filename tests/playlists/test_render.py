"""Rendered playlists, read back with the `m3u8` library as a player-side parser would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import m3u8
import pytest

from edge.playlists.merge import Policy, PublishedSegment, PublishedState
from edge.playlists.render import Rendition, format_date_time, render_master, render_media
from tests.playlists.builders import B1, B2, T0, offer, run, uri


def test_media_playlist_reads_back() -> None:
    policy = Policy(window_seconds=6.0, hole_wait_seconds=0.0)
    state = run(
        [
            (0.0, [offer(B1, [1, 2], dated=True)]),
            (1.0, [offer(B1, [1, 2, 4], dated=True), offer(B2, [5], duration=1.5)]),
            (2.0, [offer(B2, [5, 6], duration=1.5)]),
        ],
        policy,
    )[-1]
    text = render_media(state)
    assert text.startswith(b"#EXTM3U\n") and text.endswith(b"\n")
    parsed = m3u8.loads(text.decode())
    assert parsed.version == 3
    assert parsed.target_duration == 2
    assert parsed.media_sequence == state.media_sequence == 1
    assert parsed.discontinuity_sequence == 0
    assert not parsed.is_endlist
    assert [(s.uri, s.duration, s.discontinuity) for s in parsed.segments] == [
        (uri(B1, 2), 2.0, False),
        (uri(B1, 4), 2.0, True),
        (uri(B2, 5), 1.5, False),
        (uri(B2, 6), 1.5, False),
    ]
    # Dates: upstream's where given, extended over the undated copies from b2.
    assert [s.current_program_date_time for s in parsed.segments] == [
        T0 + timedelta(seconds=4),
        T0 + timedelta(seconds=8),
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=11.5),
    ]


def test_exact_text() -> None:
    state = PublishedState(
        target_duration=4,
        media_sequence=7,
        discontinuity_sequence=2,
        segments=(
            PublishedSegment(msn=7, number=70, uri="https://b1.test/s/70.ts", duration=3.9996),
            PublishedSegment(
                msn=8,
                number=72,
                uri="https://b1.test/s/72.ts",
                duration=0.5,
                discontinuity=True,
                program_date_time=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
            ),
        ),
        ended=True,
    )
    assert render_media(state).decode() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=24.0,HOLD-BACK=12.0\n"
        "#EXTINF:4.000,\n"
        "https://b1.test/s/70.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z\n"
        "#EXTINF:0.500,\n"
        "https://b1.test/s/72.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    assert m3u8.loads(render_media(state).decode()).is_endlist


def test_no_bom_and_utf8() -> None:
    assert not render_media(PublishedState(target_duration=2)).startswith(b"\xef\xbb\xbf")


def test_format_date_time_is_utc_with_milliseconds() -> None:
    assert format_date_time(datetime(2024, 1, 2, 3, 4, 5, 999999, tzinfo=timezone.utc)) == "2024-01-02T03:04:05.999Z"


def test_master_playlist_reads_back() -> None:
    renditions = [
        Rendition(name="source", bandwidth=6_000_000),
        Rendition(name="P720p30fps16x9", bandwidth=4_000_000, width=1280, height=720, frame_rate=30.0),
        Rendition(name="P144p30fps16x9", bandwidth=400_000, width=256, height=144, frame_rate=29.97),
    ]
    text = render_master("abc123", renditions)
    parsed = m3u8.loads(text.decode(), uri="https://edge.test/stream/abc123.m3u8")
    assert parsed.is_variant
    rows = [
        (p.uri, p.absolute_uri, p.stream_info.bandwidth, p.stream_info.resolution, p.stream_info.frame_rate)
        for p in parsed.playlists
    ]
    assert rows == [
        ("abc123/source.m3u8", "https://edge.test/stream/abc123/source.m3u8", 6_000_000, None, None),
        ("abc123/P720p30fps16x9.m3u8", "https://edge.test/stream/abc123/P720p30fps16x9.m3u8", 4_000_000, (1280, 720), 30.0),
        ("abc123/P144p30fps16x9.m3u8", "https://edge.test/stream/abc123/P144p30fps16x9.m3u8", 400_000, (256, 144), 29.97),
    ]
    assert b"FRAME-RATE=29.970" in text


def test_master_uris_are_escaped() -> None:
    # ":" would otherwise make "a:b/..." an absolute URI with scheme "a".
    text = render_master("a:b c", [Rendition(name="x/y", bandwidth=1)]).decode()
    assert text.splitlines()[-1] == "a%3Ab%20c/x%2Fy.m3u8"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(name="", bandwidth=1),
        dict(name="x", bandwidth=0),
        dict(name="x", bandwidth=1, width=100),
        dict(name="x", bandwidth=1, width=0, height=10),
        dict(name="x", bandwidth=1, frame_rate=float("nan")),
    ],
)
def test_rendition_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Rendition(**kwargs)  # type: ignore[arg-type]


def _state_of(durations: list[float], target: int = 2, discontinuity_at: int | None = None) -> PublishedState:
    return PublishedState(
        target_duration=target, media_sequence=100, discontinuity_sequence=4,
        segments=tuple(
            PublishedSegment(msn=100 + i, number=i, uri=f"https://b1.test/s/{i}.ts", duration=d,
                             discontinuity=i == discontinuity_at)
            for i, d in enumerate(durations)
        ),
    )


@pytest.mark.parametrize(("durations", "skipped"), [
    ([], 0),
    ([2.0] * 6, 0),  # exactly CAN-SKIP-UNTIL (6 x 2 s) of media: nothing may be left out
    ([2.0] * 7, 1),
    ([2.0] * 20, 14),  # the last 12 s stay
    ([1.5] * 10, 2),  # 15 s: dropping two leaves 12 s, a third would leave 10.5 s
])
def test_a_delta_update_leaves_out_only_segments_before_the_skip_boundary(durations: list[float], skipped: int) -> None:
    state = _state_of(durations)
    full = m3u8.loads(render_media(state).decode())
    text = render_media(state, delta=True).decode()
    lines = text.splitlines()
    if skipped:
        assert "#EXT-X-VERSION:9" in lines  # EXT-X-SKIP needs version 9 (§8)
        assert f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}" in lines
    else:
        assert text == render_media(state).decode()
    # The same header (MEDIA-SEQUENCE is still that of the first, skipped, segment) and the same tail.
    assert f"#EXT-X-MEDIA-SEQUENCE:{state.media_sequence}" in lines
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:4" in lines
    kept = [line for line in lines if line.startswith("https://")]
    assert kept == [s.uri for s in full.segments][skipped:]
    assert sum(durations[skipped:]) >= min(sum(durations), 12.0)


def test_every_media_playlist_announces_blocking_reloads_and_delta_updates() -> None:
    for target in (1, 2, 7):
        lines = render_media(_state_of([1.0], target=target)).decode().splitlines()
        control = [line for line in lines if line.startswith("#EXT-X-SERVER-CONTROL:")]
        attributes = dict(a.split("=") for a in control[0].partition(":")[2].split(","))
        assert attributes == {"CAN-BLOCK-RELOAD": "YES", "CAN-SKIP-UNTIL": f"{6 * target:.1f}",
                              "HOLD-BACK": f"{3 * target:.1f}"}
