"""An edge app in-process with an injected clock, spoken to over HTTP, and the places the tests use."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edge.app import build_services, create_app
from edge.services import Services
from tests.conftest import ADMIN_TOKEN, BROADCASTER_TOKEN, auth, make_settings
from tests.geo.shared_data import maxmind_city_test_db

T0 = 1_800_000_000.0

# Broadcaster sites (the "Done when") and clients in MaxMind's test database.
FRANKFURT = {"address": "https://fra-1.example.net", "region": "eu", "latitude": 50.11, "longitude": 8.68}
ASHBURN = {"address": "https://ash-1.example.net", "region": "us", "latitude": 39.04, "longitude": -77.49}
SINGAPORE = {"address": "https://sin-1.example.net", "region": "ap", "latitude": 1.35, "longitude": 103.82}
SITES = {"fra": FRANKFURT, "ash": ASHBURN, "sin": SINGAPORE}

LONDON_IP = "81.2.69.142"
SAN_DIEGO_IP = "214.78.120.5"
MELBOURNE_IP = "214.0.1.1"


class Clock:
    """The service's clock, moved by the test: no sleeps for expiry."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Edge:
    client: httpx.AsyncClient
    svc: Services
    clock: Clock

    async def register(self, name: str, body: dict[str, Any], token: str = BROADCASTER_TOKEN) -> httpx.Response:
        return await self.client.put(f"/api/broadcasters/{name}", json=body, headers=auth(token))

    async def register_sites(self) -> None:
        for name, body in SITES.items():
            response = await self.register(name, body)
            assert response.status_code == 201, response.text

    async def choose(self, headers: dict[str, str] | list[tuple[str, str]] | None = None,
                     token: str = BROADCASTER_TOKEN, **params: str) -> httpx.Response:
        merged = httpx.Headers(headers or {})
        merged["Authorization"] = f"Bearer {token}"
        return await self.client.get("/api/broadcaster", headers=merged, params=params)

    async def first(self, headers: dict[str, str] | list[tuple[str, str]] | None = None) -> str:
        response = await self.choose(headers)
        assert response.status_code == 200, response.text
        return response.json()[0]["name"]

    async def names(self) -> list[str]:
        response = await self.choose()
        assert response.status_code == 200, response.text
        return sorted(item["name"] for item in response.json())

    async def listing(self) -> list[dict[str, Any]]:
        response = await self.client.get("/api/broadcasters", headers=auth(ADMIN_TOKEN))
        assert response.status_code == 200, response.text
        return response.json()

    async def listed(self, name: str) -> dict[str, Any]:
        return next(b for b in await self.listing() if b["name"] == name)


@contextlib.asynccontextmanager
async def open_edge(data_dir: Path, peer: str = "127.0.0.1", **overrides: Any) -> AsyncIterator[Edge]:
    """The app over HTTP from `peer`; by default 127.0.0.1 is a trusted proxy and clients are
    located with MaxMind's test database."""
    options: dict[str, Any] = {
        "trusted_proxies": ("127.0.0.1/32",),
        "geoip_database": str(maxmind_city_test_db()),
        **overrides,
    }
    settings = make_settings(data_dir, **options)
    svc = build_services(settings)
    clock = Clock()
    svc.clock = clock
    app = create_app(settings, svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as client:
            yield Edge(client, svc, clock)


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds (a bound, not a wait)."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
