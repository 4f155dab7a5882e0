"""A real edge on a Redis the test owns: while Redis is down, players and ingests are still answered,
writes fail with a clear 503, and the node recovers by itself when Redis returns."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import API_KEY, BROADCASTER_TOKEN, free_port, start_edge
from tests.fakes import FakeBroadcaster
from tests.multinode.test_multinode import node_env, register


class OwnRedis:
    """A redis-server of the test's own, with append-only persistence, so a restart keeps the data."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("no redis-server binary to run a Redis of the test's own")
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with __import__("socket").create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


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
