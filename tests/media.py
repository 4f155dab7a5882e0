"""Real media for tests: an ffmpeg test pattern cut into MPEG-TS segments with continuous timestamps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def require(binary: str) -> str:
    """The path of `binary`; a test that needs it fails (never skips) when it is missing."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed; install it (Debian: apt-get install -y {binary}); .ci/run does")
    return path


def pattern_segments(directory: Path, seconds: int = 60, segment_seconds: int = 2) -> list[bytes]:
    """`seconds` of a 320x180 test pattern with a tone, as 2 s MPEG-TS segments (keyframe each)."""
    ffmpeg = require("ffmpeg")
    directory.mkdir(parents=True, exist_ok=True)
    fps = 25
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={fps}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-g", str(fps * segment_seconds), "-keyint_min", str(fps * segment_seconds), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "64k",
            "-f", "segment", "-segment_time", str(segment_seconds), "-segment_format", "mpegts",
            str(directory / "%d.ts"),
        ],
        check=True, timeout=120,
    )
    count = len(list(directory.glob("*.ts")))
    return [(directory / f"{n}.ts").read_bytes() for n in range(count)]
