"""A takeover without a seam: two edge processes on one Redis, broadcasters that report no streams
(as go-livepeer behind a plain ingest: only discovery finds a new carrier), a player alternating
between the nodes, and the lease holder SIGKILLed just as the ingest moves to a broadcaster nobody
has asked yet. Every segment a carrier listed is published, in order, in every rendition, and the
playlist never stalls longer than the lease TTL plus a poll (and a fetch)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from devtools.playlist_rules import Seen, check_one, check_reload, ingest_number
from tests.conftest import API_KEY, BROADCASTER_TOKEN, EdgeProcess, start_edge
from tests.fakes import FakeBroadcaster
from tests.multinode.test_multinode import kill_lease_holder, node_env, redis_prefix  # noqa: F401 (fixture)

SEGMENT_S = 0.5
POLL_S = 0.2
LEASE_TTL_S = 1.0
RENDITIONS = ("source", "P144p30fps16x9")


async def test_the_lease_holder_dies_as_the_ingest_moves_to_an_undiscovered_broadcaster(
    tmp_path: Path, redis_prefix: str
) -> None:
    env = {**node_env(redis_prefix), "EDGE_DISCOVERY_INTERVAL": "30", "EDGE_TARGET_DURATION": "1"}
    for name in ("n1", "n2"):
        (tmp_path / name).mkdir()
    nodes: list[EdgeProcess] = list(await asyncio.gather(
        asyncio.to_thread(start_edge, tmp_path / "n1", env), asyncio.to_thread(start_edge, tmp_path / "n2", env),
    ))
    fakes = [FakeBroadcaster(f"b{i}", segment_duration=SEGMENT_S) for i in range(5)]
    for fake in fakes:
        await fake.start()
    listed_at: dict[int, float] = {}  # ingest number -> when a carrier first listed it
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            sid = (await http.post(f"{nodes[0].url}/api/stream", json={"name": "cam", "presets": ["P144p30fps16x9"]},
                                   headers={"Authorization": f"Bearer {API_KEY}"})).json()["id"]
            for fake in fakes:  # no "streams": nobody tells the edge who carries what
                response = await http.put(
                    f"{nodes[0].url}/api/broadcasters/{fake.name}", json={"address": fake.url},
                    headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
                )
                assert response.status_code in (200, 201), response.text
            moved = asyncio.Event()
            carrier = [0]

            async def ingest() -> None:
                for n in range(400):
                    if n and n % 6 == 0:
                        carrier[0] += 1
                        if carrier[0] == 3:
                            moved.set()  # b3 has never carried the stream: only discovery finds it
                    fake = fakes[carrier[0] % len(fakes)]
                    for rendition in RENDITIONS:
                        fake.add(sid, rendition, n)
                    listed_at.setdefault(n, time.monotonic())
                    await asyncio.sleep(SEGMENT_S)

            feeder = asyncio.create_task(ingest())
            seen: dict[str, list[tuple[float, Seen]]] = {r: [] for r in RENDITIONS}
            alive = list(nodes)
            killed_at: float | None = None
            turn = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for rendition in RENDITIONS:
                    node = alive[turn % len(alive)]
                    turn += 1
                    response = await http.get(f"{node.url}/stream/{sid}/{rendition}.m3u8")
                    if response.status_code == 404 and not seen[rendition]:
                        continue
                    assert response.status_code == 200, (node.url, response.text)
                    current = Seen.of(response.text)
                    check_one(current)
                    if seen[rendition]:
                        check_reload(seen[rendition][-1][1], current)
                    seen[rendition].append((time.monotonic(), current))
                if moved.is_set() and killed_at is None:
                    killed = await kill_lease_holder(http, alive, redis_prefix, sid)
                    killed_at = time.monotonic()
                    alive.remove(killed)
                if killed_at is not None and time.monotonic() - killed_at > 8:
                    break
                await asyncio.sleep(0.1)
            feeder.cancel()
            assert killed_at is not None, "the ingest never reached the undiscovered broadcaster"

            # No segment a carrier listed is skipped, in any rendition; renditions agree.
            for rendition, history in seen.items():
                numbers: list[int] = []
                for _, playlist in history:
                    for uri, _, _ in playlist.segments:
                        n = ingest_number(uri)
                        if n is not None and (not numbers or n > numbers[-1]):
                            numbers.append(n)
                assert numbers == list(range(numbers[0], numbers[-1] + 1)), f"{rendition}: skipped {sorted(set(range(numbers[0], numbers[-1])) - set(numbers))}"
                assert numbers[-1] > max(n for n in listed_at if listed_at[n] <= killed_at), "no progress after the kill"
            # No stall beyond the lease TTL plus a poll (plus one fetch and a reload's own pace).
            first_seen: dict[int, float] = {}
            for at, playlist in seen["source"]:
                for uri, _, _ in playlist.segments:
                    n = ingest_number(uri)
                    if n is not None:
                        first_seen.setdefault(n, at)
            delays = {n: first_seen[n] - listed_at[n] for n in first_seen if n in listed_at and listed_at[n] > killed_at - 2}
            worst = max(delays.values())
            assert worst <= LEASE_TTL_S + POLL_S + 1.0, (worst, delays)
    finally:
        for fake in fakes:
            await fake.stop()
        for node in nodes:
            node.stop()
