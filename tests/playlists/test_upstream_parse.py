"""Parsing one broadcaster's media playlist: what is kept, what is refused and counted, and that
hostile input never raises."""

from __future__ import annotations

import os
from datetime import datetime, timezone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.playlists.layout import Layout
from edge.playlists.upstream_parse import ParseLimits, Reject, UpstreamPlaylist, parse_upstream
from edge.playlists.uri import resolve_uri

ORIGIN = "https://b1.example.com:8935"
URL = ORIGIN + "/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/P144p30fps16x9.m3u8"
SEGMENT_DIR = ORIGIN + "/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/P144p30fps16x9/"


def playlist(*body: str) -> str:
    return "\n".join(["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", *body]) + "\n"


def one(uri_line: str, extinf: str = "#EXTINF:2.000,") -> str:
    return playlist(extinf, uri_line)


D = "/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/P144p30fps16x9/"  # the rendition's segment directory in go-livepeer's layout
PLACE = Layout().segment_place("8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", "P144p30fps16x9")


def parse(text: str | bytes, url: str = URL, origin: str = ORIGIN, limits: ParseLimits | None = None) -> UpstreamPlaylist:
    return parse_upstream(text, url, origin, PLACE, limits or ParseLimits())


# (case, playlist text, expected {number: absolute URI}, expected rejected counts)
URI_CASES = [
    ("go-livepeer absolute path", one(D + "7.ts"), {7: SEGMENT_DIR + "7.ts"}, {}),
    ("relative to the playlist", one("P144p30fps16x9/7.ts"), {7: SEGMENT_DIR + "7.ts"}, {}),
    ("dot-dot back into the layout", one("../8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/P144p30fps16x9/7.ts"), {7: SEGMENT_DIR + "7.ts"}, {}),
    ("dot segments that resolve into the layout", one("/stream/./x/../8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/P144p30fps16x9/7.ts"), {7: SEGMENT_DIR + "7.ts"}, {}),
    ("absolute URL, host in capitals", one("https://B1.EXAMPLE.COM:8935" + D + "7.ts"), {7: "https://B1.EXAMPLE.COM:8935" + D + "7.ts"}, {}),
    ("fragment dropped", one("P144p30fps16x9/7.ts#t=3"), {7: SEGMENT_DIR + "7.ts"}, {}),
    ("leading zeros", one(D + "007.ts"), {7: SEGMENT_DIR + "007.ts"}, {}),
    # On the origin, but not where the layout keeps this rendition's segments.
    ("bare name (the stream directory)", one("7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("dot-dot above the root", one("../../../../etc/16.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("another directory", one("/admin/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("another stream", one("/stream/other/P144p30fps16x9/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("another rendition", one("/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/source/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("a deeper directory", one(D + "x/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("percent-encoded dots", one("/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/P144p30fps16x9/%2e%2e/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("percent-encoded slash", one("/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e%2FP144p30fps16x9/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("percent-encoded name", one(D + "%37.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("empty segment", one("/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e//P144p30fps16x9/7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("empty segment, relative", one("P144p30fps16x9//7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("query string", one("P144p30fps16x9/7.ts?token=a"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("query steering the path", one("P144p30fps16x9/7.ts?x=../"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("empty query", one("P144p30fps16x9/7.ts?"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("network-path reference to another host", one("//evil.example.com" + D + "7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("other host", one("https://b2.example.com:8935" + D + "7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("other port", one("https://b1.example.com:9999" + D + "7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("default port is another port", one("https://b1.example.com" + D + "7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("other scheme", one("http://b1.example.com:8935" + D + "7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("user info", one("https://me@b1.example.com:8935" + D + "7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("scheme-relative path (RFC 3986 strict)", one("http:7.ts"), {}, {Reject.OTHER_ORIGIN: 1}),
    ("file:", one("file:///etc/7.ts"), {}, {Reject.BAD_SCHEME: 1}),
    ("data:", one("data:video/mp2t;base64,AAAA"), {}, {Reject.BAD_SCHEME: 1}),
    ("javascript:", one("javascript:alert(7)"), {}, {Reject.BAD_SCHEME: 1}),
    ("ftp:", one("ftp://b1.example.com:8935" + D + "7.ts"), {}, {Reject.BAD_SCHEME: 1}),
    ("space in URI", one(D + "7 .ts"), {}, {Reject.BAD_URI: 1}),
    ("backslash (WHATWG reads it as /)", one("/\\evil.example.com/7.ts"), {}, {Reject.BAD_URI: 1}),
    ("non-ASCII digit", one(D + "\u0663.ts"), {}, {Reject.BAD_URI: 1}),
    ("bad port", one("https://b1.example.com:99999" + D + "7.ts"), {}, {Reject.BAD_URI: 1}),
    ("name with letters", one(D + "seg7.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("other extension", one(D + "7.mp4"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("double extension", one(D + "7.ts.exe"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("no name", one(D), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("number in the directory only", one(D + "7.ts/x"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("negative number", one(D + "-1.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("signed number", one(D + "+1.ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
    ("2**53 is the largest", one(f"{D}{2**53}.ts"), {2**53: f"{SEGMENT_DIR}{2**53}.ts"}, {}),
    ("above 2**53", one(f"{D}{2**53 + 1}.ts"), {}, {Reject.ABSURD_NUMBER: 1}),
    ("thousands of digits", one(D + "9" * 5000 + ".ts"), {}, {Reject.LINE_TOO_LONG: 1}),
    ("many digits", one(D + "9" * 40 + ".ts"), {}, {Reject.OUTSIDE_LAYOUT: 1}),
]


@pytest.mark.parametrize("text, expected, rejected", [c[1:] for c in URI_CASES], ids=[c[0] for c in URI_CASES])
def test_segment_uris(text: str, expected: dict[int, str], rejected: dict[str, int]) -> None:
    result = parse(text)
    assert {s.number: s.uri for s in result.segments} == expected
    assert dict(result.rejected) == rejected


DURATION_CASES = [
    ("decimal", "#EXTINF:2.002,", 2.002),
    ("integer", "#EXTINF:2,", 2.0),
    ("with a title", "#EXTINF:1.5,Some title, with comma", 1.5),
    ("no comma", "#EXTINF:1.5", 1.5),
    ("quantised to the millisecond", "#EXTINF:2.0004,", 2.0),
    ("the maximum", "#EXTINF:60,", 60.0),
    ("zero", "#EXTINF:0,", Reject.BAD_DURATION),
    ("rounds to zero", "#EXTINF:0.0004,", Reject.BAD_DURATION),
    ("negative", "#EXTINF:-2,", Reject.BAD_DURATION),
    ("above the maximum", "#EXTINF:60.5,", Reject.BAD_DURATION),
    ("nan", "#EXTINF:nan,", Reject.BAD_DURATION),
    ("infinity", "#EXTINF:inf,", Reject.BAD_DURATION),
    ("exponent", "#EXTINF:2e0,", Reject.BAD_DURATION),
    ("underscore", "#EXTINF:1_0,", Reject.BAD_DURATION),
    ("empty", "#EXTINF:,", Reject.BAD_DURATION),
    ("huge", "#EXTINF:" + "9" * 400 + ",", Reject.BAD_DURATION),
]


@pytest.mark.parametrize("extinf, expected", [c[1:] for c in DURATION_CASES], ids=[c[0] for c in DURATION_CASES])
def test_durations(extinf: str, expected: float | Reject) -> None:
    result = parse(one(D + "7.ts", extinf))
    if isinstance(expected, Reject):
        assert result.segments == ()
        assert dict(result.rejected) == {expected: 1}
    else:
        assert [s.duration for s in result.segments] == [expected]


def test_a_uri_without_extinf_is_refused() -> None:
    result = parse(playlist(D + "7.ts", "#EXTINF:2,", D + "8.ts"))
    assert [s.number for s in result.segments] == [8]
    assert dict(result.rejected) == {Reject.MISSING_DURATION: 1}


# (case, text, expected rejected) for playlists refused as a whole
WHOLE_CASES = [
    ("empty", "", Reject.NOT_M3U8),
    ("HTML error page", "<html><body>502 Bad Gateway</body></html>", Reject.NOT_M3U8),
    ("EXTM3U not first", "#EXT-X-VERSION:3\n#EXTM3U\n", Reject.NOT_M3U8),
    ("master playlist", playlist("#EXT-X-STREAM-INF:BANDWIDTH=1", "low.m3u8"), Reject.MASTER_PLAYLIST),
    ("master with renditions", playlist('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="a"'), Reject.MASTER_PLAYLIST),
]


@pytest.mark.parametrize("text, reason", [c[1:] for c in WHOLE_CASES], ids=[c[0] for c in WHOLE_CASES])
def test_refused_as_a_whole(text: str, reason: Reject) -> None:
    result = parse(text)
    assert result.segments == ()
    assert dict(result.rejected) == {reason: 1}


def test_limits_on_size_lines_and_segments() -> None:
    body = [line for n in range(100) for line in ("#EXTINF:2,", f"{D}{n}.ts")]
    text = playlist(*body)
    assert dict(parse(text, limits=ParseLimits(max_bytes=100)).rejected) == {
        Reject.TOO_LARGE: 1
    }
    assert dict(parse(text, limits=ParseLimits(max_lines=50)).rejected) == {
        Reject.TOO_MANY_LINES: 1
    }
    # Too many segments: the newest are what a live playlist is for.
    capped = parse(text, limits=ParseLimits(max_segments=10))
    assert [s.number for s in capped.segments] == list(range(90, 100))
    assert dict(capped.rejected) == {Reject.TOO_MANY_SEGMENTS: 90}


def test_upstream_media_sequence_is_ignored_and_order_and_duplicates_handled() -> None:
    text = playlist(
        "#EXT-X-MEDIA-SEQUENCE:500",
        "#EXTINF:2,", D + "9.ts",
        "#EXTINF:2,", D + "7.ts",
        "#EXTINF:1.5,", "P144p30fps16x9/7.ts",
        "#EXTINF:2,", D + "8.ts",
    )  # fmt: skip
    result = parse(text)
    assert [(s.number, s.uri, s.duration) for s in result.segments] == [
        (7, SEGMENT_DIR + "7.ts", 2.0),  # the first copy of 7 is kept
        (8, SEGMENT_DIR + "8.ts", 2.0),
        (9, SEGMENT_DIR + "9.ts", 2.0),
    ]
    assert dict(result.rejected) == {Reject.DUPLICATE: 1}


def test_tags_discontinuity_date_endlist() -> None:
    text = playlist(
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.500Z",
        "#EXTINF:2,", D + "1.ts",
        "#EXT-X-DISCONTINUITY",
        "#EXTINF:2,", D + "bad-name.ts",  # refused; the discontinuity moves on to 3
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04",  # no offset: unusable, segment kept
        "#EXTINF:2,", D + "3.ts",
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T14:00:06+02:00",
        "#EXTINF:2,", D + "4.ts",
        "#EXT-X-ENDLIST",
    )  # fmt: skip
    result = parse(text)
    assert [(s.number, s.discontinuity) for s in result.segments] == [(1, False), (3, True), (4, False)]
    assert [s.program_date_time for s in result.segments] == [
        datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc),
        None,
        datetime(2024, 5, 1, 12, 0, 6, tzinfo=timezone.utc),
    ]
    assert result.ended
    assert dict(result.rejected) == {Reject.OUTSIDE_LAYOUT: 1, Reject.BAD_PROGRAM_DATE_TIME: 1}


@pytest.mark.parametrize(
    "tag",
    ["#EXT-X-BYTERANGE:1000@0", "#EXT-X-GAP", '#EXT-X-KEY:METHOD=AES-128,URI="k"', '#EXT-X-MAP:URI="init.mp4"'],
)
def test_segments_we_cannot_republish_are_refused(tag: str) -> None:
    result = parse(playlist(tag, "#EXTINF:2,", D + "7.ts"))
    assert result.segments == ()
    assert dict(result.rejected) == {Reject.UNSUPPORTED: 1}


def test_key_method_none_is_plain() -> None:
    result = parse(playlist("#EXT-X-KEY:METHOD=NONE", "#EXTINF:2,", D + "7.ts"))
    assert [s.number for s in result.segments] == [7]


def test_crlf_bom_and_bytes() -> None:
    text = f"\ufeff#EXTM3U\r\n#EXTINF:2,\r\n{D}7.ts\r\n".encode()
    assert [s.uri for s in parse(text).segments] == [SEGMENT_DIR + "7.ts"]


def test_invalid_utf8_is_refused_not_raised() -> None:
    text = b"#EXTM3U\n#EXTINF:2,\n/s/\xff\xfe7.ts\n#EXTINF:2,\n" + D.encode() + b"8.ts\n"
    result = parse(text)
    assert [s.number for s in result.segments] == [8]
    assert dict(result.rejected) == {Reject.BAD_URI: 1}


def test_unusable_origin_is_reported() -> None:
    assert dict(parse(one(D + "7.ts"), origin="not a url").rejected) == {Reject.BAD_ORIGIN: 1}


def test_playlist_url_on_another_origin_keeps_only_absolute_uris_on_ours() -> None:
    text = playlist("#EXTINF:2,", D + "7.ts", "#EXTINF:2,", SEGMENT_DIR + "8.ts")
    result = parse(text, url="https://cdn.example.net/stream/8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e/r.m3u8")
    assert [s.number for s in result.segments] == [8]
    assert dict(result.rejected) == {Reject.OTHER_ORIGIN: 1}


def test_random_garbage_bytes_never_raise() -> None:
    for size in (1, 10, 1000, 100_000):
        parse(os.urandom(size))
        parse(b"#EXTM3U\n" + os.urandom(size))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000))
def test_arbitrary_input_never_raises(data: bytes | str) -> None:
    parse(data)
    prefix = b"#EXTM3U\n#EXTINF:2,\n" if isinstance(data, bytes) else "#EXTM3U\n#EXTINF:2,\n"
    result = parse(prefix + data)  # type: ignore[operator]
    numbers = [s.number for s in result.segments]
    assert numbers == sorted(set(numbers))
    for segment in result.segments:
        assert segment.uri.lower().startswith(ORIGIN.lower() + "/")
        assert 0 < segment.duration <= 60


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab./7?=#%:-", min_size=1, max_size=24).map(lambda s: s + "7.ts"))
def test_resolution_matches_rfc3986(reference: str) -> None:
    # The fast path (plain concatenation) and the full RFC 3986 resolution agree on every URI kept.
    for line in (reference, "/" + reference, "../" + reference):
        result = parse(one(line))
        for segment in result.segments:
            assert segment.uri == resolve_uri(URL, line).partition("#")[0]
