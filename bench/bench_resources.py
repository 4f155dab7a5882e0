"""What one edge node uses under a representative load: the measurement behind the resource
requests and limits of deploy/kubernetes/edge.yaml (deploy/README.md, "Resources").

    .venv/bin/python -m bench.bench_resources [--streams 20] [--players 300] [--seconds 60]

A real `edge serve` process on a Redis server of its own (as in Kubernetes: EDGE_STORE=redis://...,
production defaults otherwise, access log on) merges `--streams` live streams of 2 renditions, each
carried by 3 fake broadcasters (tests/fakes.py, real aiohttp servers in this process) with a 2 s
segment every 2 s, while `--players` players each reload one rendition of one stream every 2 s (a
player reloads about once a target duration; blocking reloads are not used). Every second the edge's
resident memory (VmRSS) is read from /proc; its CPU time over the measured window gives the cores
it used. Redis's CPU time comes from INFO cpu over the same window, its memory from INFO memory.

Not a test: the figures depend on the machine; the players and fakes share it with the edge.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.bench_playlists import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, PRESET, RENDITIONS, SEGMENT_S, ingest
from bench.common import ServerProcess, clean_env, machine, run, table
from devtools.processes import RedisServer
from tests.fakes import FakeBroadcaster
from tests.processes import free_port

PLAYER_RELOAD_S = 2.0
CONNECTIONS = 64


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def redis_cpu_seconds(client: aioredis.Redis) -> float:
    cpu = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def create_streams(session: aiohttp.ClientSession, edge: ServerProcess, fakes: list[FakeBroadcaster],
                         count: int) -> list[str]:
    ids = []
    for n in range(count):
        async with session.post(f"{edge.url}/api/stream", headers={"Authorization": f"Bearer {API_KEY}"},
                                json={"name": f"bench-{n}", "presets": [PRESET]}) as response:
            if response.status != 201:
                raise RuntimeError(f"create stream: {response.status} {await response.text()}")
            ids.append((await response.json())["id"])
    for fake in fakes:
        async with session.put(f"{edge.url}/api/broadcasters/{fake.name}",
                               headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
                               json={"address": fake.url, "streams": ids}) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f"register {fake.name}: {response.status} {await response.text()}")
    return ids


async def live_ingest(fakes: list[FakeBroadcaster], ids: list[str], first: int) -> None:
    number, next_at = first, time.monotonic()
    while True:
        for stream_id in ids:
            ingest(fakes, stream_id, number)
        number += 1
        next_at += SEGMENT_S
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def player(session: aiohttp.ClientSession, url: str, rng: random.Random, stop: asyncio.Event,
                 tally: Counter[str]) -> None:
    await asyncio.sleep(rng.uniform(0, PLAYER_RELOAD_S))  # staggered, as real players are
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with session.get(url) as response:
                body = await response.read()
                # A refusal is named by its first words ("stream ...: the shared store is unreachable").
                said = body.decode(errors="replace").split(":", 1)[-1].strip()[:48]
                tally["ok" if response.status == 200 else f"HTTP {response.status} ({said})"] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            tally[type(exc).__name__] += 1
        await asyncio.sleep(max(0.0, PLAYER_RELOAD_S - (time.monotonic() - started)))


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-resources-"))
    store = RedisServer(tmp)
    store.start()
    fakes = [FakeBroadcaster(f"b{i}", segment_duration=SEGMENT_S, window=6) for i in range(3)]
    for fake in fakes:
        await fake.start()
    port = free_port()
    env = clean_env(
        EDGE_DATA_DIR=str(tmp / "edge-data"), EDGE_STORE=store.url, EDGE_API_KEYS=API_KEY,
        EDGE_BROADCASTER_TOKENS=BROADCASTER_TOKEN, EDGE_SHARED_BROADCASTER_TOKEN="true",
        EDGE_BROADCASTER_NETWORKS="127.0.0.0/8", EDGE_ADMIN_TOKENS=ADMIN_TOKEN, EDGE_HEARTBEAT_TTL="3600",
    )
    edge = ServerProcess.start([sys.executable, "-m", "edge", "serve", "--port", str(port)], env,
                               tmp / "edge.log", port, "/healthz")
    feeding: asyncio.Task[None] | None = None
    try:
        idle_rss = rss_mib(edge.proc.pid)
        # Keep-alive connections shared by the players, as behind a CDN: one loopback address would
        # otherwise meet the per-client connection cap (EDGE_MAX_CONNECTIONS_PER_CLIENT).
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            ids = await create_streams(session, edge, fakes, args.streams)
            for number in range(6):
                for stream_id in ids:
                    ingest(fakes, stream_id, number)
            feeding = asyncio.create_task(live_ingest(fakes, ids, 6))
            rng = random.Random(args.seed)
            stop = asyncio.Event()
            tally: Counter[str] = Counter()
            urls = [f"{edge.url}/stream/{rng.choice(ids)}/{rng.choice(RENDITIONS)}.m3u8" for _ in range(args.players)]
            players = [asyncio.create_task(player(session, url, rng, stop, tally)) for url in urls]
            await asyncio.sleep(args.warmup)  # every feed started, every player reloading
            tally.clear()
            samples: list[float] = []
            client = aioredis.from_url(store.url)
            redis_before = await redis_cpu_seconds(client)
            cpu_before, started = edge.cpu_seconds() or 0.0, time.monotonic()
            while time.monotonic() - started < args.seconds:
                samples.append(rss_mib(edge.proc.pid))
                await asyncio.sleep(1.0)
            elapsed = time.monotonic() - started
            cpu = ((edge.cpu_seconds() or 0.0) - cpu_before) / elapsed
            redis_cpu = (await redis_cpu_seconds(client) - redis_before) / elapsed
            stop.set()
            await asyncio.gather(*players)
        redis_memory = await client.info("memory")
        await client.aclose()
    finally:
        if feeding is not None:
            feeding.cancel()
        edge.stop()
        for fake in fakes:
            await fake.stop()
        store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# One edge node's resources under load ({machine()})\n")
    print(f"{args.streams} streams x {len(RENDITIONS)} renditions x 3 broadcasters, {args.players} players "
          f"reloading every {PLAYER_RELOAD_S:g} s over {CONNECTIONS} connections, {elapsed:.0f} s measured after {args.warmup:g} s warm-up\n")
    print(table(["measure", "value"], [
        ["player requests/s (200)", f"{tally['ok'] / elapsed:.0f}"],
        ["player requests failed", ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()) if kind != "ok") or "0"],
        ["edge CPU, cores (mean)", f"{cpu:.2f}"],
        ["edge RSS at start, MiB", f"{idle_rss:.0f}"],
        ["edge RSS under load, MiB (median / max)", f"{sorted(samples)[len(samples) // 2]:.0f} / {max(samples):.0f}"],
        ["Redis CPU, cores (mean)", f"{redis_cpu:.2f}"],
        ["Redis used_memory_rss, MiB", f"{redis_memory['used_memory_rss'] / 2**20:.1f}"],
    ]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--players", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    run(main(parse_args()))
