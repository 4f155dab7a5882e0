"""Benchmark of `GET /api/broadcaster` (issue 3) with 1,000 registered broadcasters and the GeoIP
lookup in the path, beside a bare uvicorn app returning a constant body, in the same run.

    .venv/bin/python -m bench.bench_broadcaster [--requests 5000] [--rounds 3] [--concurrency 20] [--warmup 2000] [--pause 6]

A real `edge serve` process (EDGE_* environment; the embedded DB-IP database; 127.0.0.1 a trusted
proxy; production defaults otherwise, access log on) gets 1,000 broadcasters registered through
`PUT /api/broadcasters/{name}`, spread over the inhabited latitudes with varied capacity and load.
The bare app (`bench.common:constant_app`, the same uvicorn settings) serves one real answer of the
edge as its constant body. Both are driven by the same lean keep-alive client over loopback:
`--requests` GETs on `--concurrency` connections after a warm-up, each request with an
X-Forwarded-For taken in turn from a pool of random public IPv4 addresses, so that locating the
client (the proxy walk, the city database and its cache) is in the path. Meanwhile every broadcaster
heartbeats (the same body) every `--heartbeat-interval` seconds, as a live fleet must within the
30 s TTL: the edge's CPU time includes those writes, and a heartbeat settles the hand-outs reserved
on its node (reservations.py). With `--heartbeat-interval 0` nothing heartbeats: load reports go
stale after 30 s and every hand-out stays reserved, which makes the ranking work hardest. With
`--moving-loads` each heartbeat reports one stream more or fewer than the last, as a fleet whose
streams come and go does: nearly every one then changes what ranking sees of its node.

The warm-up asks once from each client address, then the run pauses for longer than the ranking
cache's max age: the measured requests are a burst of ingests from places a running edge has seen
before (their locations and its spatial index cells are known, as in any process up for a while).
A fleet repeating its loads keeps every cell's ranking through the pause; with `--moving-loads` each
cell is checked against the loads that moved meanwhile at its first request of the burst, and
ranked afresh where one concerns it (most cells, at 100 heartbeats a second). `--warmup 500
--pause 0` measures a process that has just started instead (most client addresses new: city
database lookups, spatial index cells built, every cell ranked).

The two servers are measured in turn, `--rounds` times (so that both meet the same background
load); the tables pool the rounds, and the summary's ratios are the median over rounds of edge /
bare app, each round's two measured back to back. A single round of 5,000 requests lasts about a
second, and the edge's CPU time then varied by a quarter from run to run on a shared machine.

Server CPU time per request is reported beside requests/s: it does not depend on how fast the client
is, nor on what else the machine runs. Not a test: nothing is asserted, and the figures depend on the
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bench.common import (
    Connection,
    LoadResult,
    Ratio,
    ServerProcess,
    clean_env,
    machine,
    pooled,
    run,
    summary,
    table,
    uvicorn_command,
)
from tests.processes import free_port

API_KEY = "bench-api-key"
BROADCASTER_TOKEN = "bench-broadcaster-token"
RUN_TIMEOUT_S = 300.0
RANKING_CACHE_MAX_AGE_S = 5.0
heartbeats_during_run: dict[str, int] = {}  # by server name, over its runs


def public_ipv4_pool(rng: random.Random, size: int) -> list[str]:
    pool: list[str] = []
    while len(pool) < size:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            pool.append(str(address))
    return pool


def fleet(count: int, rng: random.Random) -> list[tuple[str, dict[str, object]]]:
    """`count` broadcasters over the inhabited latitudes, with varied capacity and load."""
    bodies = []
    for i in range(count):
        capacity = rng.choice([10, 20, 40, 80])
        bodies.append((f"b{i:04d}", {
            "address": f"https://b{i:04d}.example.net:8935",
            "region": rng.choice(["eu", "us", "ap", "sa", "af"]),
            "latitude": round(rng.uniform(-45, 65), 4),
            "longitude": round(rng.uniform(-180, 180), 4),
            "capacity": capacity,
            "load": {"activeStreams": rng.randint(0, capacity), "cpu": round(rng.random(), 3)},
        }))
    return bodies


async def register(session: aiohttp.ClientSession, url: str, name: str, body: dict[str, object]) -> None:
    async with session.put(f"{url}/api/broadcasters/{name}", json=body) as response:
        if response.status not in (200, 201):
            raise RuntimeError(f"register {name}: {response.status} {await response.text()}")


async def register_fleet(session: aiohttp.ClientSession, url: str, bodies: list[tuple[str, dict[str, object]]],
                         concurrency: int) -> None:
    queue = iter(bodies)

    async def worker() -> None:
        for name, body in queue:
            await register(session, url, name, body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def moved(body: dict[str, object], rng: random.Random) -> dict[str, object]:
    """`body` one stream busier or idler (within its capacity), as a heartbeat of a node whose
    streams come and go reports it."""
    load = dict(body["load"])  # type: ignore[call-overload]
    capacity = int(body["capacity"])  # type: ignore[call-overload]
    load["activeStreams"] = min(capacity, max(0, int(load["activeStreams"]) + rng.choice((-1, 1))))
    return {**body, "load": load}


async def heartbeats(session: aiohttp.ClientSession, url: str, bodies: list[tuple[str, dict[str, object]]],
                     interval_s: float, sent: list[int], moving: random.Random | None = None) -> None:
    """Every broadcaster heartbeats once per `interval_s`, evenly spread, as a live fleet does;
    with `moving`, each heartbeat reports one stream more or fewer than the one before."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    in_flight: set[asyncio.Task[None]] = set()

    async def beat(name: str, body: dict[str, object]) -> None:
        await register(session, url, name, body)
        sent[0] += 1

    try:
        for i in itertools.count():
            await asyncio.sleep(max(0.0, start + i * interval_s / len(bodies) - loop.time()))
            if moving is not None:
                name, body = bodies[i % len(bodies)]
                bodies[i % len(bodies)] = (name, moved(body, moving))
            # On time even when the edge is slow to answer: each heartbeat is its own request.
            task = asyncio.create_task(beat(*bodies[i % len(bodies)]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
    finally:
        for task in in_flight:
            task.cancel()


def requests_for(url: str, pool: list[str]) -> list[bytes]:
    """One GET per client address of the pool, with the API key."""
    parts = urlsplit(url)
    return [
        (f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {API_KEY}\r\n"
         f"X-Forwarded-For: {ip}\r\n\r\n").encode("latin-1")
        for ip in pool
    ]


async def drive(name: str, url: str, pool: list[str], args: argparse.Namespace,
                server: ServerProcess, sent: list[int]) -> LoadResult:
    """`args.requests` GETs on `args.concurrency` keep-alive connections after a warm-up, the i-th
    request from the i-th address of the pool (round robin)."""
    requests = requests_for(url, pool)
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    connections: list[Connection] = []
    statuses: dict[int, int] = {}
    sizes: list[int] = []

    async def batch(count: int, offset: int, latencies: list[float]) -> None:
        counter = iter(range(offset, offset + count))

        async def worker(connection: Connection) -> None:
            for i in counter:
                started = time.perf_counter()
                status, size = await connection.get(requests[i % len(requests)])
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                sizes.append(size)

        # Connections afresh after a pause: the server closes idle keep-alive ones after 5 s.
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        connections[:] = [(await loop.create_connection(Connection, parts.hostname, parts.port))[1]
                          for _ in range(args.concurrency)]
        await asyncio.gather(*(worker(c) for c in connections))

    try:
        await batch(args.warmup, 0, [])
        # Let what the warm-up ranked expire: the burst ranks each cell afresh.
        await asyncio.sleep(args.pause)
        statuses.clear()
        sizes.clear()
        latencies: list[float] = []
        cpu_before, client_before, beats_before = server.cpu_seconds(), time.process_time(), sent[0]
        started = time.perf_counter()
        await asyncio.wait_for(batch(args.requests, args.warmup, latencies), RUN_TIMEOUT_S)
        seconds = time.perf_counter() - started
        client_cpu, cpu_after = time.process_time() - client_before, server.cpu_seconds()
        heartbeats_during_run[name] = heartbeats_during_run.get(name, 0) + sent[0] - beats_before
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    errors = sum(n for status, n in statuses.items() if status != 200)
    return LoadResult(name, args.requests, seconds, latencies, errors, round(sum(sizes) / len(sizes)),
                      server_cpu, client_cpu, statuses)


async def one_answer(url: str, ip: str) -> bytes:
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Forwarded-For": ip}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return await response.read()


async def main_async(args: argparse.Namespace) -> list[list[LoadResult]]:
    rng = random.Random(args.seed)
    pool = public_ipv4_pool(rng, args.pool)
    with tempfile.TemporaryDirectory(prefix="bench-broadcaster-") as tmp:
        edge_port, bare_port = free_port(), free_port()
        edge = ServerProcess.start(
            [sys.executable, "-m", "edge", "serve", "--port", str(edge_port)],
            clean_env(
                EDGE_DATA_DIR=tmp,
                EDGE_WORKERS="1",  # one process, as the bare app it is compared with
                EDGE_API_KEYS=API_KEY,
                EDGE_BROADCASTER_TOKENS=BROADCASTER_TOKEN,
                EDGE_SHARED_BROADCASTER_TOKEN="true",  # the fakes share one token
                EDGE_BROADCASTER_NETWORKS="127.0.0.0/8",  # and run on this machine
                EDGE_ADMIN_TOKENS="bench-admin-token",
                EDGE_TRUSTED_PROXIES="127.0.0.1/32",
                EDGE_HEARTBEAT_TTL="3600",  # so that --heartbeat-interval 0 keeps the fleet in
                EDGE_ACCESS_LOG="true" if args.access_log else "false",
                EDGE_RANKING_CACHE_MAX_AGE=str(RANKING_CACHE_MAX_AGE_S),  # the default, said here for --pause
            ),
            Path(tmp) / "edge.log", edge_port, ready_path="/healthz",
        )
        bare: ServerProcess | None = None
        session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"})
        beating: asyncio.Task[None] | None = None
        try:
            started = time.perf_counter()
            bodies = fleet(args.broadcasters, rng)
            await register_fleet(session, edge.url, bodies, 20)
            print(f"registered {args.broadcasters} broadcasters in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
            sent = [0]
            if args.heartbeat_interval:
                beating = asyncio.create_task(heartbeats(session, edge.url, bodies, args.heartbeat_interval, sent,
                                                         random.Random(args.seed) if args.moving_loads else None))
            body = Path(tmp) / "answer.json"
            body.write_bytes(await one_answer(f"{edge.url}/api/broadcaster", pool[0]))
            bare = ServerProcess.start(
                uvicorn_command("bench.common:constant_app", bare_port),
                clean_env(BENCH_BODY_FILE=str(body), BENCH_CONTENT_TYPE="application/json"),
                Path(tmp) / "bare.log", bare_port,
            )
            servers = (("bare uvicorn app, constant body", bare, "/"), ("`GET /api/broadcaster`", edge, "/api/broadcaster"))
            rounds: list[list[LoadResult]] = []
            for _ in range(args.rounds):  # in turn, so that both meet the same background load
                results = []
                for name, server, path in servers:
                    result = await drive(name, f"{server.url}{path}", pool, args, server, sent)
                    if result.errors:
                        raise RuntimeError(f"{name}: answers other than 200: {result.statuses}\n{server.log()}")
                    results.append(result)
                rounds.append(results)
            return rounds
        finally:
            if beating is not None:
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
            await session.close()
            edge.stop()
            if bare is not None:
                bare.stop()


def median_round(rounds: list[list[LoadResult]],
                 figure: Callable[[LoadResult], float | None]) -> tuple[float, float] | None:
    """(edge's, bare app's) `figure` in the round whose edge / bare ratio is the median (the lower
    one of the middle two for an even count), or None when a round lacks the figure."""
    pairs = [(figure(edge), figure(bare)) for bare, edge in rounds]
    if any(not measured or not baseline for measured, baseline in pairs):
        return None
    ordered = sorted(pairs, key=lambda p: p[0] / p[1])  # type: ignore[operator]
    return ordered[(len(ordered) - 1) // 2]  # type: ignore[return-value]


def report(rounds: list[list[LoadResult]], args: argparse.Namespace, where: str) -> str:
    results = [pooled(runs) for runs in zip(*rounds)]
    bare, edge = results
    rows = []
    for r in results:
        cpu = r.server_cpu_us_per_request
        rows.append((r.name, f"{r.rps:,.0f}", f"{r.p(50):.2f}", f"{r.p(99):.2f}",
                     "-" if cpu is None else f"{cpu:,.0f}"))
    ratios = []
    rps = median_round(rounds, lambda r: r.rps)
    if rps is not None:
        ratios.append(Ratio("`GET /api/broadcaster` requests/s, edge / bare app", *rps, "requests/s"))
    cpu = median_round(rounds, lambda r: r.server_cpu_us_per_request)
    if cpu is not None:
        ratios.append(Ratio("server CPU per request, edge / bare app", *cpu, "µs"))
    per_round = ", ".join(f"{e.rps / b.rps:.2f}x" for b, e in rounds)
    return "\n".join([
        f"{args.broadcasters} broadcasters registered; {args.rounds} round(s) of {args.requests} requests after "
        f"{args.warmup} warm-up and a {args.pause:g} s pause "
        f"on {args.concurrency} keep-alive connections, X-Forwarded-For from {args.pool} random public "
        f"IPv4 addresses (embedded DB-IP City Lite), access log {'on' if args.access_log else 'off'}, "
        + (f"every broadcaster heartbeating every {args.heartbeat_interval:g} s "
           f"({heartbeats_during_run.get(edge.name, 0)} heartbeats during the edge's runs, in its CPU time)"
           + (", each reporting one stream more or fewer" if args.moving_loads else ", each repeating its load")
           if args.heartbeat_interval else "no heartbeats")
        + f"; {where}.",
        "",
        table(["server", "requests/s", "p50 ms", "p99 ms", "server CPU µs/request"], rows),
        "",
        f"Requests/s, edge / bare app, round by round: {per_round}. The table pools the rounds; the summary "
        "gives each figure's median round.",
        "",
        summary(ratios),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broadcasters", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=2000,
                        help="requests before the measured ones (default: each client address once)")
    parser.add_argument("--pause", type=float, default=RANKING_CACHE_MAX_AGE_S + 1,
                        help="seconds between the warm-up and the measured requests (default: until the "
                        "rankings the warm-up computed have expired)")
    parser.add_argument("--rounds", type=int, default=3, help="times each server is measured, in turn")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pool", type=int, default=2000, help="distinct client addresses")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--heartbeat-interval", type=float, default=10.0,
                        help="seconds between two heartbeats of one broadcaster (0: none)")
    parser.add_argument("--moving-loads", action="store_true",
                        help="each heartbeat reports one stream more or fewer than the one before (default: the "
                        "same load): what ranking sees of the fleet keeps changing")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="the edge's JSON access log (on by default, as in production)")
    args = parser.parse_args()
    for name in ("broadcasters", "requests", "concurrency", "pool"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name} must be between 1 and 100000")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if not 0 <= args.heartbeat_interval <= 3600:
        parser.error("--heartbeat-interval must be between 0 and 3600")
    if args.warmup < 0 or args.warmup > 100_000:
        parser.error("--warmup must be between 0 and 100000")
    if not 0 <= args.pause <= 60:
        parser.error("--pause must be between 0 and 60")
    where = machine()
    print(report(run(main_async(args)), args, where))


if __name__ == "__main__":
    main()
