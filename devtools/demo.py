"""`edge demo`: the whole loop on one machine. An edge on the embedded default, three reference
broadcasters on loopback in pretend places, and an ingest pushing a live test pattern that moves
between them; after a while one broadcaster is killed, so the operator page shows it going down while
the player keeps playing. Ctrl-C stops everything.

`Demo` is also what the end-to-end tests run, so they test what a user sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp
import uvicorn

from devtools.broadcaster import ReferenceBroadcaster
from devtools.ingest import Ingest
from devtools.media import TestPattern
from edge.app import create_app
from edge.connections import server_config
from edge.settings import Settings

log = logging.getLogger("devtools.demo")


@dataclass(frozen=True)
class Place:
    name: str
    region: str
    latitude: float
    longitude: float


PLACES = (
    Place("fra-1", "eu-central", 50.11, 8.68),
    Place("iad-1", "us-east", 39.04, -77.49),
    Place("sin-1", "ap-southeast", 1.35, 103.82),
)


@dataclass
class Demo:
    port: int = 8080
    data_dir: str = "data/demo"
    switch_every: int = 5  # segments on one broadcaster before the ingest moves on
    segment_seconds: float = 2.0
    pattern: TestPattern = field(default_factory=lambda: TestPattern(width=960, height=540, fps=30))
    presets: tuple[str, ...] = ("P360p30fps16x9",)
    heartbeat_ttl: float = 6.0  # short, so a dead broadcaster shows as down within seconds
    playlist_window: float | None = None  # seconds; None: the edge's default
    # mirror: every segment is copied to the edge's store before it is listed, so killing the
    # broadcaster in use costs players nothing (direct: its listed segments die with it).
    segment_mode: str = "mirror"
    target_duration: int = 0  # EDGE_TARGET_DURATION; 0: the edge's choice (devtools.live_distance compares)
    out: TextIO = sys.stdout

    settings: Settings | None = None
    broadcasters: list[ReferenceBroadcaster] = field(default_factory=list)
    ingest: Ingest | None = None
    stream_id: str | None = None
    _server: uvicorn.Server | None = None
    _server_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready_timeout: float = 60.0) -> None:
        """Start everything and return once the merged stream has segments a player can play."""
        self.settings = Settings.load({
            "host": "127.0.0.1", "port": self.port, "data_dir": self.data_dir,
            "heartbeat_ttl": self.heartbeat_ttl, "default_region": PLACES[0].region,
            "poll_interval": 0.5, "lease_ttl": 2.0, "access_log": False, "segment_mode": self.segment_mode,
            "target_duration": self.target_duration,
            # The demo's broadcasters are on this machine: an allowance a real edge never needs.
            "broadcaster_networks": ["127.0.0.0/8", "::1/128"],
            **({"playlist_window": self.playlist_window} if self.playlist_window is not None else {}),
        }, environ={}).with_credentials()
        app = create_app(self.settings)
        self._server = uvicorn.Server(server_config(app, self.settings))
        self._server_task = asyncio.create_task(self._server.serve(), name="demo-edge")
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()  # raises why the edge could not start
                raise RuntimeError("the edge stopped during start-up")
            await asyncio.sleep(0.05)
        for place in PLACES:
            token = await self.issue_credential(place.name)
            broadcaster = ReferenceBroadcaster(
                place.name, self.url, token, region=place.region, latitude=place.latitude,
                longitude=place.longitude, heartbeat_interval=2.0,
            )
            await broadcaster.start()
            self.broadcasters.append(broadcaster)
        self.ingest = Ingest(
            self.url, self.settings.api_keys[0], pattern=self.pattern, presets=self.presets, name="demo",
            segment_seconds=self.segment_seconds, switch_every=self.switch_every, loop=True,
        )
        self.stream_id = await self.ingest.start()
        await self._until_playable(ready_timeout)

    async def issue_credential(self, name: str) -> str:
        """A credential of broadcaster `name`'s own, issued as an operator would (admin API)."""
        assert self.settings is not None
        headers = {"Authorization": f"Bearer {self.settings.admin_tokens[0]}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/api/broadcasters/{name}/credentials", headers=headers) as response:
                if response.status != 201:
                    raise RuntimeError(f"cannot issue a credential for {name}: HTTP {response.status}")
                return str((await response.json())["token"])

    async def _until_playable(self, timeout: float) -> None:
        assert self.stream_id is not None
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while asyncio.get_running_loop().time() < deadline:
                async with http.get(f"{self.url}/stream/{self.stream_id}/source.m3u8") as response:
                    if response.status == 200 and (await response.text()).count("#EXTINF") >= 2:
                        return
                await asyncio.sleep(0.25)
        raise RuntimeError(f"no playable segments within {timeout:.0f} s")

    def current_broadcaster(self) -> ReferenceBroadcaster | None:
        """The broadcaster receiving the ingest now."""
        if self.ingest is None or not self.ingest.sent:
            return None
        address = self.ingest.sent[max(self.ingest.sent)]
        return next((b for b in self.broadcasters if b.url == address), None)

    async def kill(self, broadcaster: ReferenceBroadcaster) -> None:
        """Kill it abruptly (no drain): the ingest must fail over, the registry must notice."""
        await broadcaster.die()

    async def stop(self) -> None:
        if self.ingest is not None:
            await self.ingest.stop()
        for broadcaster in self.broadcasters:
            if broadcaster.running:
                await broadcaster.stop(drain=False)
        if self._server is not None:
            self._server.should_exit = True
        if self._server_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._server_task

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


async def run(port: int, data_dir: str, kill_after: float, segment_mode: str = "mirror") -> int:
    demo = Demo(port=port, data_dir=data_dir, segment_mode=segment_mode)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo.say("starting an edge, three broadcasters (Frankfurt, Ashburn, Singapore) and a live test pattern…")
    try:
        await demo.start()
        demo.say("")
        demo.say(f"  player page:   {demo.url}/play/{demo.stream_id}")
        demo.say(f"  operator page: {demo.url}/   (admin token: the file {data_dir}/admin-token)")
        demo.say(f"  master playlist: {demo.url}/stream/{demo.stream_id}.m3u8")
        demo.say(f"  segments: {demo.segment_mode} (--segment-mode direct|redirect|mirror)")
        demo.say("")
        demo.say(f"The ingest moves to another broadcaster every {demo.switch_every} segments; in "
                 f"{kill_after:.0f} s the broadcaster it is using is killed. Ctrl-C stops everything.")
        try:
            await asyncio.wait_for(stop.wait(), kill_after)
        except asyncio.TimeoutError:
            victim = demo.current_broadcaster() or demo.broadcasters[-1]
            demo.say(f"killing broadcaster {victim.name} ({victim.url}): the ingest moves on, the player "
                     "keeps playing, the operator page shows it down")
            await demo.kill(victim)
            await stop.wait()
    except Exception as exc:  # say why in one line; details are in the log
        log.exception("demo failed")
        demo.say(f"edge demo: {exc}")
        return 1
    finally:
        demo.say("stopping…")
        await demo.stop()
    return 0


def main(port: int = 8080, data_dir: str = "data/demo", kill_after: float = 40.0, segment_mode: str = "mirror") -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(port, data_dir, kill_after, segment_mode))
