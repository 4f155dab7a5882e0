"""A fault-injecting broadcaster for the soak: in-process (aiohttp on 127.0.0.1), go-livepeer-shaped
playlists for every rendition of every stream it was given segments of, and tiny segment bodies.

The soak's script decides what it holds (`receive`), what it lists besides (`list_hostile`), and how
its playlist answers misbehave for a while (`set_fault`); `kill` and `restart` end and resume it on
the same port, its memory gone, as a crashed and restarted node. It also says what a poller would
see from it now (`visible_numbers`), which is the ground truth of the soak's stall check.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from devtools.hls import target_duration

PlaylistFault = Literal["slow", "http500", "garbage", "huge", "frozen"]
PLAYLIST_FAULTS: tuple[PlaylistFault, ...] = ("slow", "http500", "garbage", "huge", "frozen")
# A null MPEG-TS packet: a real (if empty) transport stream, for "every URI downloads".
TS_NULL_PACKET = b"\x47\x1f\xff\x10" + b"\xff" * 184
GARBAGE = b"\x00\xff<html>502 Bad Gateway</html>\n#EXTINF:abc,\n\x00\x00\xfe\xfd" * 8

Key = tuple[str, str]  # (stream id, rendition)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line pair of a listing: the ingest number, the URI as written, its EXTINF."""

    number: int
    uri: str
    duration: float
    hostile: bool = False


@dataclass
class _Rendition:
    held: dict[int, float] = field(default_factory=dict)  # number -> duration, retained for downloads
    hostile: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # number -> (uri, duration, until)
    slid_out: int = 0  # go-livepeer's own MEDIA-SEQUENCE: meaningless to the edge
    max_duration: float = 0.0


class SoakBroadcaster:
    def __init__(self, name: str, window: int = 6, retain: int = 40, slow_s: float = 1.0,
                 huge_bytes: int = 2 * 1024 * 1024) -> None:
        self.name = name
        self.window = window
        self.retain = retain
        self.slow_s = slow_s
        self.huge_bytes = huge_bytes
        self.port = 0
        self._renditions: dict[Key, _Rendition] = {}
        self._fault: PlaylistFault | None = None
        self._fault_until = 0.0
        self._frozen: dict[Key, tuple[bytes, list[int]]] = {}
        self._runner: web.AppRunner | None = None
        self.requests = 0

    # --- life ---

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port the first time, the same one after a restart)."""
        app = web.Application()
        app.add_routes([
            web.get("/stream/{sid}/{rendition}.m3u8", self._playlist),
            web.get(r"/stream/{sid}/{rendition}/{n:[0-9]+}.ts", self._segment),
            web.get("/", self._root),
        ])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def kill(self) -> None:
        """Gone at once: connections cut, memory lost (it restarts empty, as go-livepeer does)."""
        runner, self._runner = self._runner, None
        self._renditions.clear()
        self._frozen.clear()
        self._fault = None
        if runner is not None:
            if runner.server is not None:
                for connection in runner.server.connections:
                    connection.force_close()
            await runner.cleanup()

    restart = start

    # --- what the script does to it ---

    def streams(self) -> list[str]:
        """Stream ids it holds segments of: what its heartbeat reports."""
        return sorted({sid for (sid, _), r in self._renditions.items() if r.held})

    def receive(self, sid: str, rendition: str, number: int, duration: float) -> None:
        """A transcoded segment arrived: held (listed while among the newest `window`)."""
        if not self.alive:
            return
        r = self._renditions.setdefault((sid, rendition), _Rendition())
        if number in r.held:
            return
        before = self._listed_numbers(r)
        r.held[number] = duration
        r.max_duration = max(r.max_duration, duration)
        r.slid_out += len(set(before) - set(self._listed_numbers(r)))
        for old in sorted(r.held)[: max(0, len(r.held) - self.retain)]:
            del r.held[old]

    def list_hostile(self, sid: str, rendition: str, number: int, uri: str, duration: float, for_s: float) -> None:
        """List `uri` (outside the layout) as segment `number` for `for_s` seconds."""
        if self.alive:
            r = self._renditions.setdefault((sid, rendition), _Rendition())
            r.hostile[number] = (uri, duration, time.monotonic() + for_s)

    def set_fault(self, fault: PlaylistFault, for_s: float) -> None:
        if not self.alive:
            return
        self._fault, self._fault_until = fault, time.monotonic() + for_s
        self._frozen = {key: (self._render(key).encode(), self._listed_numbers(r))
                        for key, r in self._renditions.items()} if fault == "frozen" else {}

    def fault(self) -> PlaylistFault | None:
        if self._fault is not None and time.monotonic() >= self._fault_until:
            self._fault, self._frozen = None, {}
        return self._fault

    def holds(self, sid: str, rendition: str, number: int) -> bool:
        r = self._renditions.get((sid, rendition))
        return r is not None and number in r.held

    def visible_numbers(self, sid: str, rendition: str) -> list[int]:
        """The layout-conforming numbers a poller gets from it now (none while dead or failing)."""
        if not self.alive:
            return []
        fault = self.fault()
        if fault == "frozen":
            return self._frozen.get((sid, rendition), (b"", []))[1]
        if fault is not None:
            return []
        r = self._renditions.get((sid, rendition))
        return self._listed_numbers(r) if r else []

    # --- rendering ---

    def _listed_numbers(self, r: _Rendition) -> list[int]:
        return sorted(r.held)[-self.window:]

    def _entries(self, key: Key) -> list[Entry]:
        sid, rendition = key
        r = self._renditions[key]
        now = time.monotonic()
        for number in [n for n, (_, _, until) in r.hostile.items() if until <= now]:
            del r.hostile[number]
        entries = [Entry(n, f"/stream/{sid}/{rendition}/{n}.ts", r.held[n]) for n in self._listed_numbers(r)]
        entries += [Entry(n, uri, duration, hostile=True) for n, (uri, duration, _) in r.hostile.items()]
        return sorted(entries, key=lambda e: (e.number, not e.hostile))

    def _render(self, key: Key) -> str:
        r = self._renditions[key]
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-MEDIA-SEQUENCE:{r.slid_out}",
            f"#EXT-X-TARGETDURATION:{target_duration(r.max_duration)}",
        ]
        for entry in self._entries(key):
            lines += [f"#EXTINF:{entry.duration:.3f},", entry.uri]
        return "\n".join(lines) + "\n"

    # --- HTTP ---

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="soak broadcaster")

    async def _playlist(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        key = (request.match_info["sid"], request.match_info["rendition"])
        fault = self.fault()
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        elif fault == "http500":
            return web.Response(status=500, text="fault: internal error")
        elif fault == "garbage":
            return web.Response(body=GARBAGE, content_type="application/vnd.apple.mpegurl")
        elif fault == "huge":
            filler = b"#" + b"x" * 1022 + b"\n"
            body = b"#EXTM3U\n" + filler * (self.huge_bytes // len(filler) + 1)
            return web.Response(body=body, content_type="application/vnd.apple.mpegurl")
        elif fault == "frozen" and key in self._frozen:
            return web.Response(body=self._frozen[key][0], content_type="application/vnd.apple.mpegurl")
        if key not in self._renditions:
            return web.Response(status=404, text="no such stream")
        return web.Response(text=self._render(key), content_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "max-age=5"})

    async def _segment(self, request: web.Request) -> web.Response:
        if self.holds(request.match_info["sid"], request.match_info["rendition"], int(request.match_info["n"])):
            return web.Response(body=TS_NULL_PACKET, content_type="video/mp2t")
        return web.Response(status=404, text="no such segment")
