"""`edge serve --workers 2` on the embedded store (SQLite), as a real process: both workers answer,
one of them polls each stream (the upstream load of one worker), a player whose reloads land on
either worker sees every reload rule hold, and killing a worker (SIGKILL) loses no numbering: the
supervisor starts another and the survivor takes the stream over from the stored state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtools.playlist_rules import Seen, check_next
from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, EdgeProcess, start_edge
from tests.fakes import FakeBroadcaster
from tests.multinode.test_multinode import edge_env

def env(workers: int) -> dict[str, str]:
    return {**edge_env(), "EDGE_WORKERS": str(workers)}


def worker_pids(edge: EdgeProcess) -> set[int]:
    """The supervisor's children: its workers."""
    pid = edge.proc.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def nodes_by_pid(edge: EdgeProcess) -> dict[str, int]:
    """Node id -> pid of every worker started so far, from their "edge ready" log lines."""
    found = {}
    for line in edge.log().splitlines():
        if line.startswith("{") and '"edge ready"' in line:
            doc = json.loads(line)
            found[doc["node"]] = doc["pid"]
    return found


class Pinned:
    """One keep-alive connection, so one worker (the kernel keeps a connection on the socket that
    accepted it); `node` is the worker's node id, asked on that same connection."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=5, limits=httpx.Limits(max_connections=1))
        self.node = ""

    async def ask_node(self) -> str:
        self.node = (await self.http.get("/healthz")).json()["node"]
        return self.node


async def one_pinned_client_per_worker(url: str, workers: int) -> dict[str, Pinned]:
    """Open connections until every worker has one (each new connection is hashed to a worker)."""
    pinned: dict[str, Pinned] = {}
    spare: list[Pinned] = []
    for _ in range(200):
        client = Pinned(url)
        node = await client.ask_node()
        if node in pinned:
            spare.append(client)
        else:
            pinned[node] = client
        if len(pinned) == workers:
            break
    for client in spare:
        await client.http.aclose()
    assert len(pinned) == workers, f"{len(pinned)} workers answered over 200 connections"
    return pinned


async def create_stream(http: httpx.AsyncClient) -> str:
    created = await http.post("/api/stream", json={"name": "cam"}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def register(http: httpx.AsyncClient, fake: FakeBroadcaster, streams: list[str]) -> None:
    response = await http.put(
        f"/api/broadcasters/{fake.name}",
        json={"address": fake.url, "region": "eu", "latitude": 50.1, "longitude": 8.7, "streams": streams},
        headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
    )
    assert response.status_code in (200, 201), response.text


def lease_holder(workdir: Path, sid: str) -> str | None:
    with sqlite3.connect(workdir / "data" / "edge.db") as db:
        rows = db.execute("SELECT owner FROM leases WHERE key = ? AND until > ?", (f"feed:{sid}", time.time())).fetchall()
    assert len(rows) <= 1
    return rows[0][0] if rows else None


async def upstream_requests(fake: FakeBroadcaster, path: str, players: list[httpx.AsyncClient], seconds: float) -> int:
    """Upstream requests for `path` while the players reload it as fast as every 50 ms."""
    async def player(http: httpx.AsyncClient) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert (await http.get(path)).status_code == 200
            await asyncio.sleep(0.05)

    start = fake.requests[path]
    await asyncio.gather(*(player(p) for p in players))
    return fake.requests[path] - start


async def test_two_workers_serve_one_numbering_with_one_poller_and_survive_a_killed_worker(tmp_path: Path) -> None:
    fake = FakeBroadcaster("fra-1")
    await fake.start()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    edges: list[EdgeProcess] = []
    clients: list[httpx.AsyncClient] = []
    try:
        # The upstream load of one stream on a single-worker edge: the baseline.
        single = await asyncio.to_thread(start_edge, tmp_path / "one", env(1))
        edges.append(single)
        http = httpx.AsyncClient(base_url=single.url, timeout=5)
        clients.append(http)
        base_sid = await create_stream(http)
        await register(http, fake, [base_sid])
        fake.add(base_sid, "source", 0, 1, 2)
        base_path = f"/stream/{base_sid}/source.m3u8"
        await upstream_requests(fake, base_path, [http], 1.0)  # the feed runs
        one_worker = await upstream_requests(fake, base_path, [http] * 4, 3.0)
        single.stop()

        edge = await asyncio.to_thread(start_edge, tmp_path / "two", env(2))
        edges.append(edge)
        assert len(worker_pids(edge)) == 2
        pinned = await one_pinned_client_per_worker(edge.url, 2)
        clients.extend(p.http for p in pinned.values())
        a, b = pinned.values()

        # What reaches one worker is seen by the other: a stream, a broadcaster's registration.
        sid = await create_stream(a.http)
        assert (await b.http.get(f"/api/stream/{sid}", headers={"Authorization": f"Bearer {API_KEY}"})).status_code == 200
        await register(a.http, fake, [sid])
        listed = await b.http.get("/api/broadcasters", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert [x["name"] for x in listed.json()] == ["fra-1"]

        path = f"/stream/{sid}/source.m3u8"
        fake.add(sid, "source", 0, 1, 2)
        for player in (a, b):  # both workers have a feed, past the poller's first round
            while (await player.http.get(path)).status_code == 404:  # nothing published yet
                await asyncio.sleep(0.05)
        await upstream_requests(fake, path, [a.http, b.http], 1.0)
        two_workers = await upstream_requests(fake, path, [a.http, b.http, a.http, b.http], 3.0)
        assert 0 < two_workers <= one_worker * 1.3 + 2, (one_worker, two_workers)  # one poller, not two
        assert lease_holder(tmp_path / "two", sid) in pinned

        async def ingest() -> None:
            for n in range(3, 200):
                fake.add(sid, "source", n)
                await asyncio.sleep(0.25)

        feeder = asyncio.create_task(ingest())

        # A blocking reload (LL-HLS _HLS_msn) at the worker that does not poll wakes when the
        # poller publishes the segment it waits for.
        follower = next(p for node, p in pinned.items() if node != lease_holder(tmp_path / "two", sid))
        now = Seen.of((await follower.http.get(path)).text)
        wanted = now.msn + len(now.segments)  # the next one, not yet published
        blocked = await follower.http.get(f"{path}?_HLS_msn={wanted}", timeout=15)
        assert blocked.status_code == 200, blocked.text
        answer = Seen.of(blocked.text)
        assert answer.msn + len(answer.segments) > wanted
        assert await follower.ask_node() != lease_holder(tmp_path / "two", sid)  # answered by the follower

        seen: list[Seen] = []
        answered_by: set[str] = set()
        killed = None
        try:
            for reload in range(120):
                player = (a, b)[reload % 2]
                response = await player.http.get(path)
                assert response.status_code == 200, response.text
                if await player.ask_node() in pinned:  # still the worker it was pinned to
                    answered_by.add(player.node)
                current = Seen.of(response.text)
                check_next(seen, current)
                if reload == 60:  # the poller dies without a goodbye; its lease lapses by itself
                    holder = lease_holder(tmp_path / "two", sid)
                    killed = nodes_by_pid(edge)[holder]
                    os.kill(killed, signal.SIGKILL)
                    a = next(p for node, p in pinned.items() if node != holder)
                    b = Pinned(edge.url)  # the dead worker's connection is gone; a new one lands anywhere
                    clients.append(b.http)
                await asyncio.sleep(0.1 if reload % 2 else 0.0)
        finally:
            feeder.cancel()
        assert answered_by == set(pinned), answered_by  # both workers served the one numbering
        assert seen[-1].segments[-1] != seen[0].segments[-1], "the playlist did not move on"

        # The supervisor started another worker in place of the killed one.
        assert killed is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(worker_pids(edge)) != 2 or killed in worker_pids(edge)):
            await asyncio.sleep(0.1)
        assert len(worker_pids(edge)) == 2 and killed not in worker_pids(edge)
        assert lease_holder(tmp_path / "two", sid) is not None

        # SIGTERM stops the supervisor and every worker.
        workers = worker_pids(edge)
        edge.proc.terminate()
        assert edge.proc.wait(30) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        for http in clients:
            await http.aclose()
        await fake.stop()
        for e in edges:
            e.stop()


async def test_a_change_through_one_worker_is_answered_by_every_worker_at_once(tmp_path: Path) -> None:
    """`GET /api/broadcaster` on either worker hands out what was registered, drained or moved
    through the other, at its very next request (each worker holds the registry in memory and
    skips reading it while nothing changed: a change by the other worker must count)."""
    edge = await asyncio.to_thread(start_edge, tmp_path, env(2))
    pinned = await one_pinned_client_per_worker(edge.url, 2)
    a, b = pinned.values()
    api, own = {"Authorization": f"Bearer {API_KEY}"}, {"Authorization": f"Bearer {BROADCASTER_TOKEN}"}

    async def handed_out(client: Pinned) -> list[str]:  # from loopback: not located, ranked by load
        response = await client.http.get("/api/broadcaster", headers=api)
        assert response.status_code == 200, response.text
        return [x["name"] for x in response.json()]

    def registration(port: int, streams: int = 0) -> dict[str, object]:
        return {"address": f"http://127.0.0.1:{port}", "region": "eu", "latitude": 50.1, "longitude": 8.7,
                "capacity": 10, "load": {"activeStreams": streams}}

    try:
        for client in (a, b):  # both have read the (empty) registry
            assert await handed_out(client) == []
        for i in range(3):
            writer, reader = (a, b) if i % 2 == 0 else (b, a)
            put = await writer.http.put(f"/api/broadcasters/n{i}", json=registration(9000 + i), headers=own)
            assert put.status_code == 201, put.text
            assert f"n{i}" in await handed_out(reader)  # at once, on the worker that did not take it
        # Drained through one worker: the other no longer hands it out.
        drained = await a.http.put("/api/broadcasters/n1/state", json={"state": "draining"},
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert drained.status_code == 200, drained.text
        assert sorted(await handed_out(b)) == ["n0", "n2"]
        # A heartbeat through one worker reporting n0 full: the other ranks it last from then on.
        full = await b.http.put("/api/broadcasters/n0", json=registration(9000, streams=10), headers=own)
        assert full.status_code == 200, full.text
        for _ in range(5):
            assert (await handed_out(a))[-1] == "n0"
    finally:
        for client in pinned.values():
            await client.http.aclose()
        edge.stop()


def test_workers_that_cannot_have_the_port_stop_the_start_with_status_3(tmp_path: Path) -> None:
    """Another program listens on the port (without SO_REUSEPORT): the supervisor says so and exits
    3 at once, rather than forking workers that die one after another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
        done = subprocess.run(
            [sys.executable, "-m", "edge", "serve", "--port", str(port), "--workers", "2"],
            cwd=tmp_path, env={**environment, **env(2)}, capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 3, done.stderr
    assert "Address already in use" in done.stderr
