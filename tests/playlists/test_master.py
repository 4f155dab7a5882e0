"""The master playlist from a stream's declared ladder and its probed media, read back by m3u8 and
by a strict reading of RFC 8216's attribute-list grammar (§4.2, §4.3.4.2)."""

from __future__ import annotations

import re

import m3u8
from hypothesis import given
from hypothesis import strategies as st

from edge.playlists.master import MAX_AGE_S, MAX_AGE_UNPROBED_S, master_playlist, max_age, renditions
from edge.streams.model import RenditionMedia, SourceInfo, Stream, Profile

STREAM_ID = "00000000-0000-4000-8000-000000000001"
P360 = Profile(name="P360p30fps16x9", width=640, height=360, bitrate=1_000_000, fps=30)
P144 = Profile(name="P144p30fps16x9", width=256, height=144, bitrate=400_000, fps=30)
STREAM = Stream(id=STREAM_ID, name="cam", profiles=(P360, P144), created_at=1)

# RFC 8216 §4.2: AttributeName=AttributeValue, comma separated; values are a decimal-integer, a
# quoted-string without CR, LF or '"', an enumerated-string, a decimal-resolution or a float.
ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[0-9]+x[0-9]+|-?[0-9]+(?:\.[0-9]+)?|[^",\s]+)')
REQUIRED_FOR_VIDEO = {"BANDWIDTH", "CODECS", "RESOLUTION"}


def strict_variants(text: str) -> list[dict[str, str]]:
    """Each EXT-X-STREAM-INF's attributes, refusing anything the grammar does not allow."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    variants = []
    for i, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            continue
        rest, attributes = line[len("#EXT-X-STREAM-INF:"):], {}
        while rest:
            match = ATTRIBUTE.match(rest)
            assert match is not None, f"not an attribute: {rest!r}"
            assert match[1] not in attributes, f"{match[1]} twice"
            attributes[match[1]] = match[2]
            rest = rest[match.end():]
            assert rest == "" or rest.startswith(","), f"junk after an attribute: {rest!r}"
            rest = rest[1:]
        assert re.fullmatch(r"[0-9]+", attributes["BANDWIDTH"])
        assert lines[i + 1] and not lines[i + 1].startswith("#")  # its URI follows
        variants.append(attributes)
    return variants


def probed(stream: Stream) -> Stream:
    for media in (
        RenditionMedia("source", ("avc1.64001f", "mp4a.40.2"), 1280, 720, bandwidth=3_100_000, average_bandwidth=2_900_000),
        RenditionMedia("P360p30fps16x9", ("avc1.42c01e", "mp4a.40.2"), 640, 360, bandwidth=900_000, average_bandwidth=800_000),
        RenditionMedia("P144p30fps16x9", ("avc1.42c00c", "mp4a.40.2"), 256, 144, bandwidth=450_000, average_bandwidth=380_000),
    ):
        stream = stream.with_media(media)
    return stream


def test_probed_renditions_name_their_codecs_sizes_and_measured_rates() -> None:
    body, _ = master_playlist(probed(STREAM))
    variants = strict_variants(body.decode())
    assert all(REQUIRED_FOR_VIDEO <= set(v) for v in variants)
    assert [(v["CODECS"], v["RESOLUTION"], v["BANDWIDTH"], v["AVERAGE-BANDWIDTH"]) for v in variants] == [
        ('"avc1.64001f,mp4a.40.2"', "1280x720", "3100000", "2900000"),  # the source: measured
        ('"avc1.42c01e,mp4a.40.2"', "640x360", "1000000", "800000"),  # declared 1 M above measured 0.9 M
        ('"avc1.42c00c,mp4a.40.2"', "256x144", "450000", "380000"),  # measured above declared
    ]
    parsed = m3u8.loads(body.decode())
    assert [p.stream_info.codecs for p in parsed.playlists] == [
        "avc1.64001f,mp4a.40.2", "avc1.42c01e,mp4a.40.2", "avc1.42c00c,mp4a.40.2"]
    assert parsed.playlists[0].stream_info.resolution == (1280, 720)


def test_until_probed_the_declaration_stands_and_codecs_are_not_guessed() -> None:
    variants = strict_variants(master_playlist(STREAM)[0].decode())
    assert [v.get("CODECS") for v in variants] == [None, None, None]
    assert [v.get("RESOLUTION") for v in variants] == [None, "640x360", "256x144"]
    with_info = Stream(id=STREAM_ID, name="cam", profiles=(P360,), created_at=1, source_info=SourceInfo(1920, 1080, 30))
    assert strict_variants(master_playlist(with_info)[0].decode())[0]["RESOLUTION"] == "1920x1080"


def test_one_probed_rendition_changes_only_its_own_variant() -> None:
    stream = STREAM.with_media(RenditionMedia("P144p30fps16x9", ("avc1.42c00c",), 256, 144))
    before, after = renditions(STREAM), renditions(stream)
    assert after[:2] == before[:2]
    assert after[2].codecs == ("avc1.42c00c",) and after[2].bandwidth == P144.bitrate


codec = st.from_regex(r"\A(avc1\.[0-9a-f]{6}|hvc1\.[12]\.[0-9A-F]{1,8}\.[LH][0-9]{1,3}(\.[0-9A-F]{1,2}){0,6}|mp4a\.40\.[0-9]{1,2}|ac-3|ec-3)\Z")
size = st.none() | st.tuples(st.integers(1, 16384), st.integers(1, 16384))
media = st.builds(
    lambda rendition, codecs, size, bandwidth, average: RenditionMedia(
        rendition, codecs, *(size or (None, None)), bandwidth=bandwidth, average_bandwidth=average),
    st.sampled_from(["source", "P360p30fps16x9", "P144p30fps16x9"]),
    st.lists(codec, min_size=1, max_size=3).map(tuple),
    size,
    st.none() | st.integers(1, 10**9),
    st.none() | st.integers(1, 10**9),
)


@given(st.lists(media, max_size=5))
def test_every_probed_combination_renders_a_strictly_valid_master(found: list[RenditionMedia]) -> None:
    stream = STREAM
    for m in found:
        stream = stream.with_media(m)
    variants = strict_variants(master_playlist(stream)[0].decode())
    assert len(variants) == 3
    for variant, name in zip(variants, ("source", "P360p30fps16x9", "P144p30fps16x9")):
        known = stream.media_of(name)
        assert (variant.get("CODECS") is not None) == (known is not None)
        if known is not None:
            assert variant["CODECS"] == '"' + ",".join(known.codecs) + '"'


def test_the_master_is_kept_briefly_until_every_rendition_is_probed() -> None:
    assert max_age(STREAM) == MAX_AGE_UNPROBED_S
    assert max_age(STREAM.with_media(RenditionMedia("source", ("avc1.64001f",)))) == MAX_AGE_UNPROBED_S
    assert max_age(probed(STREAM)) == MAX_AGE_S
