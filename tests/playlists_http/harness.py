"""An edge app in-process with fake broadcasters on loopback, registered in its real store."""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

import httpx
import m3u8

from broadcaster_registry.model import Registration
from edge.app import build_services, create_app
from edge.services import Services
from tests.conftest import auth, make_settings
from tests.fakes import FakeBroadcaster

FAST = dict(poll_interval=0.05, discovery_interval=0.2, hole_wait=0.6, rendition_wait=0.6, upstream_timeout=0.5,
            idle_timeout=60.0)


@dataclass
class Edge:
    client: httpx.AsyncClient
    svc: Services
    fakes: dict[str, FakeBroadcaster] = field(default_factory=dict)

    async def add_broadcaster(self, name: str, port: int = 0, **kwargs: object) -> FakeBroadcaster:
        fake = FakeBroadcaster(name, **kwargs)  # type: ignore[arg-type]
        await fake.start(port)
        self.fakes[name] = fake
        await self.svc.store.registry.upsert(name, Registration(address=fake.url), self.svc.clock())
        return fake

    async def create_stream(self, **body: object) -> dict:
        response = await self.client.post("/api/stream", json={"name": "cam", **body}, headers=auth())
        assert response.status_code == 201, response.text
        return response.json()

    async def playlist(self, stream_id: str, rendition: str = "source") -> httpx.Response:
        return await self.client.get(f"/stream/{stream_id}/{rendition}.m3u8")

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if inspect.isawaitable(result):  # a coroutine function, or a lambda returning a coroutine
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout} s")


def parse(response: httpx.Response) -> m3u8.M3U8:
    assert response.status_code == 200, response.text
    return m3u8.loads(response.text)


async def open_edge(tmp_path: Path, **overrides: object) -> AsyncIterator[Edge]:
    settings = make_settings(tmp_path / "data", **{**FAST, **overrides})
    svc = build_services(settings)
    app = create_app(settings, svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as client:
            edge = Edge(client, svc)
            try:
                yield edge
            finally:
                for fake in edge.fakes.values():
                    await fake.stop()


async def serve_on_loopback(edge: Edge) -> AsyncIterator[str]:
    """The same app on a real uvicorn server on a loopback port, for clients that are not Python."""
    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    app = edge.client._transport.app  # type: ignore[attr-defined]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
