"""Stream health from two edge processes on one Redis: both name the same lease holder and serve the
same window; each answers with its own timeline, listing times from the node that polled. With Redis
down, a node still answers with what it holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from broadcaster_registry.model import Registration
from tests.conftest import ADMIN_TOKEN, auth
from tests.fakes import FakeBroadcaster
from tests.playlists_http.harness import open_edge
from tests.processes import OwnRedis
from tests.multinode.test_multinode import create_stream, node_env, redis_prefix, register, start_nodes

__all__ = ["redis_prefix"]  # the fixture, used by name


async def test_both_nodes_report_the_same_window_and_lease_holder(tmp_path: Path, redis_prefix: str) -> None:
    nodes = await start_nodes(tmp_path, node_env(redis_prefix))
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            sid = await create_stream(http, nodes[0])
            await register(http, nodes[0], fake, [sid])
            ids = [(await http.get(f"{n.url}/healthz")).json()["node"] for n in nodes]
            for number in range(8):
                fake.add(sid, "source", number)
                for node in nodes:  # a player on each node: both watch the stream
                    await http.get(f"{node.url}/stream/{sid}/source.m3u8")
                await asyncio.sleep(0.3)
            fake.add(sid, "source", 8)
            await asyncio.sleep(1.0)  # both nodes have adopted 8
            answers = [(await http.get(f"{n.url}/api/stream/{sid}/health", headers=admin)).json() for n in nodes]
            assert [a["node"] for a in answers] == ids
            holder = answers[0]["leaseHolder"]
            assert holder in ids and answers[1]["leaseHolder"] == holder
            assert [a["leaseHeldHere"] for a in answers] == [i == holder for i in ids]
            windows = [[(s["msn"], s["number"], s["broadcaster"]) for s in a["renditions"][0]["window"]] for a in answers]
            assert windows[0] == windows[1] and windows[0][-1][1] == 8
            for answer in answers:
                timeline = answer["renditions"][0]["timeline"]
                assert answer["watched"] and timeline and timeline[-1]["number"] == 8
                assert all(s["lagSeconds"] >= 0 for s in timeline if s["lagSeconds"] is not None)
            # Listing times come from the node that read the broadcasters' lists when 8 was
            # published (the fleet may hand the lease over meanwhile: which node is not fixed).
            assert any(a["renditions"][0]["timeline"][-1]["listedAt"] is not None for a in answers)
    finally:
        await fake.stop()
        for node in nodes:
            node.stop()


async def test_health_answers_from_what_the_node_holds_while_redis_is_down(tmp_path: Path, own_redis: OwnRedis) -> None:
    async for edge in open_edge(tmp_path, store=own_redis.url):
        sid = (await edge.create_stream())["id"]
        fake = await edge.add_broadcaster("fra-1")
        await edge.svc.store.registry.upsert("fra-1", Registration(address=fake.url, streams=frozenset({sid})),
                                             edge.svc.clock())
        fake.add(sid, "source", 0, 1, 2)
        assert (await edge.playlist(sid)).status_code == 200
        own_redis.stop()
        response = await edge.client.get(f"/api/stream/{sid}/health", headers=auth(ADMIN_TOKEN))
        assert response.status_code == 200, response.text
        health = response.json()
        assert [s["number"] for s in health["renditions"][0]["window"]] == [0, 1, 2]
        assert health["leaseHolder"] is None  # cannot be read: not guessed
