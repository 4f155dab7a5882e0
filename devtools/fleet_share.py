"""Streams shared over real edge nodes (issue 15): three `edge serve --workers 1` processes on one
Redis poll about a third of 300 live streams each; a fourth joins and takes about a quarter; then one
node is killed (SIGKILL) and its streams move to the others, while players keep reloading every
stream round-robin across the nodes and every reload is checked against the HLS reload rules.

    .venv/bin/python -m devtools.fleet_share [--streams 300] [--redis URL]

- Store: a redis-server of the run's own (in memory), or `--redis URL` under a key prefix of the
  run's own (deleted at the end).
- Broadcasters: 4 fake ones in one cheap process (bench.fake_fleet: 2 renditions per stream, 2 s
  segments listed in real time), registered through the API; the streams are created through the API.
- Players: one per stream, reloading its source playlist every 2 s (a random phase each), each
  reload on the next node of the rotation (as behind a load balancer: every node gets requests for
  every stream, so every node has a feed for each). One client process, streams / 2 requests per
  second in all. A killed node leaves the rotation at once (a load balancer's health check).
- Who polls: the holder of each stream's lease (`lease:feed:<id>` in the store), read every second;
  a row every 5 s. "settled" is every stream held by its rendezvous owner among the live nodes.

Nodes run with the default periods (poll 1 s, lease TTL 3 s, announcements every 2 s). Loopback
only; bounded (each phase gives up after its limit); every process started is stopped by its PID.
Not a test: times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp
import redis.asyncio as aioredis

from bench.fake_fleet import carrier_of
from devtools.playlist_rules import ReloadChecker, Seen
from devtools.processes import EdgeProcess, MissingBinary, RedisServer, free_port, start_edge, stop_process
from edge.fleet import owner

API_KEY = "share-api-key"
BROADCASTER_TOKEN = "share-broadcaster-token"
ADMIN_TOKEN = "share-admin-token"
PRESET = "P360p30fps16x9"
SEGMENT_S = 2.0
BROADCASTERS = 4
RELOAD_S = 2.0
ROW_S = 5.0  # a table row every this many seconds
PHASE_LIMIT_S = 90.0  # a phase gives up (and says so) after this long


def node_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "EDGE_STORE": redis_url, "EDGE_REDIS_PREFIX": prefix,
        "EDGE_API_KEYS": API_KEY, "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
        "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN, "EDGE_SHARED_BROADCASTER_TOKEN": "true",
        "EDGE_BROADCASTER_NETWORKS": "127.0.0.0/8",
        "EDGE_HEARTBEAT_TTL": "3600",  # no heartbeats during the run: the carriers stay registered
        "EDGE_ACCESS_LOG": "false", "EDGE_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Node:
    name: str  # node-1 ... node-4, in the order started
    node_id: str  # what it announces to the fleet (and writes into the leases it holds)
    edge: EdgeProcess


@dataclass
class Player:
    """One stream's player: its rule checker, and when its playlist last grew."""

    checker: ReloadChecker = field(default_factory=ReloadChecker)
    last_new: float | None = None
    last_msn: int = -1
    longest_stall: float = 0.0


class Load:
    """The players of every stream, each reload on the next node of `rotation`."""

    def __init__(self, session: aiohttp.ClientSession, ids: list[str]) -> None:
        self.session, self.ids = session, ids
        self.rotation: list[Node] = []
        self.players = {sid: Player() for sid in ids}
        self.reloads = 0
        self.failures: Counter[str] = Counter()  # by node name: answers other than 200 once published
        self.violations: Counter[str] = Counter()  # by rule
        self.examples: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        rng = random.Random(15)
        self._tasks = [asyncio.create_task(self._play(sid, rng.uniform(0, RELOAD_S), rng.randrange(12)))
                       for sid in self.ids]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def published(self) -> int:
        return sum(p.checker.last is not None for p in self.players.values())

    async def _play(self, sid: str, phase: float, turn: int) -> None:
        player = self.players[sid]
        next_at = time.monotonic() + phase
        while not self._stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += RELOAD_S
            node = self.rotation[turn % len(self.rotation)]
            turn += 1
            try:
                async with self.session.get(f"{node.edge.url}/stream/{sid}/source.m3u8") as response:
                    status, text = response.status, await response.text()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status, text = 0, ""
            if status != 200:
                if player.checker.last is not None and node in self.rotation:
                    self.failures[node.name] += 1
                continue
            self.reloads += 1
            try:
                seen = Seen.of(text)
            except ValueError as exc:
                self.violations["unparsable"] += 1
                if len(self.examples) < 5:
                    self.examples.append(f"{sid} on {node.name}: {exc}")
                continue
            for problem in player.checker.check(seen):
                self.violations[problem.kind] += 1
                if len(self.examples) < 5:
                    self.examples.append(f"{sid} on {node.name}: {problem.kind}: {problem.detail}")
            now = time.monotonic()
            if seen.next_msn > player.last_msn:
                if player.last_new is not None:
                    player.longest_stall = max(player.longest_stall, now - player.last_new)
                player.last_msn, player.last_new = seen.next_msn, now


async def holders(client: aioredis.Redis, prefix: str, ids: list[str]) -> dict[str, str | None]:
    values = await client.mget([f"{prefix}lease:feed:{sid}" for sid in ids])
    return {sid: (v.decode() if isinstance(v, bytes) else v) for sid, v in zip(ids, values)}


class Watch:
    """Samples the lease holders every second and prints a row every ROW_S seconds."""

    def __init__(self, client: aioredis.Redis, prefix: str, ids: list[str], nodes: list[Node], load: Load) -> None:
        self.client, self.prefix, self.ids, self.nodes, self.load = client, prefix, ids, nodes, load
        self.rows: list[list[object]] = []
        self.unsettled: list[tuple[str, float]] = []  # samples once settled with a stream not at its owner
        self._used: dict[str, float] = {}
        self._cpu = (time.monotonic(), self.cpu())

    def cpu(self) -> float:
        """The CPU seconds used so far by the nodes' processes (their workers included)."""
        for n in self.nodes:  # a killed node's last figure stays in the sum
            self._used[n.name] = max(self._used.get(n.name, 0.0), tree_cpu_seconds(n.edge.proc.pid))
        return sum(self._used.values())

    def row(self, label: str, at: float, held: dict[str, str | None], live: list[Node]) -> list[object]:
        now, cpu = time.monotonic(), self.cpu()
        share = f"{(cpu - self._cpu[1]) / (now - self._cpu[0]) * 100:.0f} %" if now - self._cpu[0] > 0.5 else "-"
        self._cpu = (now, cpu)
        counts = Counter(held.values())
        owners = {sid: owner(f"feed:{sid}", [n.node_id for n in live]) for sid in self.ids}
        at_owner = sum(held[sid] == owners[sid] for sid in self.ids)
        cells: list[object] = [label, f"{at:.0f}"]
        cells += [counts.get(n.node_id, 0) if n in live or counts.get(n.node_id) else "-" for n in self.nodes]
        cells += [""] * (4 - len(self.nodes))
        cells += [counts.get(None, 0), at_owner, share, f"{os.getloadavg()[0]:.1f}"]
        return cells

    async def phase(self, label: str, live: list[Node], done: Callable[[dict[str, str | None], float], bool],
                    hold_s: float, limit_s: float = PHASE_LIMIT_S) -> float | None:
        """Samples until `done(held, elapsed)`, then `hold_s` more seconds (the fleet must stay as
        it is); the elapsed seconds when first done, None if not within `limit_s`."""
        started = time.monotonic()
        next_row = 0.0
        done_at: float | None = None
        while True:
            elapsed = time.monotonic() - started
            held = await holders(self.client, self.prefix, self.ids)
            finished = done(held, elapsed)
            first = finished and done_at is None
            if first:
                done_at = elapsed
            over = (done_at is not None and elapsed >= done_at + hold_s) or (done_at is None and elapsed > limit_s)
            if elapsed >= next_row or first:
                self.rows.append(self.row(label, elapsed, held, live))
                print(table_line(self.rows[-1]), flush=True)
                next_row = max(next_row + ROW_S, elapsed + 1.0)
            elif over:  # the last sample: a row unless one was printed just now
                self.rows.append(self.row(label, elapsed, held, live))
                print(table_line(self.rows[-1]), flush=True)
            if done_at is not None and not finished:
                self.unsettled.append((label, elapsed))
            if over:
                return done_at
            await asyncio.sleep(1.0)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its children (0 once it is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total += (int(fields[11]) + int(fields[12])) / tick
    return total + sum(tree_cpu_seconds(int(child)) for child in children)


def table_line(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def settled(ids: list[str], live: list[Node]):
    owners = {sid: owner(f"feed:{sid}", [n.node_id for n in live]) for sid in ids}
    return lambda held, _elapsed: all(held[sid] == owners[sid] for sid in ids)


def start_fleet(tmp: Path, ports: list[int], epoch: float) -> subprocess.Popen[bytes]:
    log = (tmp / "fleet.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "bench.fake_fleet", "--ports", ",".join(map(str, ports)),
                             "--epoch", repr(epoch), "--segment", str(SEGMENT_S)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/stats", timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError("the fake broadcasters did not answer")


async def start_node(session: aiohttp.ClientSession, tmp: Path, name: str, env: dict[str, str]) -> Node:
    workdir = tmp / name
    workdir.mkdir()
    edge = await asyncio.to_thread(start_edge, workdir, env, ["--workers", "1"])
    async with session.get(f"{edge.url}/healthz") as response:
        return Node(name, (await response.json())["node"], edge)


async def create_streams(session: aiohttp.ClientSession, node: Node, count: int) -> list[str]:
    ids: list[str] = []
    semaphore = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        async with semaphore, session.post(f"{node.edge.url}/api/stream", headers={"Authorization": f"Bearer {API_KEY}"},
                                           json={"name": f"share{index}", "presets": [PRESET]}) as response:
            if response.status != 201:
                raise RuntimeError(f"create stream: {response.status} {await response.text()}")
            ids.append((await response.json())["id"])

    await asyncio.gather(*(one(i) for i in range(count)))
    return sorted(ids)


async def register(session: aiohttp.ClientSession, node: Node, ports: list[int], ids: list[str]) -> None:
    for index, port in enumerate(ports):
        carried = [sid for sid in ids if carrier_of(sid, len(ports)) == index]
        async with session.put(f"{node.edge.url}/api/broadcasters/fleet{index}",
                               headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
                               json={"address": f"http://127.0.0.1:{port}", "streams": carried}) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f"register fleet{index}: {response.status} {await response.text()}")


async def run(args: argparse.Namespace, tmp: Path) -> None:
    prefix = f"fleet-share:{uuid.uuid4().hex}:"
    own_redis = None
    if args.redis is None:
        try:
            own_redis = RedisServer(tmp, persist=False)
        except MissingBinary as exc:
            raise SystemExit(f"{exc}, or pass --redis URL") from None
        own_redis.start()
        args.redis = own_redis.url
    env = node_env(args.redis, prefix)
    ports = [free_port() for _ in range(BROADCASTERS)]
    fleet = start_fleet(tmp, ports, time.time() - 60)  # 30 segments of history: full playlists at once
    nodes: list[Node] = []
    client = aioredis.Redis.from_url(args.redis)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200),
                                    timeout=aiohttp.ClientTimeout(total=5))
    load: Load | None = None
    try:
        nodes += await asyncio.gather(*(start_node(session, tmp, f"node-{i}", env) for i in (1, 2, 3)))
        ids = await create_streams(session, nodes[0], args.streams)
        await register(session, nodes[0], ports, ids)
        load = Load(session, ids)
        load.rotation = list(nodes)
        load.start()
        print(f"{args.streams} streams, 2 renditions, 2 s segments; {len(ids) / RELOAD_S:.0f} player reloads/s "
              f"round-robin over the nodes; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        header = ["phase", "t (s)", "node-1", "node-2", "node-3", "node-4", "no holder", "held by owner",
                  "nodes' CPU (of a core)", "load avg"]
        print(table_line(header))
        print("|---|" + "---:|" * (len(header) - 1))
        deadline = time.monotonic() + PHASE_LIMIT_S
        while load.published() < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        print(f"{load.published()} of {len(ids)} streams published to their players\n", flush=True)
        watch = Watch(client, prefix, ids, nodes, load)
        three = list(nodes)
        t3 = await watch.phase("3 nodes", three, settled(ids, three), args.hold)

        nodes.append(await start_node(session, tmp, "node-4", env))
        four = list(nodes)
        load.rotation = list(four)
        fourth = nodes[3].node_id
        quarter = args.streams / 4
        reached: list[float] = []

        def joined(held: dict[str, str | None], elapsed: float) -> bool:
            if not reached and abs(sum(v == fourth for v in held.values()) - quarter) <= 0.3 * quarter:
                reached.append(elapsed)
            return settled(ids, four)(held, elapsed)

        t4 = await watch.phase("node-4 joined", four, joined, args.hold)

        victim = nodes[1]
        victim.edge.proc.send_signal(signal.SIGKILL)
        victim.edge.proc.wait(5)
        rest = [n for n in nodes if n is not victim]
        load.rotation = list(rest)
        moved: list[float] = []

        def recovered(held: dict[str, str | None], elapsed: float) -> bool:
            if not moved and victim.node_id not in held.values() and None not in held.values():
                moved.append(elapsed)
            return settled(ids, rest)(held, elapsed)

        t_kill = await watch.phase(f"{victim.name} killed", rest, recovered, args.hold)
        await load.stop()
        stalls = sorted(p.longest_stall for p in load.players.values())
        print()
        print(f"3 nodes settled {fmt(t3)} s after every stream was published; node-4 reached a quarter "
              f"(+-30 %) {fmt(reached[0] if reached else None)} s after it was up, settled after {fmt(t4)} s; "
              f"{victim.name}'s streams all held by live nodes {fmt(moved[0] if moved else None)} s after the "
              f"SIGKILL, every stream at its owner after {fmt(t_kill)} s; each phase went on {args.hold:g} s once settled, "
              f"{'and stayed settled' if not watch.unsettled else 'not settled at ' + unsettled(watch.unsettled)}.")
        print(f"Player reloads: {load.reloads}, reload-rule violations: {sum(load.violations.values())}"
              f"{' ' + str(dict(load.violations)) if load.violations else ''}, failed reloads (live nodes): "
              f"{sum(load.failures.values())}; longest time without a new segment per stream: median "
              f"{stalls[len(stalls) // 2]:.1f} s, max {stalls[-1]:.1f} s (segments every {SEGMENT_S:g} s, "
              f"reloads every {RELOAD_S:g} s). Load average {os.getloadavg()[0]:.2f} at the end.")
        for example in load.examples:
            print("  ", example)
    finally:
        if load is not None:
            await load.stop()
        await session.close()
        for node in nodes:
            node.edge.stop()
        stop_process(fleet)
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()
        if own_redis is not None:
            own_redis.stop()


def unsettled(samples: list[tuple[str, float]]) -> str:
    """"3 nodes: 4 samples (5-9 s)", per phase."""
    phases: dict[str, list[float]] = {}
    for label, at in samples:
        phases.setdefault(label, []).append(at)
    return "; ".join(f"{label}: {len(ats)} samples ({min(ats):.0f}-{max(ats):.0f} s)" for label, ats in phases.items())


def fmt(value: float | None) -> str:
    return "(not within the limit)" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--redis", help="a Redis for the nodes to share (under a prefix of the run's own); "
                        "default: a redis-server of the run's own")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each phase goes on once settled")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' logs (their directory is printed)")
    args = parser.parse_args()
    if args.keep:
        tmp = Path(tempfile.mkdtemp(prefix="fleet-share-"))
        print(f"logs in {tmp}")
        asyncio.run(run(args, tmp))
    else:
        with tempfile.TemporaryDirectory(prefix="fleet-share-") as tmpdir:
            asyncio.run(run(args, Path(tmpdir)))


if __name__ == "__main__":
    main()
