"""Fake broadcasters for tests: real HTTP servers on loopback, serving go-livepeer-shaped playlists.

A test decides which segment numbers each broadcaster holds per (stream, rendition), or sets a raw
playlist body (hostile input), and can make a broadcaster slow, failing or dead. Every request is
counted, so tests can assert upstream load.
"""

from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeBroadcaster:
    name: str
    segment_duration: float = 2.0
    window: int = 6
    delay: float = 0.0  # seconds before answering
    status: int = 200  # answer with this status when not 200
    segments: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    durations: dict[int, float] = field(default_factory=dict)
    raw: dict[tuple[str, str], bytes] = field(default_factory=dict)
    media: dict[int, bytes] = field(default_factory=dict)  # segment bodies by number (any stream/rendition)
    rendition_media: dict[str, dict[int, bytes]] = field(default_factory=dict)  # a rendition's own bodies
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    _runner: web.AppRunner | None = None
    _media_sequence: dict[tuple[str, str], int] = field(default_factory=dict)
    url: str = ""

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/stream/{stream}/{rendition}.m3u8", self._playlist)
        app.router.add_get("/stream/{stream}/{rendition}/{n:[0-9]+}.ts", self._segment)
        app.router.add_get("/", self._root)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def add(self, stream: str, rendition: str, *numbers: int) -> None:
        """Hold these segment numbers (kept to the last `window`, as a broadcaster does)."""
        held = self.segments.setdefault((stream, rendition), [])
        for n in numbers:
            if n not in held:
                held.append(n)
                # go-livepeer's own MEDIA-SEQUENCE counts its own segments and means nothing to us
                self._media_sequence[(stream, rendition)] = self._media_sequence.get((stream, rendition), 0) + 1
        held.sort()
        del held[: max(0, len(held) - self.window)]

    def playlist_text(self, stream: str, rendition: str) -> str:
        held = self.segments.get((stream, rendition), [])
        durations = [self.durations.get(n, self.segment_duration) for n in held]
        target = math.ceil(max(durations, default=self.segment_duration))
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence.get((stream, rendition), 0) * 7 + 1000}",
            f"#EXT-X-TARGETDURATION:{target}",
        ]
        for n, duration in zip(held, durations):
            lines += [f"#EXTINF:{duration:.3f},", f"/stream/{stream}/{rendition}/{n}.ts"]
        return "\n".join(lines) + "\n"

    async def _root(self, request: web.Request) -> web.Response:
        self.requests["/"] += 1
        return web.Response(text="ok")

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["stream"], request.match_info["rendition"])
        n = int(request.match_info["n"])
        self.requests[request.path] += 1
        bodies = self.rendition_media.get(key[1], self.media)
        if n not in self.segments.get(key, []) or n not in bodies:
            return web.Response(status=404, text="no such segment")
        # As go-livepeer does: players in browsers fetch segments from the broadcasters themselves.
        return web.Response(body=bodies[n], content_type="video/mp2t", headers={"Access-Control-Allow-Origin": "*"})

    async def _playlist(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["stream"], request.match_info["rendition"])
        self.requests[request.path] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status, text="fault")
        if key in self.raw:
            return web.Response(body=self.raw[key], content_type="application/vnd.apple.mpegurl")
        if key not in self.segments:
            return web.Response(status=404, text="no such stream")
        return web.Response(
            text=self.playlist_text(*key),
            content_type="application/vnd.apple.mpegurl",
            headers={"Cache-Control": "max-age=5"},
        )
