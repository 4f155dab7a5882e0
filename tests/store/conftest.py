"""Stores to test against: SQLite in a temporary directory, Redis under a key prefix of the test's
own (EDGE_TEST_REDIS_URL, default the local server), deleted afterwards, and for the registry the
in-memory one too. Where no Redis answers, the Redis cases are skipped, saying so."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
import redis
import redis.asyncio as aioredis

from broadcaster_registry.liveness import DEFAULT_LIVENESS, LivenessPolicy
from broadcaster_registry.storage import CARRIER_HINT_TTL_S, MemoryRegistryStore, RegistryStore
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


@pytest.fixture(params=["sqlite", "sqlite-shared", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[SqliteStore | RedisStore]:
    """Each backend in turn, for the contract tests: both must behave the same (SQLite alone on its
    file, and shared by worker processes)."""
    if request.param.startswith("sqlite"):
        sqlite = SqliteStore(tmp_path / "edge.db", shared=request.param == "sqlite-shared")
        await sqlite.open()
        yield sqlite
        await sqlite.close()
    else:
        require_redis()
        async with redis_nodes(redis_prefix) as make:
            yield await make()


@pytest.fixture(params=["local", "sqlite", "redis"])
async def leases(request: pytest.FixtureRequest, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Leases]:
    if request.param == "local":
        yield LocalLeases()
    elif request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "edge.db", shared=True)
        await sqlite.open()
        yield sqlite.leases
        await sqlite.close()
    else:
        require_redis()
        async with redis_nodes(redis_prefix) as make:
            yield (await make()).leases


START = 1_700_000_000.0


class Clock:
    """The registry's time in a contract test. The in-process backends run on it, so moving it is
    instant and exact; Redis keeps time itself, so there it follows real time and moving it waits
    (only ever asserted after waiting at least as long: never a margin that load can break)."""

    def __init__(self, real: bool) -> None:
        self.real = real
        self._now = START
        self._started = time.monotonic()

    def __call__(self) -> float:
        return START + (time.monotonic() - self._started) if self.real else self._now

    async def advance(self, seconds: float) -> None:
        if self.real:
            await asyncio.sleep(seconds)
        else:
            self._now += seconds


@dataclass
class RegistryBackend:
    """One registry backend for the contract suite: `make` opens a registry with the given time
    rules, running on `clock`."""

    name: str
    clock: Clock
    make: Callable[..., Awaitable[RegistryStore]]


class Alternating:
    """Two workers' registries on one SQLite file, called in turn: every call goes to the other
    worker than the one before, so each contract case checks that a change made through one worker
    is what the next call, through the other, sees."""

    def __init__(self, *registries: RegistryStore) -> None:
        self._registries = itertools.cycle(registries)

    def __getattr__(self, name: str) -> object:
        return getattr(next(self._registries), name)


@pytest.fixture(params=["memory", "sqlite", "sqlite-workers", "redis"])
async def registry_backend(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[RegistryBackend]:
    clock = Clock(real=request.param == "redis")
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "redis":
            require_redis()
            make_redis = await stack.enter_async_context(redis_nodes(redis_prefix))

        async def make(
            liveness: LivenessPolicy = DEFAULT_LIVENESS, hint_ttl_s: float = CARRIER_HINT_TTL_S
        ) -> RegistryStore:
            if request.param == "memory":
                return MemoryRegistryStore(liveness=liveness, hint_ttl_s=hint_ttl_s, clock=clock)
            if request.param.startswith("sqlite"):
                path = tmp_path / f"edge-{uuid.uuid4().hex}.db"
                workers = []
                for _ in range(2 if request.param == "sqlite-workers" else 1):
                    sqlite = SqliteStore(path, liveness=liveness, hint_ttl_s=hint_ttl_s, clock=clock,
                                         shared=request.param == "sqlite-workers")
                    await sqlite.open()
                    stack.push_async_callback(sqlite.close)
                    workers.append(sqlite.registry)
                return workers[0] if len(workers) == 1 else Alternating(*workers)  # type: ignore[return-value]
            return (await make_redis(liveness=liveness, hint_ttl_s=hint_ttl_s)).registry

        yield RegistryBackend(request.param, clock, make)


@pytest.fixture
async def registry(registry_backend: RegistryBackend) -> RegistryStore:
    """Each registry backend in turn, with the default time rules."""
    return await registry_backend.make()
