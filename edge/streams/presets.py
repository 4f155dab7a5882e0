"""Livepeer's standard transcoding presets (go-livepeer's fixed profiles), by name."""

from __future__ import annotations

from edge.streams.model import Profile


def _preset(name: str, width: int, height: int, bitrate: int, fps: int) -> tuple[str, Profile]:
    return name, Profile(name=name, width=width, height=height, bitrate=bitrate, fps=fps)


PRESETS: dict[str, Profile] = dict(
    [
        _preset("P720p60fps16x9", 1280, 720, 6_000_000, 60),
        _preset("P720p30fps16x9", 1280, 720, 4_000_000, 30),
        _preset("P720p30fps4x3", 960, 720, 3_500_000, 30),
        _preset("P576p30fps16x9", 1024, 576, 1_500_000, 30),
        _preset("P360p30fps16x9", 640, 360, 1_200_000, 30),
        _preset("P360p30fps4x3", 480, 360, 1_000_000, 30),
        _preset("P240p30fps16x9", 426, 240, 600_000, 30),
        _preset("P240p30fps4x3", 320, 240, 600_000, 30),
        _preset("P144p30fps16x9", 256, 144, 400_000, 30),
    ]
)
