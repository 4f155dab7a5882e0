"""Streams shared evenly across a fleet: three edge processes on one Redis (a key prefix of the
test's own) poll each stream at its rendezvous owner among them; a fourth joins and takes its
share, handed over, not stolen, while a player alternating between the nodes sees every reload rule
hold. Periods are shortened by settings; waits are bounded polls for the state, not timings."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from devtools.playlist_rules import Seen, check_next
from edge.fleet import owner
from tests.conftest import EdgeProcess, start_edge
from tests.fakes import FakeBroadcaster
from tests.multinode.test_multinode import create_stream, node_env, register
from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

STREAMS = 40  # enough that every node owns some, whatever its random id ((3/4)^40 odds otherwise)


@pytest.fixture
async def redis_prefix() -> str:
    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    yield prefix
    await delete_prefix(REDIS_URL, prefix)


async def holders(prefix: str, sids: list[str]) -> dict[str, str | None]:
    async with aioredis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
        values = await client.mget([f"{prefix}lease:feed:{sid}" for sid in sids])
    return dict(zip(sids, values))


async def settled(prefix: str, sids: list[str], nodes: dict[str, EdgeProcess], timeout_s: float = 30) -> dict[str, str | None]:
    """Wait (bounded) until every stream is polled by its owner among `nodes`; the last holders seen."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        held = await holders(prefix, sids)
        if all(held[sid] == owner(f"feed:{sid}", nodes) for sid in sids):
            return held
        if asyncio.get_running_loop().time() > deadline:
            return held
        await asyncio.sleep(0.2)


async def test_streams_spread_over_the_nodes_and_a_joining_node_takes_its_share(
    tmp_path: Path, redis_prefix: str
) -> None:
    env = {**node_env(redis_prefix), "EDGE_FLEET_INTERVAL": "0.5", "EDGE_POLL_INTERVAL": "0.3"}
    for name in ("n1", "n2", "n3", "n4"):
        (tmp_path / name).mkdir()
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    started: list[EdgeProcess] = []
    try:
        started += await asyncio.gather(*(asyncio.to_thread(start_edge, tmp_path / n, env) for n in ("n1", "n2", "n3")))
        async with httpx.AsyncClient(timeout=5) as http:
            nodes = {(await http.get(f"{e.url}/healthz")).json()["node"]: e for e in started}
            sids = [await create_stream(http, started[0]) for _ in range(STREAMS)]
            await register(http, started[0], fake, sids)
            for sid in sids:
                fake.add(sid, "source", 0, 1, 2)

            async def watch_everywhere(edges: list[EdgeProcess]) -> None:
                """Players ask every node for every stream: each node has a feed for each."""
                for edge in edges:
                    for sid in sids:
                        while (await http.get(f"{edge.url}/stream/{sid}/source.m3u8")).status_code != 200:
                            await asyncio.sleep(0.1)

            await watch_everywhere(started)
            held = await settled(redis_prefix, sids, nodes)
            assert held == {sid: owner(f"feed:{sid}", nodes) for sid in sids}
            shares = Counter(held.values())
            assert set(shares) == set(nodes), shares  # every node polls some

            # A player alternates between the nodes on one stream while a fourth node joins.
            sid = sids[0]
            stop = asyncio.Event()

            async def ingest() -> None:
                n = 3
                while not stop.is_set():
                    for s in sids:
                        fake.add(s, "source", n)
                    n += 1
                    await asyncio.sleep(0.25)

            seen: list[Seen] = []

            async def player() -> None:
                reload = 0
                while not stop.is_set():
                    edge = started[reload % len(started)]
                    response = await http.get(f"{edge.url}/stream/{sid}/source.m3u8")
                    assert response.status_code == 200, (edge.url, response.text)
                    current = Seen.of(response.text)
                    check_next(seen, current)
                    reload += 1
                    await asyncio.sleep(0.05 if reload % 2 else 0.15)

            tasks = [asyncio.create_task(ingest()), asyncio.create_task(player())]
            try:
                fourth = await asyncio.to_thread(start_edge, tmp_path / "n4", env)
                started.append(fourth)
                nodes[(await http.get(f"{fourth.url}/healthz")).json()["node"]] = fourth
                await watch_everywhere([fourth])
                held = await settled(redis_prefix, sids, nodes)
                await asyncio.sleep(1.0)  # the player goes on across the hand-overs
                for _ in range(200):  # and makes enough reloads, however quickly the join settled
                    if len(seen) > 20:
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            assert held == {s: owner(f"feed:{s}", nodes) for s in sids}
            newcomer = next(n for n in nodes if nodes[n] is fourth)
            moved = {s for s in sids if held[s] != owner(f"feed:{s}", [n for n in nodes if n != newcomer])}
            assert moved and all(held[s] == newcomer for s in moved), moved  # streams went only to the newcomer
            assert len(seen) > 20 and seen[-1].segments[-1] != seen[0].segments[-1]
    finally:
        await fake.stop()
        for edge in started:
            edge.stop()
