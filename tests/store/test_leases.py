"""The lease contract, in memory (one node) and in Redis (a fleet): one holder at a time."""

from __future__ import annotations

import asyncio

from edge.store.leases import Leases, LocalLeases


async def test_one_owner_at_a_time_until_released(leases: Leases) -> None:
    assert await leases.holder("s1/source") is None
    assert await leases.acquire("s1/source", "node-a", 10) is True
    assert await leases.acquire("s1/source", "node-b", 10) is False
    assert await leases.holder("s1/source") == "node-a"
    assert await leases.acquire("s1/720p", "node-b", 10) is True  # another key, another lease

    await leases.release("s1/source", "node-b")  # not the holder: nothing happens
    assert await leases.holder("s1/source") == "node-a"
    await leases.release("s1/source", "node-a")
    assert await leases.holder("s1/source") is None
    assert await leases.acquire("s1/source", "node-b", 10) is True
    await leases.release("never-held", "node-a")


async def test_the_holder_extends_and_a_lapsed_lease_passes_on(leases: Leases) -> None:
    assert await leases.acquire("k", "node-a", 0.3) is True
    await asyncio.sleep(0.2)
    assert await leases.acquire("k", "node-a", 0.3) is True  # extended: 0.3 s from now
    await asyncio.sleep(0.2)
    assert await leases.acquire("k", "node-b", 0.3) is False  # would have lapsed unextended
    await asyncio.sleep(0.2)
    assert await leases.holder("k") is None
    assert await leases.acquire("k", "node-b", 0.3) is True
    assert await leases.holder("k") == "node-b"


async def test_local_leases_run_on_the_clock_they_are_given() -> None:
    now = [100.0]
    leases = LocalLeases(clock=lambda: now[0])
    assert await leases.acquire("k", "a", 5)
    now[0] = 104.9
    assert await leases.holder("k") == "a"
    now[0] = 105.0  # at the deadline it has lapsed, as a Redis PX key does
    assert await leases.holder("k") is None
    assert await leases.acquire("k", "b", 5)
