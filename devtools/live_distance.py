"""How far behind the live edge real players play what the edge serves, per target duration.

It runs `edge demo`'s setup (an edge, three reference broadcasters, a live test pattern in 2 s
segments that moves between them) once per target duration asked for (0: the edge's own choice; 3:
what it chose for 2 s segments before) and plays the source rendition with

- hls.js 1.7 in headless Chromium (the edge's player page on the master playlist): `hls.latency`,
  its own estimate of the distance from the live edge, sampled every second once it plays;
- ffmpeg reading at real speed (`-re`): when it opens segment N, the media from N's start to the end
  of the playlist the edge serves at that moment (how far behind the edge it then plays), and how
  long N had been listed (how late its reloads find new segments).

It prints a Markdown table (median and range per player) and the master playlist of each run.

    python -m devtools.live_distance [--seconds 40] [--targets 3,0] [--repeat 2]

Every process it starts is stopped by its own process group id; nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from devtools.browser import Browser
from devtools.demo import Demo
from devtools.gap_players import need, spawn, stop
from devtools.processes import free_port

EXTINF = re.compile(r"#EXTINF:([0-9.]+),\s*\n(\S+)")
NUMBER = re.compile(r"/([0-9]+)\.ts(?:\?|$)")
OPENING = re.compile(r"Opening '([^']+\.ts[^']*)' for reading")
JOIN_AFTER_S = 10.0  # seconds of media listed before the players start
SETTLE_S = 6.0  # hls.js samples before this many seconds of playing are its start-up, not its hold


@dataclass
class Run:
    target_setting: int
    target: int = 0  # EXT-X-TARGETDURATION served
    hold_back: str = ""
    master: str = ""
    hlsjs: list[float] = field(default_factory=list)  # hls.latency samples, seconds
    hlsjs_target: float | None = None  # hls.targetLatency
    hlsjs_stalls: int = 0  # 'waiting' events once it played: each one leaves it further behind
    ffmpeg: list[float] = field(default_factory=list)  # distance at each segment opened, seconds
    ffmpeg_waited: list[float] = field(default_factory=list)  # how long each was listed before it was opened


class PlaylistWatch:
    """The edge's source playlist, reloaded every 100 ms: (ingest number, duration) of each segment."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.segments: list[tuple[int, float]] = []
        self.listed_at: dict[int, float] = {}  # ingest number -> when it was first listed (monotonic)
        self.text = ""

    async def run(self, http: aiohttp.ClientSession) -> None:
        while True:
            async with http.get(self.url) as response:
                if response.status == 200:
                    self.text = await response.text()
                    self.segments = [(int(m.group(1)), float(d)) for d, uri in EXTINF.findall(self.text)
                                     if (m := NUMBER.search(uri))]
                    now = time.monotonic()
                    for number, _ in self.segments:
                        self.listed_at.setdefault(number, now)
            await asyncio.sleep(0.1)

    def behind(self, number: int) -> float | None:
        """Seconds of media from the start of segment `number` to the end of the playlist now."""
        if not any(n == number for n, _ in self.segments):
            return None
        return sum(d for n, d in self.segments if n >= number)


async def follow_ffmpeg(url: str, watch: PlaylistWatch, run: Run, work: Path, until: float) -> None:
    log = work / "ffmpeg.log"
    proc = await spawn([need("ffmpeg"), "-hide_banner", "-loglevel", "verbose", "-re", "-i", url,
                        "-map", "0:v:0", "-f", "null", "-"], log)
    seen: set[int] = set()
    try:
        while time.monotonic() < until and proc.returncode is None:
            for uri in OPENING.findall(log.read_text(errors="replace")):
                m = NUMBER.search(uri)
                if m and int(m.group(1)) not in seen:
                    seen.add(int(m.group(1)))
                    number = int(m.group(1))
                    distance = watch.behind(number)
                    if distance is not None:
                        run.ffmpeg.append(round(distance, 2))
                        run.ffmpeg_waited.append(round(time.monotonic() - watch.listed_at[number], 2))
            await asyncio.sleep(0.1)
    finally:
        await stop(proc)


async def follow_hlsjs(page: str, run: Run, work: Path, until: float) -> None:
    browser = Browser(work / "chromium")
    try:
        await browser.open(page)
        for _ in range(100):
            if await browser.evaluate("!!document.getElementById('video')"):
                break
            await asyncio.sleep(0.1)
        await browser.evaluate("window.stalls = 0; document.getElementById('video').addEventListener("
                               "'waiting', () => { if (window.playerState.playing) window.stalls++; })")
        playing_since = None
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            state = await browser.evaluate(
                "window.hls && window.playerState.playing ? JSON.stringify({latency: hls.latency, "
                "target: hls.targetLatency, stalls: window.stalls}) : null")
            if not state:
                continue
            values = json.loads(state)
            playing_since = playing_since or time.monotonic()
            if time.monotonic() - playing_since >= SETTLE_S and values["latency"] is not None:
                run.hlsjs.append(round(float(values["latency"]), 2))
                run.hlsjs_target = values["target"]
                run.hlsjs_stalls = values["stalls"]
    finally:
        await browser.close()


async def measure(target: int, seconds: float, work: Path) -> Run:
    run = Run(target_setting=target)
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(port=free_port(), data_dir=str(work / "data"), target_duration=target, out=io.StringIO())
    try:
        await demo.start()
        base = f"{demo.url}/stream/{demo.stream_id}"
        async with aiohttp.ClientSession() as http:
            watch = PlaylistWatch(f"{base}/source.m3u8")
            watcher = asyncio.create_task(watch.run(http))
            try:
                # Players join a running stream: once the playlist holds more than the longest
                # hold-back compared (3 x 3 s), so that none starts early for want of media.
                while sum(d for _, d in watch.segments) < JOIN_AFTER_S:
                    await asyncio.sleep(0.2)
                until = time.monotonic() + seconds
                await asyncio.gather(
                    follow_ffmpeg(f"{base}/source.m3u8", watch, run, work, until),
                    follow_hlsjs(f"{demo.url}/play/{demo.stream_id}", run, work, until),
                )
                async with http.get(f"{base}.m3u8") as response:
                    run.master = await response.text()
            finally:
                watcher.cancel()
        run.target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", watch.text).group(1))  # type: ignore[union-attr]
        run.hold_back = re.search(r"HOLD-BACK=([0-9.]+)", watch.text).group(1)  # type: ignore[union-attr]
    finally:
        await demo.stop()
    return run


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f}, n={len(values)})"


def report(runs: list[Run], seconds: float) -> str:
    lines = [
        f"Distance from the live edge, 2 s segments, {seconds:.0f} s per run "
        "(`python -m devtools.live_distance`):",
        "",
        "| EXT-X-TARGETDURATION | HOLD-BACK | hls.js `hls.latency` median (range) | hls.js target latency "
        "| hls.js stalls "
        "| ffmpeg -re: behind the playlist's end at each segment opened, median (range) "
        "| ffmpeg: first segment opened, behind the end | ffmpeg: segment listed until opened, median (range) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        chosen = "chosen by the edge" if run.target_setting == 0 else "fixed"
        lines.append(f"| {run.target} ({chosen}) | {run.hold_back} s | {summary(run.hlsjs)} | "
                     f"{run.hlsjs_target if run.hlsjs_target is not None else '-'} s | {run.hlsjs_stalls} | {summary(run.ffmpeg)} | "
                     f"{f'{run.ffmpeg[0]:.1f} s' if run.ffmpeg else '-'} | {summary(run.ffmpeg_waited)} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    runs = []
    with tempfile.TemporaryDirectory(prefix="live-distance-") as tmp:
        for i, target in enumerate(args.targets * args.repeat):  # interleaved: 3, 0, 3, 0, ...
            runs.append(await measure(target, args.seconds, Path(tmp) / f"run-{i}-target-{target}"))
            print(f"target setting {target}: master playlist\n{runs[-1].master}", flush=True)
    print(report(runs, args.seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured per run (default 40)")
    parser.add_argument("--targets", type=lambda s: [int(v) for v in s.split(",")], default=[3, 0],
                        help="target durations to compare, 0: the edge's choice (default 3,0)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, interleaved (default 1)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
