"""Lease changes are counted where operators see them: a node frozen past the lease TTL (SIGSTOP,
as a long pause or a stalled VM would) loses the stream's lease to the other node, and each node's
/metrics says so (edge_stream_lease_changes_total{change}).

Which node polls the stream is the fleet's choice (its rendezvous owner, edge.fleet), so the test
finds the holder in the store instead of assuming one, and counts changes from a settled baseline:
a hand-over while the two nodes first learn of each other is a lease change too."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from tests.conftest import EdgeProcess
from tests.deploy.tools import value
from tests.fakes import FakeBroadcaster
from tests.multinode.test_redis_outage import eventually
from tests.multinode.test_multinode import create_stream, node_env, redis_prefix, register, start_nodes  # noqa: F401
from tests.store.conftest import REDIS_URL


async def changes(http: httpx.AsyncClient, url: str) -> tuple[float, float]:
    scrape = (await http.get(f"{url}/metrics")).text
    return (value(scrape, "edge_stream_lease_changes_total", change="acquired"),
            value(scrape, "edge_stream_lease_changes_total", change="lost"))


async def lease_holder(prefix: str, sid: str) -> str | None:
    async with aioredis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
        return await client.get(f"{prefix}lease:feed:{sid}")


async def test_a_node_frozen_past_its_lease_counts_it_lost_and_the_other_acquired(tmp_path: Path, redis_prefix: str) -> None:
    nodes = await start_nodes(tmp_path, node_env(redis_prefix))
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            named = {(await http.get(f"{n.url}/healthz")).json()["node"]: n for n in nodes}
            sid = await create_stream(http, nodes[0])
            await register(http, nodes[0], fake, [sid])
            fake.add(sid, "source", 0, 1, 2)

            async def both_serve() -> bool:  # a player on each node: both have a feed for the stream
                answers = [await http.get(f"{n.url}/stream/{sid}/source.m3u8") for n in nodes]
                return all(a.status_code == 200 for a in answers)

            await eventually(both_serve)
            held: list[EdgeProcess] = []

            async def one_holds() -> bool:
                name = await lease_holder(redis_prefix, sid)
                held[:] = [named[name]] if name in named else []
                return bool(held)

            await eventually(one_holds)
            holder = held[0]
            other = next(n for n in nodes if n is not holder)
            holder_before, other_before = await changes(http, holder.url), await changes(http, other.url)
            assert holder_before[0] >= 1  # the holder counted taking it

            os.kill(holder.proc.pid, signal.SIGSTOP)
            try:
                async def other_took_over() -> bool:
                    await http.get(f"{other.url}/stream/{sid}/source.m3u8")  # its player keeps the feed going
                    return (await changes(http, other.url))[0] == other_before[0] + 1

                await eventually(other_took_over)
                assert await lease_holder(redis_prefix, sid) == next(k for k, n in named.items() if n is other)
            finally:
                os.kill(holder.proc.pid, signal.SIGCONT)

            async def holder_counted_it_lost() -> bool:
                return (await changes(http, holder.url))[1] >= holder_before[1] + 1

            await eventually(holder_counted_it_lost)
    finally:
        await fake.stop()
        for node in nodes:
            node.stop()
