"""The soak's scripted ingest clock and its random (seeded) faults.

Every `segment_s` seconds each stream's ingest produces segment `n`, which its current broadcaster
"transcodes" into every rendition at once; segment faults bend that delivery, broadcaster faults
bend what a broadcaster answers, and process faults (an edge node SIGKILLed, Redis restarted) are
asked of the runner through `ProcessFaults`. Every fault is counted by kind in `counts`.

All decisions come from one `random.Random(seed)` in tick order, so a seed replays the same script
(the edge's timing, and so what the players see, still varies from run to run).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from devtools.soak.broadcaster import PLAYLIST_FAULTS, SoakBroadcaster


@dataclass(frozen=True)
class Rates:
    """Chances per tick: segment faults per stream (at most one per segment), playlist faults per
    broadcaster, and the rarer whole-process faults."""

    lost: float = 0.02
    late: float = 0.03
    duplicate: float = 0.05
    rendition_gap: float = 0.02
    hostile: float = 0.03
    playlist_fault: float = 0.025  # one of slow, http500, garbage, huge, frozen
    broadcaster_kill: float = 0.012
    node_kill: float = 0.03  # with two edge nodes
    redis_restart: float = 0.02  # with two edge nodes
    move_every: tuple[int, int] = (3, 8)  # segments on one broadcaster before the ingest moves


OFF = Rates(0, 0, 0, 0, 0, 0, 0, 0, 0, move_every=(10**9, 10**9))


class ProcessFaults(Protocol):
    """What the runner does for the script; each returns once the process is back."""

    async def kill_node(self, rng: random.Random) -> None: ...
    async def restart_redis(self, rng: random.Random) -> None: ...


@dataclass
class StreamIngest:
    sid: str
    renditions: tuple[str, ...]
    current: SoakBroadcaster
    next_number: int = 0
    until_move: int = 0


def hostile_uris(sid: str, rendition: str, other_sid: str, other_rendition: str, n: int) -> list[str]:
    """URIs a broken or malicious broadcaster might list for segment `n`: none is in the layout."""
    return [
        f"../../../../etc/{n}.ts",
        f"/admin/{n}.ts",
        f"http://203.0.113.7/stream/{sid}/{rendition}/{n}.ts",  # another host (TEST-NET-3, never fetched)
        f"http://127.0.0.1:1/stream/{sid}/{rendition}/{n}.ts",  # another port on our host
        f"/stream/{other_sid}/{rendition}/{n}.ts",  # another stream's path
        f"/stream/{sid}/{other_rendition}/{n}.ts",  # another rendition's path
        f"/stream/{sid}/{rendition}/%2e%2e/%2e%2e/admin/{n}.ts",
        f"%2e%2e/%2e%2e/{sid}/{rendition}/{n}.ts",
        f"/stream/{sid}/{rendition}/{n}.ts?redirect=http://203.0.113.7/",
    ]


class Script:
    def __init__(
        self,
        seed: int,
        streams: dict[str, tuple[str, ...]],
        broadcasters: list[SoakBroadcaster],
        segment_s: float,
        rates: Rates,
        processes: ProcessFaults | None,
        on_restart: Callable[[SoakBroadcaster], Awaitable[None]],
    ) -> None:
        self.rng = random.Random(seed)
        self.broadcasters = broadcasters
        self.segment_s = segment_s
        self.rates = rates
        self.processes = processes
        self.on_restart = on_restart
        self.counts: Counter[str] = Counter()
        self.durations: dict[int, float] = {}
        self._ingests = [StreamIngest(sid, renditions, broadcasters[i % len(broadcasters)])
                         for i, (sid, renditions) in enumerate(streams.items())]
        for ingest in self._ingests:
            ingest.until_move = self.rng.randint(*rates.move_every)
        self._tasks: set[asyncio.Task[None]] = set()
        self._process_fault: asyncio.Task[None] | None = None
        self.dead_since: dict[str, float] = {}  # broadcaster name -> loop time it was killed

    # --- the clock ---

    async def run(self, seconds: float) -> None:
        """Tick every `segment_s` for `seconds` (ticks that fall behind are not made up)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while (now := loop.time()) < start + seconds:
            self._tick(now)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * self.segment_s - loop.time()))

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) for late deliveries, restarts and process faults still under way."""
        pending = [*self._tasks, *([self._process_fault] if self._process_fault else [])]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
        for broadcaster in self.broadcasters:
            if not broadcaster.alive:
                await broadcaster.restart()
                await self.on_restart(broadcaster)

    async def cancel(self) -> None:
        pending = [*self._tasks, *([self._process_fault] if self._process_fault else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _alive(self, besides: SoakBroadcaster | None = None) -> list[SoakBroadcaster]:
        return [b for b in self.broadcasters if b.alive and b is not besides]

    def _tick(self, now: float) -> None:
        rng, rates = self.rng, self.rates
        for broadcaster in self._alive():
            if broadcaster.fault() is None and rng.random() < rates.playlist_fault:
                # the least used kind so far, so that even a short run sees every kind
                fewest = min(self.counts[f"playlist_{k}"] for k in PLAYLIST_FAULTS)
                kind = rng.choice([k for k in PLAYLIST_FAULTS if self.counts[f"playlist_{k}"] == fewest])
                broadcaster.set_fault(kind, rng.uniform(1.0, 3.0) * self.segment_s)
                self.counts[f"playlist_{kind}"] += 1
        alive = self._alive()
        if len(alive) == len(self.broadcasters) >= 3 and rng.random() < rates.broadcaster_kill:
            self._spawn(self._kill_broadcaster(rng.choice(alive), rng.uniform(2.0, 6.0) * self.segment_s, now))
        if self.processes is not None and (self._process_fault is None or self._process_fault.done()):
            roll = rng.random()
            if roll < rates.node_kill:
                self.counts["edge_node_kill"] += 1
                self._process_fault = asyncio.ensure_future(self.processes.kill_node(random.Random(rng.random())))
            elif roll < rates.node_kill + rates.redis_restart:
                self.counts["redis_restart"] += 1
                self._process_fault = asyncio.ensure_future(self.processes.restart_redis(random.Random(rng.random())))
        for ingest in self._ingests:
            self._segment(ingest)

    # --- broadcaster faults ---

    async def _kill_broadcaster(self, broadcaster: SoakBroadcaster, down_s: float, now: float) -> None:
        self.counts["broadcaster_kill"] += 1
        self.dead_since[broadcaster.name] = now
        await broadcaster.kill()
        await asyncio.sleep(down_s)
        await broadcaster.restart()
        await self.on_restart(broadcaster)

    # --- one segment of one stream ---

    def _segment(self, ingest: StreamIngest) -> None:
        rng, rates = self.rng, self.rates
        if not ingest.current.alive:  # the upload failed: on to another broadcaster, as an ingest does
            ingest.current = rng.choice(self._alive())
            ingest.until_move = rng.randint(*rates.move_every)
            self.counts["ingest_failover"] += 1
        elif ingest.until_move <= 0 and len(self._alive()) > 1:
            ingest.current = rng.choice(self._alive(besides=ingest.current))
            ingest.until_move = rng.randint(*rates.move_every)
            self.counts["ingest_move"] += 1
        ingest.until_move -= 1
        n = ingest.next_number
        ingest.next_number += 1
        duration = self.durations.setdefault(n, round(self.segment_s * rng.uniform(0.97, 1.03), 3))
        b = ingest.current
        roll = rng.random()
        for kind in ("lost", "late", "duplicate", "rendition_gap", "hostile"):
            chance = getattr(rates, kind)
            if roll < chance:
                break
            roll -= chance
        else:
            kind = "clean"
        if kind not in ("clean", "hostile"):  # hostile is counted by its variety
            self.counts[kind] += 1
        if kind == "lost":
            return
        if kind == "late":
            self._spawn(self._deliver_later(b, ingest, n, duration, rng.uniform(1.5, 4.0) * self.segment_s))
            return
        if kind == "hostile":
            self._hostile(b, ingest, n, duration)
            return
        missing = rng.choice(ingest.renditions) if kind == "rendition_gap" else None
        for rendition in ingest.renditions:
            if rendition != missing:
                b.receive(ingest.sid, rendition, n, duration)
        others = self._alive(besides=b)
        if kind == "duplicate" and others:
            copy = rng.choice(others)
            for rendition in ingest.renditions:
                copy.receive(ingest.sid, rendition, n, duration)

    async def _deliver_later(self, b: SoakBroadcaster, ingest: StreamIngest, n: int, duration: float, delay: float) -> None:
        await asyncio.sleep(delay)
        for rendition in ingest.renditions:
            b.receive(ingest.sid, rendition, n, duration)

    def _hostile(self, b: SoakBroadcaster, ingest: StreamIngest, n: int, duration: float) -> None:
        """Segment `n` listed under a URI outside the layout, in every rendition on its broadcaster:
        instead of the real one (a fixed edge then passes `n` as lost) or just before it (a fixed
        edge takes the real one)."""
        rng = self.rng
        others = [i.sid for i in self._ingests if i.sid != ingest.sid] or ["0" * 16]
        instead = rng.random() < 0.5
        variant = rng.randrange(len(hostile_uris("s", "r", "o", "p", n)))
        self.counts["hostile_instead" if instead else "hostile_beside"] += 1
        for rendition in ingest.renditions:
            other_rendition = next((r for r in ingest.renditions if r != rendition), rendition)
            uri = hostile_uris(ingest.sid, rendition, rng.choice(others), other_rendition, n)[variant]
            b.list_hostile(ingest.sid, rendition, n, uri, duration, for_s=8 * self.segment_s)
            if not instead:
                b.receive(ingest.sid, rendition, n, duration)
