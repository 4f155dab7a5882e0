"""A real edge on a Redis the test owns: while Redis is down, players and ingests are still answered,
writes fail with a clear 503, and the node recovers by itself when Redis returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import API_KEY, BROADCASTER_TOKEN, start_edge
from tests.processes import OwnRedis
from tests.fakes import FakeBroadcaster
from tests.multinode.test_multinode import node_env, register


async def eventually(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not recovered in time")
        await asyncio.sleep(0.2)


async def test_the_node_keeps_answering_through_a_redis_outage_and_recovers(tmp_path: Path, own_redis: OwnRedis) -> None:
    env = {**node_env("edge:"), "EDGE_STORE": own_redis.url}
    (tmp_path / "node").mkdir()
    edge = await asyncio.to_thread(start_edge, tmp_path / "node", env)
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    api = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            sid = (await http.post(f"{edge.url}/api/stream", json={"name": "cam"}, headers=api)).json()["id"]
            await register(http, edge, fake, [sid])
            fake.add(sid, "source", 0, 1, 2)
            playlist = await http.get(f"{edge.url}/stream/{sid}/source.m3u8")
            assert playlist.status_code == 200
            chosen = await http.get(f"{edge.url}/api/broadcaster", headers=api)
            assert [b["address"] for b in chosen.json()] == [fake.url]

            own_redis.stop()
            during = await http.get(f"{edge.url}/stream/{sid}/source.m3u8")
            assert during.status_code == 200 and during.text == playlist.text
            still = await http.get(f"{edge.url}/api/broadcaster", headers=api)
            assert still.status_code == 200 and [b["address"] for b in still.json()] == [fake.url]
            refused = await http.post(f"{edge.url}/api/stream", json={"name": "x"}, headers=api)
            assert refused.status_code == 503 and refused.json()["errors"][0].startswith("store:")
            heartbeat = await http.put(f"{edge.url}/api/broadcasters/fra-1", json={"address": fake.url},
                                       headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"})
            assert heartbeat.status_code == 503
            assert (await http.get(f"{edge.url}/readyz")).status_code == 503
            assert edge.proc.poll() is None

            own_redis.start()

            async def writes_again() -> bool:
                return (await http.post(f"{edge.url}/api/stream", json={"name": "y"}, headers=api)).status_code == 201

            await eventually(writes_again)
            assert (await http.get(f"{edge.url}/readyz")).status_code == 200
            assert (await http.get(f"{edge.url}/api/stream/{sid}", headers=api)).status_code == 200  # persisted
            fake.add(sid, "source", 3)

            async def playlist_moves_on() -> bool:
                answer = await http.get(f"{edge.url}/stream/{sid}/source.m3u8")
                return answer.status_code == 200 and "/3.ts" in answer.text

            await eventually(playlist_moves_on)
    finally:
        await fake.stop()
        edge.stop()
    assert "Traceback" not in edge.log()  # an outage is logged as a warning, not as a crash


async def test_during_an_outage_only_the_node_that_was_publishing_answers_players(tmp_path: Path, own_redis: OwnRedis) -> None:
    """With the store down nobody can publish, so the lease holder's playlist is the newest; another
    node may be a version behind it, and answering that would take a player alternating between
    the nodes back: it says 503, try again, until the store returns."""
    env = {**node_env("edge:"), "EDGE_STORE": own_redis.url}
    for name in ("n1", "n2"):
        (tmp_path / name).mkdir()
    nodes = list(await asyncio.gather(
        asyncio.to_thread(start_edge, tmp_path / "n1", env), asyncio.to_thread(start_edge, tmp_path / "n2", env),
    ))
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            sid = (await http.post(f"{nodes[0].url}/api/stream", json={"name": "cam"},
                                   headers={"Authorization": f"Bearer {API_KEY}"})).json()["id"]
            await register(http, nodes[0], fake, [sid])
            fake.add(sid, "source", 0, 1, 2)
            path = f"/stream/{sid}/source.m3u8"

            async def both_serve() -> bool:
                answers = [await http.get(f"{n.url}{path}") for n in nodes]
                return all(a.status_code == 200 and "/2.ts" in a.text for a in answers)

            await eventually(both_serve)
            holder = await lease_holder(own_redis, sid)
            by_node = {(await http.get(f"{n.url}/healthz")).json()["node"]: n for n in nodes}
            leader, follower = by_node[holder], next(n for n in nodes if n is not by_node[holder])
            own_redis.stop()
            await asyncio.sleep(3.0)  # past the lease TTL: neither node can renew anything
            assert (await http.get(f"{leader.url}{path}")).status_code == 200
            refused = await http.get(f"{follower.url}{path}")
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert refused.headers["Cache-Control"] == "no-store" and "unreachable" in refused.text
            own_redis.start()
            await eventually(both_serve)
    finally:
        await fake.stop()
        for node in nodes:
            node.stop()


async def lease_holder(own_redis: OwnRedis, sid: str) -> str:
    """The node id holding the stream's lease (read from the test's own Redis)."""
    import redis.asyncio as aioredis

    async with aioredis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        holder = await client.get(f"edge:lease:feed:{sid}")
    assert holder, "no node holds the stream's lease"
    return holder
