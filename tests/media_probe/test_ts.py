"""The MPEG-TS probe against real encoders (ffmpeg's libx264, libx265, aac), checked with ffprobe's
reading of the same files, and against damaged and hostile input, which must give `None`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.media.bitstream import BitReader, adts, h264_sps, hevc_sps, unescape
from edge.media.ts import PACKET, probe
from tests.media import require

# (name, width, height, ffmpeg video args, ffmpeg audio args or None)
SAMPLES = [
    ("h264-high-aac-lc", 1280, 720, ["-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast"], ["-c:a", "aac"]),
    ("h264-main-cropped", 854, 478, ["-c:v", "libx264", "-profile:v", "main", "-preset", "veryfast"],
     ["-c:a", "aac", "-profile:a", "aac_main"]),
    ("h264-baseline", 640, 360, ["-c:v", "libx264", "-profile:v", "baseline", "-level", "3.0"], ["-c:a", "aac"]),
    ("h264-high-odd-size", 426, 241, ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv444p",
                                      "-profile:v", "high444"], None),
    ("h264-interlaced", 720, 576, ["-c:v", "libx264", "-flags", "+ildct+ilme", "-x264-params", "tff=1"], None),
    ("hevc-main", 1920, 1080, ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
     ["-c:a", "aac", "-profile:a", "aac_ltp", "-strict", "-2"]),
    ("hevc-main10", 426, 240, ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                               "-x265-params", "log-level=error"], None),
]
H264_PROFILES = {"Baseline": 66, "Constrained Baseline": 66, "Main": 77, "High": 100, "High 4:4:4 Predictive": 244}
HEVC_PROFILES = {"Main": 1, "Main 10": 2}
AAC_OBJECTS = {"LC": 2, "Main": 1, "LTP": 4, "HE-AAC": 5}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ffmpeg = require("ffmpeg")
    directory = tmp_path_factory.mktemp("samples")
    out = {}
    for name, width, height, video, audio in SAMPLES:
        path = directory / f"{name}.ts"
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25"]
        if audio is not None:
            inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *inputs, "-t", "1", *video, *(audio or []),
             "-f", "mpegts", str(path)],
            check=True, timeout=120,
        )
        out[name] = path
    return out


def ffprobe_streams(path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [require("ffprobe"), "-v", "error", "-show_entries", "stream=codec_name,profile,level,width,height",
         "-of", "json", str(path)],
        check=True, capture_output=True, timeout=60,
    )
    return json.loads(result.stdout)["streams"]


@pytest.mark.parametrize("name", [s[0] for s in SAMPLES])
def test_the_probe_agrees_with_ffprobe(samples: dict[str, Path], name: str) -> None:
    path = samples[name]
    found = probe(path.read_bytes())
    assert found is not None
    streams = ffprobe_streams(path)
    video = next(s for s in streams if s.get("width"))
    assert (found.width, found.height) == (video["width"], video["height"])
    codec = found.codecs[0]
    if video["codec_name"] == "h264":
        assert codec.startswith("avc1.") and len(codec) == 11
        assert int(codec[5:7], 16) == H264_PROFILES[str(video["profile"])]
        assert int(codec[9:11], 16) == video["level"]
    else:
        kind, profile, _compat, level, *_ = codec.split(".")
        assert kind == "hvc1" and int(profile) == HEVC_PROFILES[str(video["profile"])]
        assert level == f"L{video['level']}"
    audio = [s for s in streams if s["codec_name"] == "aac"]
    assert found.codecs[1:] == tuple(f"mp4a.40.{AAC_OBJECTS[str(a['profile'])]}" for a in audio)


def test_known_strings(samples: dict[str, Path]) -> None:
    """The exact strings, for the samples whose every byte is fixed by the encoder's settings."""
    assert probe(samples["h264-high-aac-lc"].read_bytes()).codecs == ("avc1.64001f", "mp4a.40.2")  # type: ignore[union-attr]
    assert probe(samples["h264-baseline"].read_bytes()).codecs == ("avc1.42c01e", "mp4a.40.2")  # type: ignore[union-attr]
    assert probe(samples["hevc-main"].read_bytes()).codecs[0].startswith("hvc1.1.6.L120.")  # type: ignore[union-attr]
    assert probe(samples["hevc-main10"].read_bytes()).codecs[0].startswith("hvc1.2.4.L")  # type: ignore[union-attr]


def test_the_real_segments_of_the_tests(tmp_path: Path) -> None:
    from tests.media import pattern_segments

    segments = pattern_segments(tmp_path, seconds=4)
    for segment in segments:
        found = probe(segment)
        assert found is not None and (found.width, found.height) == (320, 180)
        assert found.codecs[1] == "mp4a.40.2" and found.codecs[0].startswith("avc1.")


@pytest.mark.parametrize("name", [s[0] for s in SAMPLES])
def test_every_truncation_is_an_answer_or_unknown(samples: dict[str, Path], name: str) -> None:
    data = samples[name].read_bytes()[: 64 * PACKET]
    whole = probe(samples[name].read_bytes())
    for end in range(0, len(data), 61):
        found = probe(data[:end])
        assert found is None or found == whole  # never a wrong answer from less data


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_segments_never_raise(samples: dict[str, Path], data: st.DataObject) -> None:
    original = bytearray(samples[data.draw(st.sampled_from([s[0] for s in SAMPLES]))].read_bytes()[: 40 * PACKET])
    for _ in range(data.draw(st.integers(1, 30))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    found = probe(bytes(original))
    assert found is None or (found.codecs and all(c.replace(".", "").isalnum() for c in found.codecs))


@given(st.binary(max_size=4 * PACKET))
def test_garbage_is_unknown_or_an_answer(data: bytes) -> None:
    probe(data)
    probe(b"\x47" + data)
    h264_sps(b"\x67" + data)
    hevc_sps(b"\x42\x01" + data)
    adts(data)


@given(st.binary(max_size=64))
def test_packets_of_garbage_with_sync_bytes(payload: bytes) -> None:
    packet = (b"\x47\x00\x00\x10" + payload).ljust(PACKET, b"\xff")[:PACKET]
    probe(packet * 4)
    pmt = (b"\x47\x40\x00\x10\x00\x00\xb0\x0d\x00\x01\xc1\x00\x00\x00\x01\xf0\x00").ljust(PACKET, b"\xff")
    hostile = (b"\x47\x50\x00\x10\x00\x02\xbf\xff" + payload).ljust(PACKET, b"\xff")[:PACKET]
    assert probe(pmt + hostile * 3) is None


def test_huge_exp_golomb_codes_are_unknown() -> None:
    assert h264_sps(b"\x67\x64\x00\x1f" + b"\x00" * 64) is None  # 512 leading zeros
    assert h264_sps(b"\x67\x64\x00\x1f\xff\xff") is None  # runs out of bits


def test_emulation_prevention_bytes_are_removed() -> None:
    assert unescape(b"\x00\x00\x03\x01\x00\x00\x03\x00\x00\x00\x03") == b"\x00\x00\x01\x00\x00\x00\x00\x00"
    reader = BitReader(b"\x00\x00\x03\x01"[:0] + unescape(b"\x00\x00\x03\x02"))
    assert reader.u(24) == 0x000002


def test_adts_headers() -> None:
    # syncword, MPEG-4, no CRC; object type 2 (LC) at 48 kHz; 5 (HE-AAC) written as profile 4
    assert adts(bytes([0xFF, 0xF1, 0x4C, 0x80, 0, 0, 0])) == "mp4a.40.2"
    assert adts(bytes([0xFF, 0xF1, 0x00 | (3 << 2), 0x80, 0, 0, 0])) == "mp4a.40.1"
    assert adts(bytes([0xFF, 0xF1, 0x4C | 0x3C, 0x80, 0, 0, 0])) is None  # reserved frequency index
    assert adts(b"\xff\xf1") is None
