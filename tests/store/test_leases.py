"""The lease contract, in memory (one node) and in Redis (a fleet): one holder at a time, extended by
its holder, passed on once it lapses. Time is the test's own clock in memory; Redis keeps time
itself, so there the deadlines are read back (PTTL) instead of waited for with margins."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.store.leases import Leases, LocalLeases
from edge.store.redis import RedisStore
from edge.store.sqlite import SqliteStore

from .conftest import MakeRedisStore


async def test_one_owner_at_a_time_until_released(leases: Leases) -> None:
    assert await leases.holder("s1") is None
    assert await leases.acquire("s1", "node-a", 10) is True
    assert await leases.acquire("s1", "node-b", 10) is False
    assert await leases.holder("s1") == "node-a"
    assert await leases.acquire("s2", "node-b", 10) is True  # another stream, another lease

    await leases.release("s1", "node-b")  # not the holder: nothing happens
    assert await leases.holder("s1") == "node-a"
    await leases.release("s1", "node-a")
    assert await leases.holder("s1") is None
    assert await leases.acquire("s1", "node-b", 10) is True
    await leases.release("never-held", "node-a")


async def test_local_leases_are_extended_by_their_holder_and_pass_on_once_lapsed() -> None:
    now = [100.0]
    leases = LocalLeases(clock=lambda: now[0])
    assert await leases.acquire("k", "a", 5)
    now[0] = 104.0
    assert await leases.acquire("k", "a", 5)  # extended: until 109
    now[0] = 108.9
    assert await leases.acquire("k", "b", 5) is False  # would have lapsed at 105 unextended
    assert await leases.holder("k") == "a"
    now[0] = 109.0  # at the deadline it has lapsed, as a Redis PX key does
    assert await leases.holder("k") is None
    assert await leases.acquire("k", "b", 5)
    assert await leases.holder("k") == "b"


async def pttl(store: RedisStore, key: str) -> int:
    return await store.db.client.pttl(store.db.key("lease", key))


async def test_redis_leases_are_extended_by_their_holder_and_pass_on_once_lapsed(
    make_redis_store: MakeRedisStore,
) -> None:
    store = await make_redis_store()
    leases = store.leases
    assert await leases.acquire("k", "a", 1)
    assert 0 < await pttl(store, "k") <= 1000
    assert await leases.acquire("k", "a", 60)  # extended: its deadline moved to a minute from now
    assert 1000 < await pttl(store, "k") <= 60_000
    assert await leases.acquire("k", "b", 60) is False
    assert await leases.acquire("short", "a", 0.001)  # 1 ms
    await asyncio.sleep(0.05)  # waiting longer never breaks this: it can only have lapsed
    assert await leases.holder("short") is None
    assert await leases.acquire("short", "b", 60)
    assert await leases.holder("short") == "b"


async def test_sqlite_leases_hold_between_the_workers_sharing_a_file(tmp_path: Path) -> None:
    """Two workers' stores on one file (two connections, as two processes have): one holder at a
    time, extended by it, passed on at its deadline, on the leases' injected clock."""
    now = [1_700_000_000.0]
    workers = [SqliteStore(tmp_path / "edge.db", shared=True, lease_clock=lambda: now[0]) for _ in range(2)]
    for worker in workers:
        await worker.open()
    a, b = (worker.leases for worker in workers)
    try:
        assert await a.acquire("k", "a", 5)
        assert await b.acquire("k", "b", 5) is False
        assert await b.holder("k") == "a"
        now[0] += 4
        assert await a.acquire("k", "a", 5)  # extended: until +9
        now[0] += 4.9
        assert await b.acquire("k", "b", 5) is False
        now[0] += 0.1  # at the deadline it has lapsed
        assert await a.holder("k") is None
        assert await b.acquire("k", "b", 5)
        await a.release("k", "a")  # no longer a's: nothing happens
        assert await a.holder("k") == "b"
        await b.release("k", "b")
        assert await a.acquire("k", "a", 5)
    finally:
        for worker in workers:
            await worker.close()


async def test_membership_counts_announced_members_until_they_leave(leases: Leases) -> None:
    assert await leases.announce("g", "a", 60) == {"a"}
    assert await leases.announce("g", "b", 60) == {"a", "b"}
    assert await leases.announce("other", "c", 60) == {"c"}  # groups are apart
    assert await leases.announce("g", "a", 60) == {"a", "b"}  # announcing again: still once
    await leases.leave("g", "a")
    assert await leases.announce("g", "b", 60) == {"b"}
    await leases.leave("g", "never-there")


async def test_a_member_silent_past_its_ttl_is_no_longer_counted(leases: Leases) -> None:
    assert await leases.announce("g", "short", 0.001) == {"short"}  # 1 ms
    await asyncio.sleep(0.05)  # waiting longer never breaks this: it can only have lapsed
    assert await leases.announce("g", "b", 60) == {"b"}
