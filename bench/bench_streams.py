"""Benchmark of many live streams on one edge node (issue 15): the edge's CPU and memory per stream,
the upstream playlist requests it makes, how fast players are answered, and how fresh the merged
playlists are, at 50, 200 and 1,000 streams.

    .venv/bin/python -m bench.bench_streams [--streams 50,200,1000] [--seconds 20] [--quick]
                                            [--etag] [--workers N] [--edge-root DIR]

Each level starts a fresh `edge serve --workers N` (1 by default: the per-core figure; SQLite store,
poll interval 1 s, access log off)
and creates that many streams of two renditions (source + one preset), carried by 4 broadcasters
that all live in one cheap separate process (bench.fake_fleet: playlists computed from the time,
2 s segments listed every 2 s with up to 0.1 s of jitter). One player per rendition reloads its
playlist every second (lean keep-alive client, bench.common.Connection). After a warm-up, over
`--seconds`:

- edge CPU: user + system time of the edge process (/proc/<pid>/stat), as a share of one core and
  per stream-second;
- upstream: playlist requests the fake broadcasters answered, per second and per stream-rendition
  per segment duration (the target is <= 1.5); in brackets without the edge's discovery asks (of
  broadcasters that do not carry the stream: all 3 at a feed's first discovery, then one in turn every `EDGE_DISCOVERY_INTERVAL`);
- players: latency p50 / p99 of their reloads;
- memory: the edge's RSS (with its workers'), and per stream (RSS less the RSS before any stream, divided by streams);
- freshness: for 10 sample streams, a client follows the source playlist with blocking reloads
  (`_HLS_msn`) and takes, for every new segment, the time it arrived less the time the fake
  broadcaster first listed it.

`--edge-root` runs the edge from another checkout (e.g. an exported older commit) for a before /
after comparison in the same conditions. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bench.common import ROOT, Connection, ServerProcess, clean_env, machine, percentile, run, table
from bench.fake_fleet import carrier_of, listed_at
from tests.processes import free_port

API_KEY = "bench-api-key"
BROADCASTER_TOKEN = "bench-broadcaster-token"
ADMIN_TOKEN = "bench-admin-token"
PRESET = "P360p30fps16x9"
RENDITIONS = ("source", PRESET)
SEGMENT_S = 2.0
BROADCASTERS = 4
SAMPLES = 10  # streams whose freshness is followed


@dataclass
class Level:
    streams: int
    seconds: float
    cpu_s: float
    upstream_requests: int
    not_modified: int
    not_carried: int  # of the requests: to broadcasters that do not carry the stream (discovery)
    player_latencies_ms: list[float]
    player_errors: int
    rss_kb: int
    base_rss_kb: int
    lags_s: list[float]

    @property
    def core_share(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def cpu_ms_per_stream_second(self) -> float:
        return self.cpu_s * 1000 / (self.streams * self.seconds)

    @property
    def upstream_rps(self) -> float:
        return self.upstream_requests / self.seconds

    @property
    def per_rendition_segment(self) -> float:
        return self.upstream_rps / (self.streams * len(RENDITIONS)) * SEGMENT_S

    @property
    def discovery_share(self) -> float:
        return self.not_carried / self.upstream_requests if self.upstream_requests else 0.0

    @property
    def rss_per_stream_kb(self) -> float:
        return (self.rss_kb - self.base_rss_kb) / self.streams


def rss_kb(server: ServerProcess) -> int:
    """The RSS of the edge process and its workers (pages shared after the fork count in each)."""
    return _tree_rss_kb(server.proc.pid)


def _tree_rss_kb(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    own = next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return own + sum(_tree_rss_kb(int(child)) for child in children)


async def fleet_stats(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with session.get(f"{url}/stats") as response:
        return await response.json(content_type=None)


async def start_edge(tmp: Path, edge_root: Path, workers: int) -> ServerProcess:
    port = free_port()
    env = clean_env(
        EDGE_DATA_DIR=str(tmp / "edge-data"),
        EDGE_API_KEYS=API_KEY,
        EDGE_BROADCASTER_TOKENS=BROADCASTER_TOKEN,
        EDGE_SHARED_BROADCASTER_TOKEN="true",
        EDGE_BROADCASTER_NETWORKS="127.0.0.0/8",
        EDGE_ADMIN_TOKENS=ADMIN_TOKEN,
        EDGE_POLL_INTERVAL="1.0",
        EDGE_UPSTREAM_TIMEOUT="2.0",
        EDGE_HEARTBEAT_TTL="3600",  # no heartbeats during the run: keep the carriers alive
        EDGE_ACCESS_LOG="false",
        EDGE_LOG_LEVEL="warning", PYTHONUNBUFFERED="1",
        PYTHONPATH=str(edge_root) + ":/tmp/poll2-gc",
    )
    return ServerProcess.start([sys.executable, "-m", "edge", "serve", "--port", str(port), "--workers", str(workers)], env,
                               tmp / "edge.log", port, "/healthz", cwd=edge_root)


async def create_streams(session: aiohttp.ClientSession, edge: ServerProcess, count: int) -> list[str]:
    ids: list[str] = []
    semaphore = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        async with semaphore:
            async with session.post(f"{edge.url}/api/stream", headers={"Authorization": f"Bearer {API_KEY}"},
                                    json={"name": f"bench{index}", "presets": [PRESET]}) as response:
                if response.status != 201:
                    raise RuntimeError(f"create stream: {response.status} {await response.text()}")
                ids.append((await response.json())["id"])

    await asyncio.gather(*(one(i) for i in range(count)))
    return sorted(ids)


async def register(session: aiohttp.ClientSession, edge: ServerProcess, fleet_ports: list[int],
                   ids: list[str]) -> None:
    """Each broadcaster's heartbeat names its share of the streams: it carries them."""
    for index, port in enumerate(fleet_ports):
        carried = [sid for sid in ids if carrier_of(sid, len(fleet_ports)) == index]
        async with session.put(f"{edge.url}/api/broadcasters/fleet{index}",
                               headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
                               json={"address": f"http://127.0.0.1:{port}", "streams": carried}) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f"register fleet{index}: {response.status} {await response.text()}")


async def wait_published(session: aiohttp.ClientSession, edge: ServerProcess, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    while pending:
        still = []
        for sid in pending:
            async with session.get(f"{edge.url}/stream/{sid}/source.m3u8") as response:
                await response.read()
                if response.status != 200:
                    still.append(sid)
        pending = still
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} stream(s) not published within {timeout_s:g} s:\n{edge.log()}")
        if pending:
            await asyncio.sleep(0.5)


class Players:
    """One player per (stream, rendition), each reloading every second at its own phase, over a
    pool of keep-alive connections (a player waits for a free one; its latency is the request's)."""

    def __init__(self, edge: ServerProcess, ids: list[str], pool: int) -> None:
        parts = urlsplit(edge.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.requests = [
            (f"GET /stream/{sid}/{r}.m3u8 HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
             "Accept-Encoding: gzip\r\n\r\n").encode() for sid in ids for r in RENDITIONS
        ]
        self.pool_size = pool
        self.latencies: list[float] = []
        self.errors = 0
        self.counting = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(self.pool_size):
            self.free.put_nowait((await loop.create_connection(Connection, self.host, self.port))[1])
        rng = random.Random(15)
        self._tasks = [asyncio.create_task(self._player(request, rng.uniform(0, 1))) for request in self.requests]

    async def _player(self, request: bytes, phase: float) -> None:
        next_at = time.monotonic() + phase
        while not self._stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1.0
            connection = await self.free.get()
            started = time.perf_counter()
            try:
                status, _ = await connection.get(request)
            except (ConnectionError, ValueError, RuntimeError):  # closed by the server: open another
                status = 0
                if connection.transport is not None:
                    connection.transport.close()
                loop = asyncio.get_running_loop()
                connection = (await loop.create_connection(Connection, self.host, self.port))[1]
            if self.counting:
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.errors += status != 200
            self.free.put_nowait(connection)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self.free.empty():
            connection = self.free.get_nowait()
            if connection.transport is not None:
                connection.transport.close()


async def follow(session: aiohttp.ClientSession, edge: ServerProcess, sid: str, epoch: float,
                 lags: list[float], counting: list[bool]) -> None:
    """Blocking reloads of one stream's source playlist; the lag of every new segment."""
    url = f"{edge.url}/stream/{sid}/source.m3u8"
    seen = -1
    msn: int | None = None
    while True:
        query = {} if msn is None else {"_HLS_msn": str(msn)}
        try:
            async with session.get(url, params=query, timeout=aiohttp.ClientTimeout(total=10)) as response:
                text = await response.text()
                arrived = time.time()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
            continue
        lines = text.splitlines()
        numbers = [int(line.rsplit("/", 1)[1].split(".")[0]) for line in lines if line.endswith(".ts")]
        sequence = next((int(line.split(":")[1]) for line in lines if line.startswith("#EXT-X-MEDIA-SEQUENCE:")), 0)
        if numbers:
            if seen >= 0 and counting[0]:
                lags.extend(arrived - listed_at(epoch, SEGMENT_S, sid, "source", n) for n in numbers if n > seen)
            seen = max(seen, numbers[-1])
            msn = sequence + len(numbers)
        else:
            await asyncio.sleep(0.2)


async def measure(args: argparse.Namespace, streams: int, fleet_url: str, fleet_ports: list[int],
                  epoch: float, tmp: Path) -> Level:
    edge = await start_edge(tmp, Path(args.edge_root), args.workers)
    try:
        base_rss = rss_kb(edge)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            ids = await create_streams(session, edge, streams)
            await register(session, edge, fleet_ports, ids)
            await wait_published(session, edge, ids, 60 + streams / 10)
            players = Players(edge, ids, pool=min(64, 2 * streams))
            await players.start()
            lags: list[float] = []
            counting = [False]
            followers = [asyncio.create_task(follow(session, edge, sid, epoch, lags, counting))
                         for sid in ids[:: max(1, len(ids) // SAMPLES)][:SAMPLES]]
            await asyncio.sleep(args.warmup)
            before = await fleet_stats(session, fleet_url)
            cpu_before = edge.cpu_seconds() or 0.0
            players.counting = counting[0] = True
            started = time.perf_counter()
            await asyncio.sleep(args.seconds)
            players.counting = counting[0] = False
            seconds = time.perf_counter() - started
            cpu_after = edge.cpu_seconds() or 0.0
            after = await fleet_stats(session, fleet_url)
            rss = rss_kb(edge)
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await players.stop()
    finally:
        edge.stop()
    return Level(
        streams=streams, seconds=seconds, cpu_s=cpu_after - cpu_before,
        upstream_requests=after["requests"] - before["requests"],
        not_modified=after["not_modified"] - before["not_modified"],
        not_carried=after["not_carried"] - before["not_carried"],
        player_latencies_ms=players.latencies, player_errors=players.errors,
        rss_kb=rss, base_rss_kb=base_rss, lags_s=lags,
    )


def report(levels: list[Level]) -> str:
    rows = []
    for level in levels:
        lat, lags = level.player_latencies_ms, level.lags_s
        rows.append([
            level.streams,
            f"{level.core_share * 100:.0f} %",
            f"{level.cpu_ms_per_stream_second:.2f}",
            f"{level.upstream_rps:.0f}",
            f"{level.per_rendition_segment:.2f} ({level.per_rendition_segment * (1 - level.discovery_share):.2f})",
            f"{percentile(lat, 50):.1f} / {percentile(lat, 99):.1f}" if lat else "-",
            level.player_errors,
            f"{level.rss_kb / 1024:.0f}",
            f"{level.rss_per_stream_kb:.0f}",
            f"{percentile(lags, 50):.2f} / {percentile(lags, 95):.2f}" if lags else "-",
        ])
    return table(
        ["streams", "edge CPU (core)", "CPU ms / stream-s", "upstream req/s", "req / stream-rendition / segment (to carriers)",
         "player p50 / p99 ms", "player errors", "edge RSS MB", "RSS / stream KB", "freshness p50 / p95 s"],
        rows,
    )


async def main_async(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.streams.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmpdir:
        tmp = Path(tmpdir)
        ports = [free_port() for _ in range(BROADCASTERS)]
        epoch = time.time() - 60  # 30 segments of history: the playlists are full from the start
        command = [sys.executable, "-m", "bench.fake_fleet", "--ports", ",".join(map(str, ports)),
                   "--epoch", repr(epoch), "--segment", str(SEGMENT_S)] + (["--etag"] if args.etag else [])
        fleet = ServerProcess.start(command, clean_env(), tmp / "fleet.log", ports[0], "/stats")
        levels = []
        try:
            for count in counts:
                level_tmp = tmp / f"level-{count}"
                level_tmp.mkdir()
                levels.append(await measure(args, count, fleet.url, ports, epoch, level_tmp))
                print(f"  {count} streams done", file=sys.stderr)
        finally:
            fleet.stop()
    print(f"Machine: {machine()}; edge from {args.edge_root}; {args.seconds:g} s measured after "
          f"{args.warmup:g} s warm-up; fake broadcasters {'with' if args.etag else 'without'} ETags\n")
    print(report(levels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="50,200,1000", help="comma-separated stream counts")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=12.0, help="seconds before measuring")
    parser.add_argument("--quick", action="store_true", help="20 and 100 streams, 8 s each")
    parser.add_argument("--etag", action="store_true", help="broadcasters answer ETags and 304s")
    parser.add_argument("--workers", type=int, default=1,
                        help="edge worker processes (1: the per-core figure; 0: one per core)")
    parser.add_argument("--edge-root", default=str(ROOT), help="checkout to run the edge from")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.seconds, args.warmup = "20,100", 8.0, 5.0
    run(main_async(args))


if __name__ == "__main__":
    main()
