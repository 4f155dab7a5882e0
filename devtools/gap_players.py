"""How real players react to a segment number missing in ONE rendition of a merged live stream.

The edge must keep every rendition agreeing on what media sequence number m is (RFC 8216 §6.2.4) and
on discontinuity numbers. When one rendition lacks a number (a failed transcode), the edge can:

- pass:       leave the number out of EVERY rendition, EXT-X-DISCONTINUITY on the next segment in all;
- gap:        list it in the faulty rendition as EXT-X-GAP (its URI 404s), healthy ones unchanged;
- substitute: list the same number's segment of another rendition (same timestamps, other resolution),
              with EXT-X-DISCONTINUITY before it and before the next own segment, in every rendition.

And for a rendition dead for a long stretch: gaps vs substitutes for every number it lacks.

This command measures it: it encodes ~44 s of a test pattern into two renditions (A: 640x360 H.264
baseline, B: 1280x720 H.264 high, both with AAC, 2 s MPEG-TS segments with identical timestamps per
number), serves them on 127.0.0.1 as live media playlists that grow by one segment every 2 s (a window
of 6, then EXT-X-ENDLIST) plus a master playlist, with rendition B's faults shown per strategy, and runs
real players against them at the same time: ffmpeg, GStreamer (playbin), mpv, streamlink and hls.js in
headless Chromium (on B's media playlist and on the master, starting on B). It prints a markdown table
and writes it into devtools/gap_players_results.md (between markers, so notes around them survive).

    python -m devtools.gap_players [--scenarios clean,gap,...] [--players ffmpeg,hlsjs,...]

Every process it starts is stopped by its own process group id; nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

SEGMENT_S = 2.0
FPS = 30
TOTAL = 22  # segments 0..21: 44 s of media
INITIAL = 4  # segments already published when a scenario starts
WINDOW = 6
SINGLE_FAULTS = frozenset({7, 11, 15})  # one-number faults in rendition B
DEAD = frozenset(range(8, 16))  # B dead for 8 numbers (16 s, longer than the window), then back
PUBLISH_S = (TOTAL - INITIAL) * SEGMENT_S  # ENDLIST appears this long after a scenario starts
GRACE_S = 26.0  # after ENDLIST, how long players get to finish
RESULTS = Path(__file__).with_name("gap_players_results.md")
BEGIN, END = "<!-- generated:start -->", "<!-- generated:end -->"


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    width: int
    height: int
    profile: str
    bitrate: int
    codecs: str


RENDITIONS = (
    Rendition("A", 640, 360, "baseline", 800_000, "avc1.42c01e,mp4a.40.2"),
    Rendition("B", 1280, 720, "high", 2_500_000, "avc1.64001f,mp4a.40.2"),
)
HEALTHY, FAULTY = RENDITIONS[0].name, RENDITIONS[1].name


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    strategy: str  # "none" | "pass" | "gap" | "substitute"
    missing: frozenset[int]  # numbers rendition B lacks
    description: str


SCENARIOS = (
    Scenario("clean", "none", frozenset(), "no fault (baseline)"),
    Scenario("pass", "pass", SINGLE_FAULTS, "B lacks 7, 11, 15: numbers left out of A and B, DISCONTINUITY after"),
    Scenario("gap", "gap", SINGLE_FAULTS, "B lacks 7, 11, 15: EXT-X-GAP in B (URI 404s)"),
    Scenario("substitute", "substitute", SINGLE_FAULTS,
             "B lacks 7, 11, 15: A's segment in B, DISCONTINUITY before and after in A and B"),
    Scenario("dead-gap", "gap", DEAD, "B dead for 8..15 (16 s), back at 16: EXT-X-GAP for each"),
    Scenario("dead-substitute", "substitute", DEAD,
             "B dead for 8..15, back at 16: A's segments in B, DISCONTINUITY at 8 and 16 in A and B"),
)


# --- playlists ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    number: int  # the ingest number
    source: str  # rendition whose file the URI points at
    gap: bool = False
    discontinuity: bool = False


def entries(scenario: Scenario, rendition: str) -> list[Entry]:
    """The rendition's full list of entries, as the edge would publish them over the stream's life."""
    out: list[Entry] = []
    borrowed_before = False
    passed_before = False
    for n in range(TOTAL):
        lacking = n in scenario.missing
        if scenario.strategy == "pass" and lacking:
            passed_before = True
            continue
        borrowed = scenario.strategy == "substitute" and lacking
        # The discontinuities follow B's faults, so they sit at the same numbers in every rendition.
        discontinuity = passed_before or borrowed != borrowed_before
        if rendition == FAULTY and borrowed:
            entry = Entry(n, HEALTHY, discontinuity=discontinuity)
        elif rendition == FAULTY and lacking and scenario.strategy == "gap":
            entry = Entry(n, FAULTY, gap=True)
        else:
            entry = Entry(n, rendition, discontinuity=discontinuity)
        out.append(entry)
        borrowed_before, passed_before = borrowed, False
    return out


def published_count(elapsed: float) -> int:
    """How many ingest numbers have arrived `elapsed` seconds into a scenario."""
    return min(TOTAL, INITIAL + int(max(0.0, elapsed) // SEGMENT_S))


def media_playlist(scenario: Scenario, rendition: str, elapsed: float) -> str:
    arrived = published_count(elapsed)
    published = [e for e in entries(scenario, rendition) if e.number < arrived]
    start = max(0, len(published) - WINDOW)
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(SEGMENT_S)}",
        f"#EXT-X-MEDIA-SEQUENCE:{start}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{sum(e.discontinuity for e in published[:start])}",
    ]
    for e in published[start:]:
        if e.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if e.gap:
            lines.append("#EXT-X-GAP")
        lines += [f"#EXTINF:{SEGMENT_S:.3f},", f"{e.source}/{e.number}.ts"]
    if arrived == TOTAL:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist() -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for r in RENDITIONS:
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={r.bitrate + 150_000},RESOLUTION={r.width}x{r.height},'
                  f'CODECS="{r.codecs}"', f"{r.name}.m3u8"]
    return "\n".join(lines) + "\n"


# --- media ----------------------------------------------------------------------------------------


async def encode_media(out_dir: Path) -> None:
    """Both renditions from one test pattern in one ffmpeg run: same frames, same timestamps (the
    offset keeps them positive, so the muxers never shift one rendition's timestamps), a key frame
    every 2 s, a segment per 2 s."""
    if all((out_dir / r.name / f"{TOTAL - 1}.ts").exists() for r in RENDITIONS):
        return
    seconds = str(TOTAL * SEGMENT_S)
    args = [
        need("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-t", seconds, "-i", f"testsrc2=size=1280x720:rate={FPS}",
        "-f", "lavfi", "-t", seconds, "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000",
        "-filter_complex", "[0:v]split=2[v0][v1];[v0]scale=640:360[vA];[v1]null[vB];[1:a]asplit=2[aA][aB]",
    ]
    for r in RENDITIONS:
        (out_dir / r.name).mkdir(parents=True, exist_ok=True)
        args += [
            "-map", f"[v{r.name}]", "-map", f"[a{r.name}]",
            "-c:v", "libx264", "-profile:v", r.profile, "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-b:v", str(r.bitrate), "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_S})", "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "96k", "-output_ts_offset", "10",
            # The hls muxer keeps one MPEG-TS muxer across segments: continuity counters run on, so a
            # player's "Packet corrupt" / "section discontinuity" points at the fault, not at every boundary.
            "-f", "hls", "-hls_time", str(SEGMENT_S), "-hls_list_size", "0",
            "-hls_segment_filename", str(out_dir / r.name / "%d.ts"), str(out_dir / r.name / "encoded.m3u8"),
        ]
    proc = await asyncio.create_subprocess_exec(*args, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 300)
    if proc.returncode != 0:
        raise SystemExit(f"encoding the test media failed: {err.decode(errors='replace')[-800:]}")


def need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if path is None:
        raise SystemExit(f"{tool} not found; see the module docstring of devtools.gap_players")
    return path


# --- the live server ------------------------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>gap players</title>
<video id="hlsjs-media" muted autoplay playsinline></video>
<video id="hlsjs-master" muted autoplay playsinline></video>
<script src="/hls.js"></script>
<script>
const players = {"hlsjs-media": ["/hlsjs-media/B.m3u8", {}],
                 "hlsjs-master": ["/hlsjs-master/master.m3u8", {startLevel: 1}]};
for (const [name, [src, config]] of Object.entries(players)) {
  const video = document.getElementById(name);
  const state = {errors: [], waiting: 0, levels: [], ended: false, fatal: null};
  const hls = new Hls(config);
  hls.on(Hls.Events.ERROR, (event, d) => {
    state.errors.push({details: d.details, fatal: d.fatal, sn: d.frag ? d.frag.sn : null});
    if (d.fatal) state.fatal = d.details;
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (event, d) => state.levels.push(d.level));
  video.addEventListener("waiting", () => state.waiting++);
  video.addEventListener("ended", () => state.ended = true);
  hls.loadSource(src);
  hls.attachMedia(video);
  video.play().catch(() => {});
  setInterval(() => {
    const q = video.getVideoPlaybackQuality();
    fetch("/report/" + name, {method: "POST", body: JSON.stringify({
      currentTime: video.currentTime, paused: video.paused, frames: q.totalVideoFrames,
      height: video.videoHeight, ...state})});
  }, 500);
}
</script>
"""


@dataclass(slots=True)
class Fetch:
    at: float
    rendition: str
    number: int
    status: int


@dataclass(slots=True)
class LiveServer:
    media_dir: Path
    hlsjs: Path | None
    scenario: Scenario = SCENARIOS[0]
    started: float = 0.0
    fetches: dict[str, list[Fetch]] = field(default_factory=dict)
    reports: dict[str, list[tuple[float, dict]]] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None

    def begin(self, scenario: Scenario) -> None:
        self.scenario, self.started = scenario, time.monotonic()
        self.fetches, self.reports = {}, {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/page.html", self._page)
        app.router.add_get("/hls.js", self._hlsjs)
        app.router.add_post("/report/{client}", self._report)
        app.router.add_get("/{client}/master.m3u8", self._master)
        app.router.add_get("/{client}/{rendition}.m3u8", self._media)
        app.router.add_get("/{client}/{rendition}/{number:\\d+}.ts", self._segment)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, client: str, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{client}/{name}"

    @staticmethod
    def _playlist(text: str) -> web.Response:
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "no-cache"})

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def _hlsjs(self, request: web.Request) -> web.StreamResponse:
        if self.hlsjs is None:
            raise web.HTTPNotFound()
        return web.FileResponse(self.hlsjs)

    async def _report(self, request: web.Request) -> web.Response:
        self.reports.setdefault(request.match_info["client"], []).append((self.elapsed(), await request.json()))
        return web.Response(status=204)

    async def _master(self, request: web.Request) -> web.Response:
        return self._playlist(master_playlist())

    async def _media(self, request: web.Request) -> web.Response:
        rendition = request.match_info["rendition"]
        if rendition not in {r.name for r in RENDITIONS}:
            raise web.HTTPNotFound()
        return self._playlist(media_playlist(self.scenario, rendition, self.elapsed()))

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        rendition, number = request.match_info["rendition"], int(request.match_info["number"])
        path = self.media_dir / rendition / f"{number}.ts"
        lacking = rendition == FAULTY and number in self.scenario.missing
        available = number < published_count(self.elapsed()) and path.exists() and not lacking
        self.fetches.setdefault(request.match_info["client"], []).append(
            Fetch(self.elapsed(), rendition, number, 200 if available else 404))
        if not available:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "video/mp2t"})


# --- processes ------------------------------------------------------------------------------------


async def spawn(args: list[str], log: Path, env: dict[str, str] | None = None,
                stdout: str = "discard") -> asyncio.subprocess.Process:
    """A child in a process group of its own (so it and its helpers stop together), stderr to `log`;
    stdout is discarded, piped to us ("pipe") or written to the log too ("log")."""
    with log.open("wb") as err:
        out = {"discard": asyncio.subprocess.DEVNULL, "pipe": asyncio.subprocess.PIPE, "log": err}[stdout]
        return await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            env={**os.environ, **(env or {})}, start_new_session=True)


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the group we started (its id is the child's pid), then SIGKILL if it lingers."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def exit_text(proc: asyncio.subprocess.Process, finished: bool) -> str:
    if not finished:
        return "still running at the time limit"
    code = proc.returncode or 0
    return f"**crashed** ({signal.Signals(-code).name})" if code < 0 else f"exit {code}"


async def run_until(proc: asyncio.subprocess.Process, deadline: float) -> bool:
    """Wait for the process until `deadline` (monotonic); stop it then. True if it exited by itself."""
    try:
        await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
        return True
    except TimeoutError:
        await stop(proc)
        return False


# --- results --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    player: str
    scenario: str
    outcome: str = ""
    played_s: float | None = None  # media played (decoded frames / fps, or playback position advance)
    expected_s: float | None = None  # from the first number it fetched to the end
    holes: list[float] = field(default_factory=list)  # timeline jumps in seconds
    stall_s: float | None = None  # longest wall-clock time without playback progress
    messages: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


def normalise(line: str) -> str:
    line = re.sub(r"https?://\S+", "<url>", line)
    line = re.sub(r"0x[0-9a-fA-F]+", "", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return re.sub(r"\s+", " ", line).strip()[:110]


def holes_in(pts: list[float]) -> list[float]:
    """Forward jumps of more than 1.5 frames between consecutive video timestamps."""
    ordered = sorted(pts)
    return [round(b - a - 1 / FPS, 2) for a, b in zip(ordered, ordered[1:]) if b - a > 1.5 / FPS]


def longest_stall(samples: list[tuple[float, float]], until: float | None = None) -> float | None:
    """(wall time, playback position) samples: the longest wall time the position did not move,
    counted from the first movement on (start-up is not a stall)."""
    longest, still_since, last_pos, moving = 0.0, None, None, False
    for at, pos in samples:
        if last_pos is not None and pos > last_pos + 0.01:
            moving = True
            still_since = at
        elif moving and still_since is not None:
            longest = max(longest, at - still_since)
        last_pos = pos
        if until is not None and at > until:
            break
    return round(longest, 1) if moving else None


# --- players --------------------------------------------------------------------------------------


class Run:
    """One scenario: the server publishing it, and a scratch directory for the players' logs."""

    def __init__(self, server: LiveServer, work: Path, scenario: Scenario) -> None:
        self.server, self.scenario = server, scenario
        self.dir = work / scenario.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + PUBLISH_S + GRACE_S


async def play_ffmpeg(run: Run) -> list[Result]:
    result = Result("ffmpeg", run.scenario.name)
    frames = run.dir / "ffmpeg.framecrc"
    proc = await spawn([need("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "level+warning",
                        "-i", run.server.url("ffmpeg", f"{FAULTY}.m3u8"), "-map", "0:v:0", "-map", "0:a:0?",
                        "-fps_mode", "passthrough", "-f", "framecrc", "-y", str(frames)], run.dir / "ffmpeg.log")
    finished = await run_until(proc, run.deadline)
    result.outcome = exit_text(proc, finished)
    for line in (run.dir / "ffmpeg.log").read_text(errors="replace").splitlines():
        if line.startswith(("[warning]", "[error]", "[fatal]")) or "[warning]" in line or "[error]" in line:
            result.messages[normalise(line)] += 1
    pts = framecrc_video_pts(frames)
    result.played_s = round(len(pts) / FPS, 1)
    result.holes = holes_in(pts)
    return [result]


def framecrc_video_pts(path: Path) -> list[float]:
    if not path.exists():
        return []
    base = 1.0
    pts: list[float] = []
    for line in path.read_text(errors="replace").splitlines():
        if m := re.match(r"#tb 0: (\d+)/(\d+)", line):
            base = int(m.group(1)) / int(m.group(2))
        elif line.startswith("0,"):
            pts.append(int(line.split(",")[2]) * base)
    return pts


async def play_gstreamer(run: Run) -> list[Result]:
    """GStreamer twice: playbin3 (which takes hlsdemux2 from -good) and playbin with the older hlsdemux
    from -bad (hlsdemux2 ranked out: playbin cannot use it, it needs a streams-aware parent)."""
    return list(await asyncio.gather(
        gstreamer(run, "GStreamer playbin3", "gst3", "playbin3", {}),
        gstreamer(run, "GStreamer playbin", "gst", "playbin", {"GST_PLUGIN_FEATURE_RANK": "hlsdemux2:NONE"})))


async def gstreamer(run: Run, label: str, client: str, element: str, env: dict[str, str]) -> Result:
    result = Result(label, run.scenario.name)
    sink = "fakesink sync=true silent=false name=vsink"
    log = run.dir / f"{client}.log"
    proc = await spawn([need("gst-launch-1.0"), "-v", element, f"uri={run.server.url(client, f'{FAULTY}.m3u8')}",
                        f"video-sink={sink}", "audio-sink=fakesink sync=true"],
                       log, env={"GST_DEBUG": "2", "GST_DEBUG_NO_COLOR": "1", **env}, stdout="pipe")
    samples: list[tuple[float, float]] = []
    demuxers: set[str] = set()
    errors: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace")
            if "vsink: last-message = chain" in line and (m := re.search(r"pts: (\d+):(\d+):([\d.]+)", line)):
                samples.append((run.server.elapsed(), int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))))
            elif m := re.search(r"/(GstHLSDemux2?):", line):
                demuxers.add(m.group(1))
            elif line.startswith(("ERROR", "WARNING")) or "Got EOS" in line:
                errors.append(line.strip())

    reader = asyncio.create_task(read())
    finished = await run_until(proc, run.deadline)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader, 5)
    eos = any("Got EOS" in e for e in errors)
    result.outcome = "reached the end (EOS)" if eos and finished and proc.returncode == 0 else exit_text(proc, finished)
    for e in errors:
        if "Got EOS" not in e:
            result.messages[normalise(e)] += 1
    for line in log.read_text(errors="replace").splitlines():
        if "No value transform to serialize" in line:  # gst-launch -v printing a property: noise
            continue
        if line.startswith("ERROR:"):  # a failed assertion (GLib prints it before aborting)
            result.messages[normalise(line)] += 1
        elif m := re.match(r"\S+\s+\d+\s+\S+\s+(WARN|ERROR)\s+(\S+)\s+\S+:(.*)", line):
            result.messages[normalise(f"{m.group(1)} {m.group(2)} {m.group(3)}")] += 1
    pts = [p for _, p in samples]
    result.played_s = round(len(pts) / FPS, 1)
    result.holes = holes_in(pts)
    result.stall_s = longest_stall(samples)
    result.notes.append("demuxer: " + (", ".join(sorted(demuxers)) or "?"))
    return result


async def play_mpv(run: Run) -> list[Result]:
    result = Result("mpv", run.scenario.name)
    ipc = run.dir / "mpv.sock"
    ipc.unlink(missing_ok=True)
    proc = await spawn([need("mpv"), "--no-config", "--vo=null", "--ao=null", "--really-quiet",
                        f"--input-ipc-server={ipc}", f"--log-file={run.dir / 'mpv.log'}",
                        run.server.url("mpv", f"{FAULTY}.m3u8")], run.dir / "mpv.stderr")
    samples: list[tuple[float, float]] = []

    async def poll() -> None:
        for _ in range(100):
            if ipc.exists():
                break
            await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_unix_connection(str(ipc))
        request = 0
        while proc.returncode is None:
            request += 1
            writer.write(json.dumps({"command": ["get_property", "time-pos"], "request_id": request}).encode() + b"\n")
            await writer.drain()
            while True:
                reply = json.loads(await reader.readline() or b"{}")
                if not reply or reply.get("request_id") == request:
                    break
            if isinstance(reply.get("data"), (int, float)):
                samples.append((run.server.elapsed(), float(reply["data"])))
            await asyncio.sleep(0.25)

    poller = asyncio.create_task(poll())
    finished = await run_until(proc, run.deadline)
    poller.cancel()
    with contextlib.suppress(BaseException):
        await poller
    log = (run.dir / "mpv.log").read_text(errors="replace") if (run.dir / "mpv.log").exists() else ""
    end = re.search(r"Exiting\.\.\. \((.*)\)", log) or re.search(r"finished playback, (.*)", log)
    result.outcome = exit_text(proc, finished) + (f" ({end.group(1)})" if finished and end else "")
    for line in log.splitlines():
        if m := re.match(r"\[\s*[\d.]+\]\[(e|w)\]\[(.*?)\] (.*)", line):
            result.messages[normalise(f"[{m.group(1)}][{m.group(2)}] {m.group(3)}")] += 1
    if samples:
        # The position jumps over a hole in the media: those seconds were not played.
        result.holes = [round(b[1] - a[1] - (b[0] - a[0]), 1) for a, b in zip(samples, samples[1:])
                        if b[1] - a[1] > 1.0 + (b[0] - a[0])]
        result.played_s = round(samples[-1][1] - samples[0][1] - sum(result.holes), 1)
    result.stall_s = longest_stall(samples)
    result.notes.append("played = time-pos advance less its jumps")
    return [result]


async def play_streamlink(run: Run) -> list[Result]:
    result = Result("streamlink", run.scenario.name)
    out = run.dir / "streamlink.ts"
    out.unlink(missing_ok=True)
    proc = await spawn([need("streamlink"), "--loglevel", "debug", "--hls-live-edge", "3", "--force",
                        "-o", str(out), "hls://" + run.server.url("streamlink", f"{FAULTY}.m3u8"), "best"],
                       run.dir / "streamlink.log", stdout="log")
    finished = await run_until(proc, run.deadline)
    result.outcome = exit_text(proc, finished)
    for line in (run.dir / "streamlink.log").read_text(errors="replace").splitlines():
        if "Queuing HLSSegment" in line or "Adding segment" in line:  # its debug trace of every segment
            continue
        if re.search(r"\]\[(warning|error)\]|discontinuit|EXT-X-GAP|skipping|failed", line, re.IGNORECASE):
            result.messages[normalise(re.sub(r"^\[\S*\]", "", line))] += 1
    pts = await probe_video_pts(out)
    result.played_s = round(len(pts) / FPS, 1)
    result.holes = holes_in(pts)
    result.notes.append("played = video frames in the file it wrote")
    return [result]


async def probe_video_pts(path: Path) -> list[float]:
    if not path.exists():
        return []
    proc = await asyncio.create_subprocess_exec(
        need("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
        "-of", "csv=p=0", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    values = (v.strip(",") for v in out.decode().split())
    return [float(v) for v in values if re.fullmatch(r"\d+(\.\d+)?", v)]


async def play_hlsjs(run: Run) -> list[Result]:
    """hls.js on B's media playlist and on the master (starting on B) in one headless Chromium page;
    the page posts each player's state to the server twice a second."""
    profile = run.dir / "chromium"
    proc = await spawn([need("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                        "--remote-debugging-port=0", f"--user-data-dir={profile}",
                        f"http://127.0.0.1:{run.server.port}/page.html"], run.dir / "chromium.log")
    names = ("hlsjs-media", "hlsjs-master")
    try:
        while time.monotonic() < run.deadline and proc.returncode is None:
            last = {n: run.server.reports.get(n, [(0.0, {})])[-1][1] for n in names}
            if all(s.get("ended") or s.get("fatal") for s in last.values()):
                break
            await asyncio.sleep(0.5)
    finally:
        await stop(proc)
    results = []
    for name, label in zip(names, ("hls.js (B media)", "hls.js (master)")):
        result = Result(label, run.scenario.name)
        reports = run.server.reports.get(name, [])
        if not reports:
            result.outcome = "no report from the page"
            results.append(result)
            continue
        last = reports[-1][1]
        result.outcome = (f"**fatal** {last['fatal']}" if last.get("fatal")
                          else "ended" if last.get("ended") else "still playing at the time limit")
        for e in last.get("errors", []):
            result.messages[f"{'fatal' if e['fatal'] else 'non-fatal'} {e['details']}"] += 1
        samples = [(at, float(s["currentTime"])) for at, s in reports]
        moved = [p for _, p in samples if p > 0]
        result.played_s = round(moved[-1] - moved[0], 1) if moved else 0.0
        result.stall_s = longest_stall(samples)
        result.notes.append(f"{last.get('frames', 0)} frames decoded, {last.get('waiting', 0)} 'waiting'")
        if name == "hlsjs-master":
            levels = last.get("levels", [])
            result.notes.append("levels " + "->".join(str(v) for v in levels))
        results.append(result)
    return results


PLAYERS: dict[str, Callable[[Run], Awaitable[list[Result]]]] = {
    "ffmpeg": play_ffmpeg, "gstreamer": play_gstreamer, "mpv": play_mpv,
    "streamlink": play_streamlink, "hlsjs": play_hlsjs,
}
CLIENT_OF = {"ffmpeg": "ffmpeg", "gstreamer": "gst", "hlsjs": "hlsjs-media", "GStreamer playbin": "gst",
             "GStreamer playbin3": "gst3", "mpv": "mpv", "streamlink": "streamlink",
             "hls.js (B media)": "hlsjs-media", "hls.js (master)": "hlsjs-master"}


async def run_scenario(server: LiveServer, work: Path, scenario: Scenario, players: list[str]) -> list[Result]:
    server.begin(scenario)
    run = Run(server, work, scenario)
    groups = await asyncio.gather(*(PLAYERS[p](run) for p in players), return_exceptions=True)
    results: list[Result] = []
    for name, group in zip(players, groups):
        if isinstance(group, BaseException):
            results.append(Result(name, scenario.name, outcome=f"harness error: {group!r}"[:120]))
        else:
            results += group
    for r in results:
        fetched = server.fetches.get(CLIENT_OF[r.player], [])
        if fetched:
            first = min(f.number for f in fetched)
            r.expected_s = (TOTAL - first) * SEGMENT_S
            missing = sorted({f.number for f in fetched if f.status == 404})
            if missing:
                r.notes.append(f"fetched 404 for {','.join(map(str, missing))}")
            if r.player == "hls.js (master)":
                counts = Counter(f.rendition for f in fetched if f.status == 200)
                r.notes.append("segments from " + ", ".join(f"{k}:{v}" for k, v in sorted(counts.items())))
        else:
            r.notes.append("fetched no segment")
    return results


# --- report ---------------------------------------------------------------------------------------


def cell(r: Result) -> str:
    played = "?" if r.played_s is None else f"{r.played_s:.0f}"
    expected = "?" if r.expected_s is None else f"{r.expected_s:.0f}"
    parts = [r.outcome, f"{played}/{expected} s"]
    if r.holes:
        parts.append(f"{len(r.holes)} holes ({sum(r.holes):.1f} s)")
    if r.stall_s:
        parts.append(f"stall {r.stall_s:.0f} s")
    top = [m for m, _ in r.messages.most_common(2)]
    if top:
        parts.append("; ".join(f"`{m[:60]}`" for m in top))
    return ", ".join(parts).replace("|", "/")


def report(results: list[Result], scenarios: list[Scenario]) -> str:
    players = list(dict.fromkeys(r.player for r in results))
    by = {(r.player, r.scenario): r for r in results}
    out = ["### Summary (player x strategy)", "",
           "Cell: outcome, media played / expected (from the first number it fetched to the end), timeline "
           "holes, longest stall once playing, the two most frequent messages.", "",
           "| player | " + " | ".join(s.name for s in scenarios) + " |",
           "|---|" + "---|" * len(scenarios)]
    for p in players:
        out.append(f"| {p} | " + " | ".join(cell(by[(p, s.name)]) if (p, s.name) in by else "-"
                                           for s in scenarios) + " |")
    out += ["", "Scenarios:", ""] + [f"- **{s.name}**: {s.description}" for s in scenarios]
    out += ["", "### Details", "", "| player | scenario | outcome | played/expected s | holes s | stall s | messages (count) | notes |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        messages = "<br>".join(f"{n}x `{m}`" for m, n in r.messages.most_common(6)).replace("|", "/")
        out.append(f"| {r.player} | {r.scenario} | {r.outcome} | {r.played_s}/{r.expected_s} | "
                   f"{', '.join(map(str, r.holes)) or '-'} | {r.stall_s if r.stall_s is not None else '-'} | "
                   f"{messages or '-'} | {'; '.join(r.notes)} |")
    return "\n".join(out) + "\n"


def save(text: str) -> None:
    header = (f"Generated by `python -m devtools.gap_players` on {time.strftime('%Y-%m-%d %H:%M')}: "
              f"2 s segments, window {WINDOW}, {TOTAL} segments, ENDLIST at the end.\n\n")
    block = f"{BEGIN}\n{header}{text}{END}"
    old = RESULTS.read_text() if RESULTS.exists() else f"# Players vs. a number missing in one rendition\n\n{BEGIN}\n{END}\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old + "\n" + block + "\n"
    RESULTS.write_text(new)


async def main_async(args: argparse.Namespace) -> None:
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios.split(",")]
    players = [p for p in args.players.split(",") if p in PLAYERS]
    hlsjs = Path(__file__).resolve().parent.parent / "node_modules" / "hls.js" / "dist" / "hls.min.js"
    if "hlsjs" in players and not hlsjs.exists():
        raise SystemExit(f"{hlsjs} missing: run `npm ci` in the repository")
    with tempfile.TemporaryDirectory(prefix="gap-players-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        print(f"encoding {TOTAL * SEGMENT_S:.0f} s of test media into {work / 'media'} ...", file=sys.stderr)
        await encode_media(work / "media")
        server = LiveServer(work / "media", hlsjs if hlsjs.exists() else None)
        await server.start()
        results: list[Result] = []
        try:
            for s in scenarios:
                print(f"scenario {s.name}: {s.description} (~{PUBLISH_S + GRACE_S:.0f} s)", file=sys.stderr)
                results += await run_scenario(server, work, s, players)
        finally:
            await server.stop()
    text = report(results, scenarios)
    print(text)
    if not args.no_save:
        save(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    parser.add_argument("--players", default=",".join(PLAYERS))
    parser.add_argument("--keep", help="a directory to keep the media and the players' logs in")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.name}")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
