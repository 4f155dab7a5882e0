"""The soak itself: real `edge serve` processes (one on SQLite, or two on a Redis of the soak's own),
fault-injecting broadcasters in this process, the scripted ingest, the players; then the report.

Everything listens on 127.0.0.1. Every process started here is stopped by its PID when the soak
ends, however it ends (`Soak.stop_processes` is idempotent and also called by the command line).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from devtools.playlist_rules import Problem, Seen
from devtools.processes import EdgeProcess, RedisServer, free_port, start_edge, stop_process
from devtools.soak.broadcaster import SoakBroadcaster
from devtools.soak.players import Downloads, Findings, Player
from devtools.soak.script import OFF, Rates, Script

API_KEY = "soak-api-key"
ADMIN_TOKEN = "soak-admin-token"
BROADCASTER_TOKEN = "soak-broadcaster-token"
PRESETS = ("P144p30fps16x9", "P360p30fps16x9")
UPSTREAM_TIMEOUT_S = 0.5
UPSTREAM_MAX_BYTES = 256 * 1024


class SetupError(RuntimeError):
    """The soak could not get going (a refused registration, no redis-server, ...)."""


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 2.0
    streams: int = 3
    seed: int = 1
    nodes: int = 1
    broadcasters: int = 3
    faults: bool = True
    segment_s: float = 1.0  # time-compressed: go-livepeer's segments are 2 s
    details: int = 5  # violations shown in full
    keep_workdir: bool = False
    log_level: str = "info"  # the nodes' (debug: every ask and publish, for taking a stall apart)

    def __post_init__(self) -> None:
        if self.log_level not in ("debug", "info", "warning"):
            raise ValueError("log level: debug, info or warning")
        if self.nodes not in (1, 2):
            raise ValueError("nodes: 1 or 2")
        if not 0 < self.minutes <= 24 * 60:
            raise ValueError("minutes: more than 0, at most a day")
        if not 1 <= self.streams <= 50 or not 2 <= self.broadcasters <= 20:
            raise ValueError("streams: 1..50, broadcasters: 2..20")

    def edge_env(self) -> dict[str, str]:
        """The edge's settings, scaled to the segment length (see the README's configuration table)."""
        seg = self.segment_s
        return {
            "EDGE_API_KEYS": API_KEY,
            "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
            "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN,
            # The soak's broadcasters are on loopback, which a production edge refuses, and share one
            # token, which a production edge replaces with per-broadcaster credentials.
            "EDGE_BROADCASTER_NETWORKS": "127.0.0.0/8,::1/128",
            "EDGE_SHARED_BROADCASTER_TOKEN": "true",
            "EDGE_ACCESS_LOG": "false",
            "EDGE_LOG_LEVEL": self.log_level,  # info: lease changes and takeovers, for taking a violation apart
            "EDGE_POLL_INTERVAL": str(seg / 2),
            "EDGE_HOLE_WAIT": str(seg / 2),  # the default's share of a target duration (1 s of 2 s)
            "EDGE_RENDITION_WAIT": str(seg),
            "EDGE_LEASE_TTL": str(1.5 * seg),
            "EDGE_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT_S),
            "EDGE_UPSTREAM_MAX_BYTES": str(UPSTREAM_MAX_BYTES),
            "EDGE_HEARTBEAT_TTL": str(3 * seg),
            "EDGE_DISCOVERY_INTERVAL": str(5 * seg),
            # Passive ejection is a policy of its own, not a reload rule: kept out of the way of the
            # short playlist faults here (a killed broadcaster drops out by its heartbeat TTL).
            "EDGE_EJECTION_FAILURES": "1000",
        }


@dataclass
class Node:
    """One edge node slot: the process may be killed and restarted on the same port."""

    workdir: Path
    port: int
    process: EdgeProcess | None = None
    down: bool = True
    back_at: float = float("-inf")  # loop time it last came up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Report:
    config: SoakConfig
    seconds: float
    findings: Findings
    faults: Counter[str]
    streams: dict[str, tuple[str, ...]]
    workdir: Path | None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.findings.total == 0 and not self.interrupted

    def render(self) -> str:
        c, f = self.config, self.findings
        renditions = len(next(iter(self.streams.values()), ()))
        lines = [
            f"hls-edge soak: {self.seconds / 60:.1f} min, seed {c.seed}, {len(self.streams)} streams x {renditions} "
            f"renditions, {c.broadcasters} broadcasters, {c.nodes} edge node{'s' if c.nodes > 1 else ''}"
            f"{' on Redis' if c.nodes > 1 else ' on SQLite'}, {c.segment_s:g} s segments, faults {'on' if c.faults else 'off'}",
            f"reloads checked: {f.reloads} ({f.changes} new versions); URIs downloaded: {f.downloads}"
            f" ({f.downloads_lost_with_killed} lost with a killed broadcaster, a known limit, not counted)",
        ]
        if f.unavailable:
            lines.append("tolerated non-answers: " + ", ".join(f"{k} {v}" for k, v in sorted(f.unavailable.items())))
        lines.append(f"faults injected: {sum(self.faults.values())}")
        lines += [f"  {kind:<24} {count}" for kind, count in sorted(self.faults.items())]
        lines.append(f"violations: {f.total}")
        for kind, count in sorted(f.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            extra = f"  ({f.misaligned_msns} MSNs disagree)" if kind == "misaligned" else ""
            lines.append(f"  {kind:<24} {count}{extra}")
        by_time = sorted(f.kept, key=lambda v: v.at)
        firsts = {v.kind: v for v in reversed(by_time)}  # the first of each kind, then the rest
        shown = sorted(firsts.values(), key=lambda v: v.at) + [v for v in by_time if firsts[v.kind] is not v]
        shown = shown[: c.details]
        if shown:
            lines.append(f"first violations, the first of each kind first ({len(shown)} of {f.total}):")
        for i, v in enumerate(shown, 1):
            lines.append(f"  [{i}] t={v.at:.1f}s stream {v.stream} rendition {v.rendition} node {v.node}: {v.kind}: {v.detail}")
            for label, text in v.playlists:
                lines.append(f"      {label}:")
                lines += [f"        {line}" for line in _compact(text)]
        lines += self.notes
        if self.workdir is not None:
            lines.append(f"edge logs: {self.workdir}")
        verdict = "INTERRUPTED" if self.interrupted else ("PASS" if self.ok else f"FAIL ({f.total} violations)")
        lines.append(f"result: {verdict}")
        return "\n".join(lines)


class Soak:
    def __init__(self, config: SoakConfig, out: TextIO | None = None) -> None:
        self.config = config
        self.out = out
        self.findings = Findings()
        self.broadcasters = [SoakBroadcaster(f"soak-{i + 1}", slow_s=2 * UPSTREAM_TIMEOUT_S,
                                             huge_bytes=2 * UPSTREAM_MAX_BYTES) for i in range(config.broadcasters)]
        self.target_hint = 2 * config.segment_s
        self.workdir = Path(tempfile.mkdtemp(prefix="hls-edge-soak-"))
        self.nodes = [Node(self.workdir / f"node{i + 1}", free_port()) for i in range(config.nodes)]
        self.redis: RedisServer | None = None
        self.redis_down = False
        self.redis_back_at = float("-inf")
        self.process_faults: list[tuple[float, str]] = []  # (elapsed, what): for the reports
        self.streams: dict[str, tuple[str, ...]] = {}
        self.script: Script | None = None
        self._t0 = 0.0
        self._t0_wall = 0.0
        self._seconds = 0.0
        self.interrupted = False

    # --- World, for the players ---

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def nodes_up(self) -> list[str]:
        return [n.url for n in self.nodes if not n.down]

    def disrupted(self, node: str) -> str | None:
        grace = 3 * self.target_hint
        slot = next((n for n in self.nodes if n.url == node), None)
        if slot is not None and (slot.down or self._now() - slot.back_at < grace):
            return "edge node killed or restarting"
        if self.store_disrupted():
            return "shared store restarting"
        return None

    def store_disrupted(self) -> bool:
        return self.redis_down or self._now() - self.redis_back_at < 3 * self.target_hint

    def faults_near(self, seconds: float) -> str:
        """The process faults of the last `seconds`, as a report says them ("" if none)."""
        now = self.elapsed()
        recent = [f"{what} at t={at:.1f}s" for at, what in self.process_faults if now - at <= seconds]
        return "; ".join(recent)

    def recently_killed(self, origin: str) -> bool:
        b = next((b for b in self.broadcasters if b.url == origin), None)
        if b is None or self.script is None:
            return False
        killed = self.script.dead_since.get(b.name)
        return not b.alive or (killed is not None and self._now() - killed < 60 * self.config.segment_s)

    # --- ProcessFaults, for the script ---

    async def kill_node(self, rng: random.Random) -> None:
        slot = rng.choice(self.nodes)
        if slot.process is None or slot.down:
            return
        slot.down = True
        self.process_faults.append((self.elapsed(), f"edge node {slot.url} SIGKILLed"))
        os.kill(slot.process.proc.pid, signal.SIGKILL)  # no goodbye: its lease must lapse by itself
        await asyncio.to_thread(slot.process.proc.wait, 5)
        await asyncio.sleep(rng.uniform(2.0, 4.0) * self.config.segment_s)
        await self._start_node(slot)
        self.process_faults.append((self.elapsed(), f"edge node {slot.url} back"))

    async def restart_redis(self, rng: random.Random) -> None:
        assert self.redis is not None
        self.redis_down = True
        self.process_faults.append((self.elapsed(), "Redis stopped"))
        await asyncio.to_thread(self.redis.stop)  # SIGTERM: appendfsync always, nothing is lost
        await asyncio.sleep(rng.uniform(1.0, 2.0) * self.config.segment_s)
        await asyncio.to_thread(self.redis.start)
        self.redis_back_at, self.redis_down = self._now(), False
        self.process_faults.append((self.elapsed(), "Redis back"))

    # --- life ---

    async def _start_node(self, slot: Node) -> None:
        env = self.config.edge_env()
        if self.redis is not None:
            env |= {"EDGE_STORE": self.redis.url, "EDGE_REDIS_PREFIX": "soak:"}
        slot.workdir.mkdir(parents=True, exist_ok=True)
        slot.process = await asyncio.to_thread(start_edge, slot.workdir, env, None, slot.port)
        slot.down, slot.back_at = False, self._now()

    def stop_processes(self) -> None:
        """Stop every process the soak started, by PID (idempotent, synchronous: safe in any finally)."""
        for slot in self.nodes:
            if slot.process is not None:
                stop_process(slot.process.proc, grace_s=5)
            slot.down = True
        if self.redis is not None:
            self.redis.stop()

    async def _call(self, http: aiohttp.ClientSession, method: str, path: str, token: str,
                    body: Any = None) -> tuple[int, Any]:
        for url in self.nodes_up() or [self.nodes[0].url]:
            try:
                async with http.request(method, url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                                        timeout=aiohttp.ClientTimeout(total=5)) as response:
                    text = await response.text()
                    try:
                        return response.status, (await response.json(content_type=None)) if text else None
                    except ValueError:
                        return response.status, text
            except (aiohttp.ClientError, asyncio.TimeoutError):
                continue
        return 0, "no edge node answered"

    def _registration(self, b: SoakBroadcaster) -> dict[str, Any]:
        return {"address": b.url, "region": "eu", "latitude": 50.11, "longitude": 8.68, "capacity": 100,
                "streams": b.streams()}

    async def _register(self, http: aiohttp.ClientSession, b: SoakBroadcaster) -> None:
        for attempt in range(40):  # a store restarting (503) or a node restarting is waited out
            status, doc = await self._call(http, "PUT", f"/api/broadcasters/{b.name}", BROADCASTER_TOKEN,
                                           self._registration(b))
            if status in (200, 201) or 0 < status < 500:
                break
            await asyncio.sleep(0.25)
        if status not in (200, 201):
            raise SetupError(
                f"the edge refused to register broadcaster {b.name} at {b.url} (HTTP {status}: {doc}); "
                "if it now refuses loopback addresses, the soak needs the setting that allows them")

    async def _heartbeats(self, http: aiohttp.ClientSession) -> None:
        while True:
            for b in self.broadcasters:
                if b.alive:
                    await self._call(http, "PUT", f"/api/broadcasters/{b.name}", BROADCASTER_TOKEN,
                                     self._registration(b))
            await asyncio.sleep(self.config.segment_s / 2)

    async def run(self) -> Report:
        """The whole soak; processes are stopped before it returns or raises."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._t0_wall = time.time()  # the logs' clock at t=0
        tasks: list[asyncio.Task[Any]] = []
        stop = asyncio.Event()
        interrupted = False
        try:
            async with aiohttp.ClientSession() as http:
                await self._start(http)
                self.say(f"soak: edge at {', '.join(self.nodes_up())}, streams {', '.join(self.streams)}; "
                         f"running {self.config.minutes:g} min")
                latest: dict[str, dict[str, Seen]] = {sid: {} for sid in self.streams}
                downloads = Downloads(self)
                rng = random.Random(self.config.seed + 1)
                players = [Player(self, sid, r, latest[sid], downloads, random.Random(rng.random()))
                           for sid, renditions in self.streams.items() for r in renditions]
                tasks = [asyncio.create_task(self._heartbeats(http)), asyncio.create_task(downloads.run(http))]
                tasks += [asyncio.create_task(p.run(http, stop)) for p in players]
                assert self.script is not None
                await self.script.run(self.config.minutes * 60)
                await self._finish(http, players, downloads)
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            self._seconds = loop.time() - self._t0
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.script is not None:
                await self.script.cancel()
            for b in self.broadcasters:
                await b.kill()
            await asyncio.to_thread(self.stop_processes)
            self.interrupted = interrupted
        return self.report()

    def report(self) -> Report:
        keep = self.config.keep_workdir or self.findings.total > 0 or self.interrupted
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        faults = self.script.counts if self.script is not None else Counter()
        notes = [f"t=0 was {self._t0_wall:.3f} in the edge logs' \"ts\""] if keep and self._t0_wall else []
        return Report(self.config, self._seconds, self.findings, faults, self.streams,
                      self.workdir if keep else None, interrupted=self.interrupted, notes=notes)

    async def _start(self, http: aiohttp.ClientSession) -> None:
        c = self.config
        if c.nodes > 1:
            (self.workdir / "redis").mkdir()
            try:
                self.redis = RedisServer(self.workdir / "redis")
            except RuntimeError as exc:
                raise SetupError(f"two edge nodes need a Redis of the soak's own: {exc}") from None
            await asyncio.to_thread(self.redis.start)
        for slot in self.nodes:
            await self._start_node(slot)
        for b in self.broadcasters:
            await b.start()
            await self._register(http, b)
        for i in range(c.streams):
            status, doc = await self._call(http, "POST", "/api/stream", API_KEY,
                                           {"name": f"soak-{i + 1}", "presets": list(PRESETS)})
            if status != 201 or not isinstance(doc, dict):
                raise SetupError(f"POST /api/stream: HTTP {status}: {doc}")
            self.streams[doc["id"]] = tuple(doc["renditions"])
        self.script = Script(c.seed, self.streams, self.broadcasters, c.segment_s, Rates() if c.faults else OFF,
                             self if c.nodes > 1 else None, on_restart=lambda b: self._register(http, b))

    async def _finish(self, http: aiohttp.ClientSession, players: list[Player], downloads: Downloads) -> None:
        """Stop the faults, end the streams, and check that every playlist closes with ENDLIST
        (bounded wait) and changes no more; let the last downloads finish."""
        assert self.script is not None
        seg = self.config.segment_s
        await self.script.settle(timeout_s=30 * seg)
        for slot in self.nodes:
            if slot.down:
                await self._start_node(slot)
        for sid in self.streams:
            status, doc = await self._call(http, "POST", f"/api/stream/{sid}/end", API_KEY)
            if status not in (200, 204):
                raise SetupError(f"POST /api/stream/{sid}/end: HTTP {status}: {doc}")
        deadline = self._now() + 20 * seg + 10
        while self._now() < deadline and not all(p.ended for p in players):
            await asyncio.sleep(0.2)
        await asyncio.sleep(2 * self.target_hint)  # a few reloads after ENDLIST
        for p in players:
            if not p.ended:
                p.report("-", Problem("endlist_missing", "no EXT-X-ENDLIST after the stream ended"),
                         None, p.checker.last.text if p.checker.last else None, key="endlist_missing")
        await downloads.drain(timeout_s=10)

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)


def _compact(playlist: str) -> list[str]:
    """A playlist's lines with each EXTINF on the line of its URI."""
    out: list[str] = []
    for line in playlist.rstrip("\n").splitlines():
        if out and out[-1].startswith("#EXTINF:") and not line.startswith("#"):
            out[-1] += " " + line
        else:
            out.append(line)
    return out
