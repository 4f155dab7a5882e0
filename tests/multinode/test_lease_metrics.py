"""Lease changes are counted where operators see them: a node frozen past the lease TTL (SIGSTOP,
as a long pause or a stalled VM would) loses the stream's lease to the other node, and each node's
/metrics says so (edge_stream_lease_changes_total{change})."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from tests.deploy.tools import value
from tests.fakes import FakeBroadcaster
from tests.multinode.test_redis_outage import eventually
from tests.multinode.test_multinode import create_stream, node_env, redis_prefix, register, start_nodes  # noqa: F401


async def changes(http: httpx.AsyncClient, url: str) -> tuple[float, float]:
    scrape = (await http.get(f"{url}/metrics")).text
    return (value(scrape, "edge_stream_lease_changes_total", change="acquired"),
            value(scrape, "edge_stream_lease_changes_total", change="lost"))


async def test_a_node_frozen_past_its_lease_counts_it_lost_and_the_other_acquired(tmp_path: Path, redis_prefix: str) -> None:
    first, second = await start_nodes(tmp_path, node_env(redis_prefix))
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            sid = await create_stream(http, first)
            await register(http, first, fake, [sid])
            fake.add(sid, "source", 0, 1, 2)
            assert (await http.get(f"{first.url}/stream/{sid}/source.m3u8")).status_code == 200

            async def first_holds() -> bool:
                return await changes(http, first.url) == (1, 0)

            await eventually(first_holds)
            assert (await http.get(f"{second.url}/stream/{sid}/source.m3u8")).status_code == 200
            assert await changes(http, second.url) == (0, 0)  # it follows the holder

            os.kill(first.proc.pid, signal.SIGSTOP)
            try:
                async def second_took_over() -> bool:
                    await http.get(f"{second.url}/stream/{sid}/source.m3u8")  # its player keeps the feed going
                    return await changes(http, second.url) == (1, 0)

                await eventually(second_took_over)
            finally:
                os.kill(first.proc.pid, signal.SIGCONT)

            async def first_lost() -> bool:
                return await changes(http, first.url) == (1, 1)

            await eventually(first_lost)
    finally:
        await fake.stop()
        for node in (first, second):
            node.stop()
