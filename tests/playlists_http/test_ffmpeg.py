"""ffmpeg, a real player, reads the merged playlist through the issue's faults without complaint."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.conftest import auth
from tests.media import require, pattern_segments
from tests.playlists_http.harness import open_edge, serve_on_loopback

FORBIDDEN = ("Media sequence changed unexpectedly", "skipping")


async def test_ffmpeg_reads_the_merged_playlist_across_moves_a_loss_and_a_dead_broadcaster(tmp_path: Path) -> None:
    ffmpeg = require("ffmpeg")
    segments = pattern_segments(tmp_path / "media", seconds=60)
    async for edge in open_edge(tmp_path):
        names = ["a", "b", "c"]
        for name in names:
            fake = await edge.add_broadcaster(name, window=8)
            fake.media = dict(enumerate(segments))
        sid = (await edge.create_stream())["id"]
        for name in names:
            await edge.svc.store.registry.note_carrier(sid, name, edge.svc.clock())
        async for url in serve_on_loopback(edge):
            alive = list(names)
            pace = 0.5  # four times real time: 2 s segments every 0.5 s

            async def ingest() -> None:
                for n in range(len(segments)):
                    if n == 18:
                        await edge.fakes["b"].stop()  # dies mid-stream
                        alive.remove("b")
                    if n != 7:  # lost for good
                        edge.fakes[alive[(n // 3) % len(alive)]].add(sid, "source", n)
                    await asyncio.sleep(pace)
                await asyncio.sleep(edge.svc.settings.hole_wait + 0.5)
                await edge.client.post(f"/api/stream/{sid}/end", headers=auth())

            task = asyncio.create_task(ingest())
            await asyncio.sleep(pace * 4)  # a few segments exist before the player joins
            proc = await asyncio.create_subprocess_exec(
                ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "verbose",
                "-i", f"{url}/stream/{sid}/source.m3u8", "-f", "null", "-",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
            await task
            log = stderr.decode(errors="replace")
            for message in FORBIDDEN:
                assert message not in log, f"ffmpeg said {message!r}:\n{log[-3000:]}"
            assert proc.returncode == 0, log[-3000:]
            decoded = [int(m) for m in re.findall(r"frame=\s*(\d+)", log)]
            # it joined live a few segments in and followed to the end: well over 20 s of 25 fps video
            assert decoded and max(decoded) >= 25 * 20, log[-2000:]
