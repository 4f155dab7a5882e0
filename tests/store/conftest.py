"""Stores to test against: SQLite in a temporary directory, and Redis under a key prefix of the
test's own (EDGE_TEST_REDIS_URL, default the local server), deleted afterwards. Where no Redis
answers, the Redis cases are skipped, saying so."""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
import redis
import redis.asyncio as aioredis

from edge.store.leases import Leases, LocalLeases
from edge.store.redis import RedisStore, redact_url
from edge.store.sqlite import SqliteStore

REDIS_URL = os.environ.get("EDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

MakeRedisStore = Callable[..., Awaitable[RedisStore]]


@functools.cache
def _redis_problem(url: str) -> str | None:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_redis(url: str = REDIS_URL) -> None:
    problem = _redis_problem(url)
    if problem is not None:
        pytest.skip(f"no Redis at {redact_url(url)} ({problem})")


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys under `prefix`, and nothing else."""
    async with aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for first in range(0, len(keys), 500):
            await client.delete(*keys[first:first + 500])


@pytest.fixture
def redis_prefix() -> str:
    return f"test-edge:{uuid.uuid4().hex}:"


@contextlib.asynccontextmanager
async def redis_nodes(prefix: str, url: str = REDIS_URL) -> AsyncIterator[MakeRedisStore]:
    """Opened RedisStores sharing `prefix` (several of them: several edge nodes); on exit they are
    closed and the keys under `prefix` deleted."""
    stores: list[RedisStore] = []

    async def make(**options: object) -> RedisStore:
        store = RedisStore(url, prefix, **options)  # type: ignore[arg-type]
        await store.open()
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for store in stores:
            await store.close()
        await delete_prefix(url, prefix)


@pytest.fixture
async def make_redis_store(redis_prefix: str) -> AsyncIterator[MakeRedisStore]:
    require_redis()
    async with redis_nodes(redis_prefix) as make:
        yield make


@pytest.fixture(params=["sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[SqliteStore | RedisStore]:
    """Each backend in turn, for the contract tests: both must behave the same."""
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "edge.db")
        await sqlite.open()
        yield sqlite
        await sqlite.close()
    else:
        require_redis()
        async with redis_nodes(redis_prefix) as make:
            yield await make()


@pytest.fixture(params=["local", "redis"])
async def leases(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Leases]:
    if request.param == "local":
        yield LocalLeases()
    else:
        require_redis()
        async with redis_nodes(redis_prefix) as make:
            yield (await make()).leases
