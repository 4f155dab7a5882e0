"""Shared fixtures: the app in-process over HTTP (httpx), and a real `edge serve` on a loopback port."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import httpx
import pytest

from devtools.processes import EdgeProcess, free_port, start_edge  # EdgeProcess, free_port: for the tests
from edge.app import create_app
from edge.settings import Settings
from tests.processes import OwnRedis

API_KEY = "test-api-key"
ADMIN_TOKEN = "test-admin-token"
BROADCASTER_TOKEN = "test-broadcaster-token"

# The tests' broadcasters run on this machine, and most tests speak for them with the shared token:
# both are opt-ins of the operator, made explicitly here (a fresh install allows neither).
LOOPBACK = ("127.0.0.0/8", "::1/128")
LOOPBACK_FLEET_ENV = {"EDGE_BROADCASTER_NETWORKS": ",".join(LOOPBACK), "EDGE_SHARED_BROADCASTER_TOKEN": "true"}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    base = dict(
        data_dir=str(data_dir),
        api_keys=(API_KEY,),
        admin_tokens=(ADMIN_TOKEN,),
        broadcaster_tokens=(BROADCASTER_TOKEN,),
        shared_broadcaster_token=True,
        broadcaster_networks=LOOPBACK,
        access_log=False,
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app, lifespan included, spoken to over HTTP in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
            yield http


def auth(token: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def edge_server(tmp_path: Path) -> Iterator[EdgeProcess]:
    edge = start_edge(tmp_path)
    yield edge
    edge.stop()
