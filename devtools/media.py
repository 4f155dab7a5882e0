"""ffmpeg for the peers: transcoding one MPEG-TS segment (the broadcaster), cutting an input into
MPEG-TS segments at real time (the ingest), and probing a segment (tests). Every call runs ffmpeg as a
subprocess through asyncio, so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from devtools.edge_api import Profile

log = logging.getLogger("devtools.media")

INSTALL_HINT = "install it: apt-get install -y ffmpeg (Debian/Ubuntu; CI does this in .ci/run)"


class MediaError(Exception):
    """ffmpeg failed, or is not installed."""


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def require_tool(name: str = "ffmpeg") -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"{name} not found on PATH; {INSTALL_HINT}")
    return path


async def _run(args: list[str], stdin: bytes | None, timeout: float) -> bytes:
    """Run a command, feeding `stdin`, and return its standard output; MediaError on failure."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except BaseException:  # timeout or cancellation: never leave the process behind
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise MediaError(f"{Path(args[0]).name} exited with {proc.returncode}: {' | '.join(tail)}")
    return out


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when our process dies, however it dies. ffmpeg ignores
    SIGPIPE and shrugs off a closed stdout, so a live test pattern would otherwise run forever."""
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# --- the broadcaster's transcode -------------------------------------------------------------------


def transcode_args(ffmpeg: str, profile: Profile, preset: str) -> list[str]:
    """ffmpeg reading one MPEG-TS segment on stdin and writing the rendition on stdout.

    The timestamps are the input's, exactly (-copyts, the demuxer's time base, no mux delay), so that
    renditions line up with `source` and the segments of different broadcasters continue each other.
    """
    bitrate = str(profile.bitrate)
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-copyts", "-f", "mpegts", "-i", "pipe:0",
        "-map", "0:v:0", "-map", "0:a?",
        "-vf", f"scale={profile.width}:{profile.height}",
        "-fps_mode", "passthrough", "-enc_time_base:v", "-1",
        "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p",
        "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", str(profile.bitrate * 2),
        "-c:a", "copy",
        "-muxdelay", "0", "-muxpreload", "0",
        "-f", "mpegts", "pipe:1",
    ]


class TranscodePool:
    """At most `workers` ffmpeg transcodes at once; more wait their turn."""

    def __init__(self, workers: int | None = None, preset: str = "ultrafast", timeout: float = 30.0) -> None:
        self.ffmpeg = require_tool("ffmpeg")
        self.preset = preset
        self.timeout = timeout
        self._slots = asyncio.Semaphore(workers or max(1, os.cpu_count() or 1))

    async def transcode(self, source: bytes, profile: Profile) -> bytes:
        async with self._slots:
            out = await _run(transcode_args(self.ffmpeg, profile, self.preset), source, self.timeout)
        if not out:
            raise MediaError(f"transcode to {profile.name}: ffmpeg wrote nothing")
        return out


# --- probing (tests, and the ingest's input) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    start_time: float | None  # seconds, the container's first timestamp
    duration: float | None


async def probe(data_or_path: bytes | str | Path, timeout: float = 20.0) -> VideoInfo:
    """The first video stream's size and the container's timing, by ffprobe."""
    ffprobe = require_tool("ffprobe")
    from_pipe = isinstance(data_or_path, bytes)
    args = [
        ffprobe, "-v", "error", "-select_streams", "v:0",
        "-show_entries", "stream=width,height:format=start_time,duration", "-of", "json",
        "pipe:0" if from_pipe else str(data_or_path),
    ]
    out = await _run(args, data_or_path if from_pipe else None, timeout)  # type: ignore[arg-type]
    doc = json.loads(out or b"{}")
    streams = doc.get("streams") or []
    if not streams:
        raise MediaError("ffprobe: no video stream")
    fmt = doc.get("format") or {}

    def number(value: object) -> float | None:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    return VideoInfo(int(streams[0]["width"]), int(streams[0]["height"]),
                     number(fmt.get("start_time")), number(fmt.get("duration")))


# --- the ingest's real-time cutter -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CutSegment:
    index: int  # 0, 1, 2, ... in cutting order
    path: Path
    duration: float  # seconds


@dataclass(frozen=True, slots=True)
class TestPattern:
    """ffmpeg's lavfi test pattern with a burnt-in clock and frame counter, and a beeping sine tone."""

    __test__ = False  # a name pytest would otherwise try to collect

    width: int = 1280
    height: int = 720
    fps: int = 30


async def _drawtext_works(ffmpeg: str) -> bool:
    """drawtext needs ffmpeg built with freetype and a font fontconfig can find; without either, the
    pattern goes out without its clock rather than not at all."""
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
            "-i", "color=size=64x64:rate=1:duration=1", "-vf", "drawtext=text=x", "-f", "null", "-"]
    try:
        await _run(args, None, 20.0)
        return True
    except MediaError as exc:
        log.warning("test pattern without burnt-in clock (drawtext unusable): %s", exc)
        return False


def _pattern_inputs(pattern: TestPattern, with_text: bool) -> tuple[list[str], list[str]]:
    video = f"testsrc2=size={pattern.width}x{pattern.height}:rate={pattern.fps}"
    inputs = ["-re", "-f", "lavfi", "-i", video,
              "-re", "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000"]
    filters: list[str] = []
    if with_text:
        size = max(16, pattern.height // 12)
        box = f"fontsize={size}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8"
        filters = ["-vf",
                   f"drawtext=text='%{{localtime\\:%T}}':x=(w-tw)/2:y=h/3:{box},"
                   f"drawtext=text='frame %{{n}}  pts %{{pts\\:hms}}':x=(w-tw)/2:y=h/3+{size * 2}:{box}"]
    return inputs + ["-map", "0:v", "-map", "1:a"], filters


def cutter_args(
    ffmpeg: str, out_dir: Path, segment_seconds: float, source: Path | TestPattern,
    with_text: bool, duration: float | None, loop: bool,
) -> list[str]:
    """ffmpeg reading at real time (-re) and writing MPEG-TS segments of `segment_seconds` into
    `out_dir`, announcing each finished one as a CSV line on stdout. Every segment starts with a key
    frame; timestamps run on across segments (the segment muxer does not reset them)."""
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    if isinstance(source, TestPattern):
        inputs, filters = _pattern_inputs(source, with_text)
        args += inputs + filters
    else:
        args += (["-stream_loop", "-1"] if loop else []) + ["-re", "-i", str(source),
                                                             "-map", "0:v:0", "-map", "0:a:0?"]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    args += [
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})", "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "96k", "-ar", "48000",
        "-f", "segment", "-segment_time", f"{segment_seconds}", "-segment_format", "mpegts",
        "-segment_list", "pipe:1", "-segment_list_type", "csv",
        str(out_dir / "seg_%06d.ts"),
    ]
    return args


class LiveCutter:
    """Cuts an input (a file or a TestPattern) into MPEG-TS segments at real time.

    `async for segment in cutter.segments()` yields each segment as ffmpeg finishes it (about one
    every `segment_seconds`); the caller deletes a segment's file once done with it. The last
    segment of a finite input may be shorter.
    """

    def __init__(
        self, source: Path | TestPattern, segment_seconds: float = 2.0,
        duration: float | None = None, loop: bool = False,
    ) -> None:
        self.source = source
        self.segment_seconds = segment_seconds
        self.duration = duration
        self.loop = loop
        self._proc: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def segments(self) -> AsyncIterator[CutSegment]:
        ffmpeg = require_tool("ffmpeg")
        with_text = isinstance(self.source, TestPattern) and await _drawtext_works(ffmpeg)
        self._dir = tempfile.TemporaryDirectory(prefix="devtools-ingest-")
        out_dir = Path(self._dir.name)
        args = cutter_args(ffmpeg, out_dir, self.segment_seconds, self.source, with_text, self.duration, self.loop)
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C is ours to handle: we stop ffmpeg ourselves
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        stderr_task = asyncio.create_task(self._proc.stderr.read())  # type: ignore[union-attr]
        index = 0
        try:
            assert self._proc.stdout is not None
            async for raw in self._proc.stdout:
                name, _, times = raw.decode("utf-8", "replace").strip().partition(",")
                start, _, end = times.partition(",")
                try:
                    duration = float(end) - float(start)
                except ValueError:
                    log.warning("unreadable segment list line from ffmpeg: %r", raw)
                    continue
                yield CutSegment(index, out_dir / name, duration)
                index += 1
            code = await self._proc.wait()
            err = (await stderr_task).decode("utf-8", "replace").strip()
            if code != 0:
                raise MediaError(f"ffmpeg (cutter) exited with {code}: {err[-500:]}")
        finally:
            stderr_task.cancel()
            await self.close()

    async def close(self) -> None:
        """Stop ffmpeg (if running) and remove the segment directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
