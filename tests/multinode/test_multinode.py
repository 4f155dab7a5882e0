"""Two edge processes on one Redis, fake broadcasters on loopback, and a player alternating between
the nodes: every reload rule holds, killing the lease holder changes nothing the player can see, and
the upstream load is the same as with one node."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, LOOPBACK_FLEET_ENV, EdgeProcess, start_edge
from tests.fakes import FakeBroadcaster
from devtools.playlist_rules import Seen, check_next
from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

POLL = 0.2


def node_env(prefix: str) -> dict[str, str]:
    return {**edge_env(), "EDGE_STORE": REDIS_URL, "EDGE_REDIS_PREFIX": prefix}


def edge_env() -> dict[str, str]:
    """The tests' credentials and short periods, for any store."""
    return {
        **LOOPBACK_FLEET_ENV,
        "EDGE_API_KEYS": API_KEY,
        "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
        "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN,
        "EDGE_POLL_INTERVAL": str(POLL),
        "EDGE_LEASE_TTL": "1.0",
        "EDGE_HOLE_WAIT": "1.0",
        "EDGE_RENDITION_WAIT": "1.0",
        "EDGE_DISCOVERY_INTERVAL": "30",
        "EDGE_ACCESS_LOG": "false",
    }


@pytest.fixture
async def redis_prefix() -> str:
    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    yield prefix
    await delete_prefix(REDIS_URL, prefix)


async def start_nodes(tmp_path: Path, env: dict[str, str]) -> list[EdgeProcess]:
    """Two edge processes, n1 and n2, each in its own directory under `tmp_path`."""
    for name in ("n1", "n2"):
        (tmp_path / name).mkdir()
    return list(await asyncio.gather(
        asyncio.to_thread(start_edge, tmp_path / "n1", env), asyncio.to_thread(start_edge, tmp_path / "n2", env),
    ))


async def create_stream(http: httpx.AsyncClient, node: EdgeProcess) -> str:
    created = await http.post(f"{node.url}/api/stream", json={"name": "cam"}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def register(http: httpx.AsyncClient, node: EdgeProcess, fake: FakeBroadcaster, streams: list[str]) -> None:
    response = await http.put(
        f"{node.url}/api/broadcasters/{fake.name}",
        json={"address": fake.url, "region": "eu", "latitude": 50.1, "longitude": 8.7, "streams": streams},
        headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
    )
    assert response.status_code in (200, 201), response.text


async def test_a_player_alternating_between_two_nodes_sees_every_rule_hold(tmp_path: Path, redis_prefix: str) -> None:
    nodes = await start_nodes(tmp_path, node_env(redis_prefix))
    fakes = [FakeBroadcaster("fra-1"), FakeBroadcaster("fra-2")]
    for fake in fakes:
        await fake.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            sid = await create_stream(http, nodes[0])
            # A stream created on one node is served by the other at once.
            other = await http.get(f"{nodes[1].url}/api/stream/{sid}", headers={"Authorization": f"Bearer {API_KEY}"})
            assert other.status_code == 200 and other.json()["id"] == sid
            for fake in fakes:  # registered on node 1, with the stream they carry
                await register(http, nodes[0], fake, [sid])
            listed = await http.get(f"{nodes[1].url}/api/broadcasters", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert {b["name"] for b in listed.json()} == {"fra-1", "fra-2"}  # visible on node 2 at once

            async def ingest() -> None:
                for n in range(200):
                    fakes[(n // 4) % 2].add(sid, "source", n)
                    await asyncio.sleep(0.25)

            feeder = asyncio.create_task(ingest())
            seen: list[Seen] = []
            killed: EdgeProcess | None = None
            alive = list(nodes)
            reloads = 0
            while reloads < 120:
                node = alive[reloads % len(alive)]
                response = await http.get(f"{node.url}/stream/{sid}/source.m3u8")
                if response.status_code == 404 and not seen:
                    await asyncio.sleep(0.1)
                    continue
                assert response.status_code == 200, (node.url, response.text)
                current = Seen.of(response.text)
                check_next(seen, current)
                reloads += 1
                if reloads == 60:
                    killed = await kill_lease_holder(http, alive, redis_prefix, sid)
                    alive.remove(killed)
                if reloads % 2 == 0:  # pairs of reloads back to back on different nodes, as a CDN may send
                    await asyncio.sleep(0.1)
            assert killed is not None
            assert seen[-1].segments[-1] != seen[0].segments[-1], "the playlist did not move on"
            assert len({s.msn for s in seen}) > 3

            # Upstream load with one surviving node, compared with the poll rate one node makes, while
            # the ingest goes on (a stalled stream is re-asked more often for a few segment durations).
            path = f"/stream/{sid}/source.m3u8"
            before = [fake.requests[path] for fake in fakes]
            await asyncio.sleep(3.0)
            during = [fake.requests[path] - b for fake, b in zip(fakes, before)]
            feeder.cancel()
            assert all(0 < count <= 3.0 / POLL * 1.3 + 2 for count in during), during
    finally:
        for fake in fakes:
            await fake.stop()
        for node in nodes:
            node.stop()


async def kill_lease_holder(http: httpx.AsyncClient, nodes: list[EdgeProcess], prefix: str, sid: str) -> EdgeProcess:
    import redis.asyncio as aioredis

    async with aioredis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
        holder = await client.get(f"{prefix}lease:feed:{sid}")
    assert holder, "no node holds the stream's lease"
    for node in nodes:
        if (await http.get(f"{node.url}/healthz")).json()["node"] == holder:
            os.kill(node.proc.pid, signal.SIGKILL)  # no goodbye: the lease must expire by itself
            node.proc.wait(5)
            return node
    raise AssertionError(f"lease held by {holder}, which is none of the nodes")


async def test_upstream_requests_per_broadcaster_are_the_same_with_one_and_two_nodes(
    tmp_path: Path, redis_prefix: str
) -> None:
    env = node_env(redis_prefix)
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    first = await asyncio.to_thread(start_edge, tmp_path / "n1", env)
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    second: EdgeProcess | None = None
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            sid = (await http.post(f"{first.url}/api/stream", json={"name": "cam"},
                                   headers={"Authorization": f"Bearer {API_KEY}"})).json()["id"]
            await register(http, first, fake, [sid])
            fake.add(sid, "source", 0, 1, 2)
            path = f"/stream/{sid}/source.m3u8"

            async def upstream_rate(urls: list[str]) -> int:
                async def player(url: str) -> None:
                    end = asyncio.get_running_loop().time() + 3.0
                    while asyncio.get_running_loop().time() < end:
                        assert (await http.get(f"{url}{path}")).status_code == 200
                        await asyncio.sleep(0.05)

                await asyncio.gather(*(player(u) for u in urls))  # warm: feeds on every node
                start = fake.requests[path]
                await asyncio.gather(*(player(u) for u in urls for _ in range(5)))
                return fake.requests[path] - start

            one = await upstream_rate([first.url])
            second = await asyncio.to_thread(start_edge, tmp_path / "n2", env)
            two = await upstream_rate([first.url, second.url])
            assert two <= one * 1.3 + 2, (one, two)
    finally:
        await fake.stop()
        first.stop()
        if second is not None:
            second.stop()
