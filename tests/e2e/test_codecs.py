"""Players choosing variants by the CODECS the edge probed: real segments (H.264 + AAC, H.264 + AC-3,
HEVC + AAC) on a loopback broadcaster, the edge's master playlist, and two players in headless
Chromium, hls.js 1.7 and Shaka Player 5.2 (with mux.js, its MPEG-TS transmuxer), each of which keeps
only the variants it can play by their CODECS. Without CODECS (before probing) both keep them all
and find out only when they try to play one."""

from __future__ import annotations

import asyncio
import json
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.e2e.browser import Browser
from tests.media import require
from tests.playlists_http.harness import open_edge, serve_on_loopback

SEGMENTS = 4
RENDITIONS = {  # name: (size, ffmpeg codec arguments)
    "source": ("1280x720", ["-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast", "-c:a", "aac"]),
    "sd": ("640x360", ["-c:v", "libx264", "-profile:v", "baseline", "-c:a", "ac3"]),
    "hevc": ("854x480", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-c:a", "aac"]),
}
PROFILES = [{"name": "sd", "width": 640, "height": 360, "bitrate": 800_000, "fps": 25},
            {"name": "hevc", "width": 854, "height": 480, "bitrate": 1_500_000, "fps": 25}]


def encode(directory: Path, size: str, codecs: list[str]) -> dict[int, bytes]:
    directory.mkdir(parents=True)
    subprocess.run(
        [require("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(2 * SEGMENTS), *codecs, "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
         "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts", str(directory / "%d.ts")],
        check=True, timeout=180,
    )
    return {n: (directory / f"{n}.ts").read_bytes() for n in range(SEGMENTS)}


LEVELS = """new Promise((resolve) => {
  const hls = new Hls();
  hls.on(Hls.Events.MANIFEST_PARSED, () => resolve(JSON.stringify(hls.levels.map((l) => l.attrs.CODECS || null))));
  hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal) resolve(JSON.stringify({fatal: d.details})); });
  hls.loadSource(%s);
})"""


SHAKA = """(async () => {
  shaka.polyfill.installAll();
  const video = document.createElement("video");
  video.muted = true;
  document.body.appendChild(video);
  const player = new shaka.Player();
  await player.attach(video);
  try {
    await player.load(%s);
    return JSON.stringify(player.getVariantTracks().map((t) => t.codecs));
  } finally {
    await player.destroy();
    video.remove();
  }
})()"""
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"


async def hlsjs_levels(browser: Browser, master: str) -> list[str | None]:
    """The CODECS of the variants hls.js keeps."""
    result = json.loads(await browser.evaluate(LEVELS % json.dumps(master), await_promise=True))
    assert isinstance(result, list), result
    return result


async def shaka_variants(browser: Browser, master: str) -> list[str]:
    """The codecs of the variants Shaka keeps (its guess where the master names none)."""
    if not await browser.evaluate("typeof shaka !== 'undefined'"):
        for script in ("mux.js/dist/mux.min.js", "shaka-player/dist/shaka-player.compiled.js"):
            await browser.evaluate((NODE_MODULES / script).read_text())
    codecs = json.loads(await browser.evaluate(SHAKA % json.dumps(master), await_promise=True))
    return [c.replace(" ", "") for c in codecs]


async def test_players_keep_only_the_variants_whose_probed_codecs_they_can_play(tmp_path: Path) -> None:
    media = {name: encode(tmp_path / name, size, codecs) for name, (size, codecs) in RENDITIONS.items()}
    async with asynccontextmanager(open_edge)(tmp_path / "edge") as edge:
        fake = await edge.add_broadcaster("a")
        fake.rendition_media = media
        sid = (await edge.create_stream(profiles=PROFILES))["id"]
        await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
        async with asynccontextmanager(serve_on_loopback)(edge) as url:
            browser = Browser(tmp_path / "chromium")
            try:
                await browser.open(f"{url}/play/{sid}")
                for _ in range(300):  # the page's scripts loaded
                    if await browser.evaluate("typeof Hls !== 'undefined'"):
                        break
                    await asyncio.sleep(0.05)
                master = f"{url}/stream/{sid}.m3u8"
                for name in RENDITIONS:  # two segments: playable, too few to probe
                    fake.add(sid, name, 0, 1)
                await edge.playlist(sid)
                feed = edge.svc.playlists.feeds[sid]
                await edge.wait_for(lambda: all(len(s.segments) == 2 for s in feed.states.values()) and len(feed.states) == 3)
                assert await hlsjs_levels(browser, master) == [None, None, None]  # not probed: all kept
                guessed = await shaka_variants(browser, master)
                assert len(guessed) == 3 and all(c.startswith("avc1.") for c in guessed), guessed  # a guess for all

                for name in RENDITIONS:
                    fake.add(sid, name, *range(SEGMENTS))
                async with httpx.AsyncClient() as http:
                    for _ in range(200):
                        text = (await http.get(master)).text
                        if text.count("CODECS=") == 3:
                            break
                        await asyncio.sleep(0.05)
                announced = [line.split('CODECS="')[1].split('"')[0] for line in text.splitlines() if "CODECS=" in line]
                assert announced[0] == "avc1.64001f,mp4a.40.2"
                assert announced[1].startswith("avc1.42c0") and announced[1].endswith(",ac-3")
                assert announced[2].startswith("hvc1.1.6.L") and announced[2].endswith(",mp4a.40.2")

                supported = json.loads(await browser.evaluate(
                    "JSON.stringify(%s.map((c) => c.split(',').every((one) => "
                    "MediaSource.isTypeSupported('video/mp4; codecs=\"' + one + '\"') || "
                    "MediaSource.isTypeSupported('audio/mp4; codecs=\"' + one + '\"'))))" % json.dumps(announced)))
                kept = await hlsjs_levels(browser, master + "?probed")  # not the copy the browser cached
                assert kept == [c for c, ok in zip(announced, supported) if ok]
                assert announced[0] in kept and len(kept) < len(announced), (announced, supported)
                # Shaka: its transmuxer (mux.js) takes H.264 and AAC only, so exactly the first.
                assert await shaka_variants(browser, master + "?probed") == [announced[0]]
            finally:
                await browser.close()
