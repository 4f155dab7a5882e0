"""A real `edge serve` with known credentials, and reference broadcasters on loopback around it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.broadcaster import ReferenceBroadcaster
from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, LOOPBACK_FLEET_ENV, EdgeProcess, auth, start_edge

CREDENTIALS = {
    **LOOPBACK_FLEET_ENV,
    "EDGE_API_KEYS": API_KEY,
    "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN,
    "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
    "EDGE_ACCESS_LOG": "false",
}

MakeBroadcaster = Callable[..., Awaitable[ReferenceBroadcaster]]


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeProcess]:
    process = start_edge(tmp_path, env=CREDENTIALS)
    yield process
    process.stop()


@pytest.fixture
async def make_broadcaster(edge: EdgeProcess) -> AsyncIterator[MakeBroadcaster]:
    """Start reference broadcasters registered with `edge`; whatever is still running at the end dies."""
    started: list[ReferenceBroadcaster] = []

    async def make(name: str, **kwargs: Any) -> ReferenceBroadcaster:
        options: dict[str, Any] = {"region": "eu", "latitude": 50.1, "longitude": 8.7, "heartbeat_interval": 0.5}
        options.update(kwargs)
        broadcaster = ReferenceBroadcaster(name, edge.url, BROADCASTER_TOKEN, **options)
        await broadcaster.start()
        started.append(broadcaster)
        return broadcaster

    yield make
    for broadcaster in started:
        await broadcaster.die()


async def create_stream(edge: EdgeProcess, presets: list[str]) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{edge.url}/api/stream", json={"name": "t", "presets": presets}, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def admin_broadcasters(edge: EdgeProcess) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{edge.url}/api/broadcasters", headers=auth(ADMIN_TOKEN))
    assert response.status_code == 200, response.text
    return {b["name"]: b for b in response.json()}
