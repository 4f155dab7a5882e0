"""Real players on what `edge demo` serves: ffmpeg decodes the merged playlist and hls.js in headless
Chromium plays the player page, both across broadcaster switches and a broadcaster killed mid-stream.

The demo runs as a user runs it (the `Demo` class behind `edge demo`): an edge on the embedded
default, three reference broadcasters on loopback transcoding with ffmpeg, and a live test pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import AsyncIterator

from devtools.demo import Demo
from tests.conftest import free_port
from tests.e2e.browser import Browser
from tests.media import require

SWITCH_EVERY = 6  # segments (12 s) on one broadcaster before the ingest moves on
# Seconds after the ingest started. The ingest is then on its second broadcaster; the first one, whose
# segments both players fetched long ago, dies, and the ingest must fail over when it comes back to it.
KILL_AT = 20.0
DECODE_SECONDS = 32


@contextlib.asynccontextmanager
async def demo_and_browser(tmp_path: Path, **options: object) -> AsyncIterator[tuple[Demo, Browser]]:
    """`edge demo` started (its stream playable) and a headless Chromium, both stopped after."""
    demo = Demo(port=free_port(), data_dir=str(tmp_path / "data"), switch_every=SWITCH_EVERY, **options)  # type: ignore[arg-type]
    browser = Browser(tmp_path / "chromium")
    try:
        await demo.start()
        assert demo.ingest is not None and demo.stream_id is not None
        yield demo, browser
    finally:
        await browser.close()
        await demo.stop()


async def player_state(browser: Browser) -> dict | None:
    """hls.js's state in the player page (None before it starts); never a fatal error."""
    state = await browser.evaluate("JSON.stringify(window.playerState || null)")
    state = None if state in (None, "null") else json.loads(state)
    if state is not None:
        assert state["fatal"] is None, f"hls.js fatal error: {state['fatal']} ({state['errors']})"
    return state


async def test_ffmpeg_and_hlsjs_play_across_switches_and_a_killed_broadcaster(tmp_path: Path) -> None:
    ffmpeg = require("ffmpeg")
    loop = asyncio.get_running_loop()
    decoder = None
    async with demo_and_browser(tmp_path) as (demo, browser):
        try:
            started = loop.time() - (max(demo.ingest.sent) + 1) * demo.segment_seconds
            first = demo.current_broadcaster()
            assert first is not None

            decoder = await asyncio.create_subprocess_exec(
                ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
                "-i", f"{demo.url}/stream/{demo.stream_id}/source.m3u8",
                "-map", "0:v:0", "-t", str(DECODE_SECONDS), "-f", "framecrc", "-",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            decoding = asyncio.create_task(decoder.communicate())
            await browser.open(f"{demo.url}/play/{demo.stream_id}")

            positions: list[float] = []
            killed_at = None
            while True:
                state = await player_state(browser)
                if state is not None:
                    positions.append(state["currentTime"])
                if killed_at is None and loop.time() - started >= KILL_AT:
                    assert demo.current_broadcaster() is not first, "the ingest never moved on"
                    await demo.kill(first)
                    killed_at = loop.time()
                played = positions[-1] - positions[0] if positions else 0.0
                if decoding.done() and killed_at is not None and loop.time() - killed_at > 6 and played >= 24:
                    break
                assert loop.time() - started < 120, (
                    f"players too slow: hls.js played {played:.1f} s, ffmpeg done: {decoding.done()}, killed: {killed_at}")
                await asyncio.sleep(0.5)

            stdout, stderr = await decoding
            assert decoder.returncode == 0, stderr.decode(errors="replace")[-2000:]
            # ffmpeg notes (at error level) each time the next segment is on another host and it opens a new
            # connection: that is what a merged playlist is. Anything else is an error.
            errors = [line for line in stderr.decode().splitlines()
                      if line.strip() and "Cannot reuse HTTP connection for different host" not in line]
            assert errors == [], "ffmpeg reported errors:\n" + "\n".join(errors[-20:])
            pts = [int(m.group(1)) for m in re.finditer(r"^0,\s*(-?\d+),", stdout.decode(), re.MULTILINE)]
            steps = [b - a for a, b in zip(pts, pts[1:])]
            assert len(pts) >= (DECODE_SECONDS - 2) * demo.pattern.fps, len(pts)
            assert steps and min(steps) > 0 and max(steps) <= 2 * min(steps), f"timestamps jump: {sorted(set(steps))}"

            # hls.js: time advanced across the switches and the kill, with no fatal error.
            assert positions[-1] - positions[0] >= 20
            assert all(b >= a for a, b in zip(positions, positions[1:])), "playback went backwards"
            switches = [e for e in demo.ingest.events if e.kind == "switch"]
            assert len(switches) >= 2, "the ingest did not move between broadcasters"
            assert not first.running
        finally:
            if decoder is not None and decoder.returncode is None:
                decoder.kill()
                await decoder.wait()


async def test_killing_the_broadcaster_in_use_costs_players_nothing_in_mirror_mode(tmp_path: Path) -> None:
    """The issue's case: the broadcaster the ingest is sending to dies. Its published segments were
    copied to the edge's store before they were listed, so neither ffmpeg nor hls.js fails to load
    one (in direct mode both did: `Failed to open segment`, `fragLoadError`)."""
    ffmpeg = require("ffmpeg")
    loop = asyncio.get_running_loop()
    decoder = None
    async with demo_and_browser(tmp_path, segment_mode="mirror") as (demo, browser):
        try:
            decoder = await asyncio.create_subprocess_exec(
                # A player behind the live edge, as a slow-reloading client is: it reads in real time
                # from the first listed segment, so the segments the victim listed are still to fetch.
                ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re", "-live_start_index", "0",
                "-i", f"{demo.url}/stream/{demo.stream_id}/source.m3u8",
                "-map", "0:v:0", "-t", str(DECODE_SECONDS), "-f", "null", "-",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            decoding = asyncio.create_task(decoder.communicate())
            await browser.open(f"{demo.url}/play/{demo.stream_id}")
            started = loop.time()
            positions: list[float] = []
            errors: list[str] = []
            killed_at = None
            while True:
                state = await player_state(browser)
                if state is not None:
                    positions.append(state["currentTime"])
                    errors = state["errors"]
                if killed_at is None and loop.time() - started >= 10 and positions and positions[-1] > 4:
                    victim = demo.current_broadcaster()
                    assert victim is not None
                    await demo.kill(victim)  # the one in use, with segments of it listed
                    killed_at = loop.time()
                played = positions[-1] - positions[0] if positions else 0.0
                if decoding.done() and killed_at is not None and loop.time() - killed_at > 12 and played >= 24:
                    break
                assert loop.time() - started < 120, f"players too slow: hls.js played {played:.1f} s"
                await asyncio.sleep(0.5)
            _, stderr = await decoding
            log = stderr.decode(errors="replace")
            assert decoder.returncode == 0, log[-2000:]
            assert "Failed to open segment" not in log and "HTTP error" not in log, log[-3000:]
            assert not [e for e in errors if "fragLoad" in e], errors
            assert positions[-1] - positions[0] >= 20
        finally:
            if decoder is not None and decoder.returncode is None:
                decoder.kill()
                await decoder.wait()
