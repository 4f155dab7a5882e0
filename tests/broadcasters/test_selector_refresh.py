"""The selector re-reads only what changed: a heartbeat that brings an address the edge may not use
takes its broadcaster out of the answers at once (and back when it is fixed), and a heartbeat
settles its own broadcaster's reservations while the others stay."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster_registry.model import Broadcaster, Load, Registration
from broadcaster_registry.ranking import RankingPolicy
from broadcaster_registry.ranking_cache import CachePolicy, RankingCache
from broadcaster_registry.reservations import outstanding
from broadcaster_registry.storage import MemoryRegistryStore
from edge.broadcasters.selection import Selector
from geo.location import Location

NOW = 1_800_000_000.0
POLICY = RankingPolicy()
CLIENT = Location(50.0, 8.0)


def registration(i: int, host: str | None = None) -> Registration:
    return Registration(address=f"https://{host or f'b{i}'}.example.net", latitude=50.0 + i / 10, longitude=8.0,
                        capacity=100, load=Load(active_streams=1))


@pytest.mark.parametrize("cached", [False, True])
async def test_a_heartbeat_with_a_refused_address_takes_its_broadcaster_out_at_once(cached: bool) -> None:
    store = MemoryRegistryStore([], clock=lambda: NOW)
    for i in range(5):
        await store.upsert(f"b{i}", registration(i), NOW)
    selector = Selector(store, POLICY, random.Random(1), admits=lambda b: "refused" not in b.address,
                        cache=RankingCache(CachePolicy()) if cached else None)
    assert {b.name for b in await selector.choose(CLIENT, NOW, 10)} == {f"b{i}" for i in range(5)}
    await store.upsert("b2", registration(2, host="refused"), NOW + 1)
    assert "b2" not in {b.name for b in await selector.choose(CLIENT, NOW + 1, 10)}
    await store.upsert("b2", registration(2), NOW + 2)
    assert "b2" in {b.name for b in await selector.choose(CLIENT, NOW + 2, 10)}


async def test_a_heartbeat_settles_its_own_reservations_and_no_one_else_s() -> None:
    store = MemoryRegistryStore([], clock=lambda: NOW)
    for i in range(3):
        await store.upsert(f"b{i}", registration(i), NOW)
    selector = Selector(store, POLICY, random.Random(1))
    for step in range(30):  # hand-outs spread over the three by their reservations
        await selector.choose(CLIENT, NOW + 1 + step / 100, 10)
    b0, b1, b2 = [await store.get(f"b{i}") for i in range(3)]
    assert b0 is not None and b1 is not None and b2 is not None
    before = [outstanding(selector.reservations, b, NOW + 2, 30.0) for b in (b0, b1, b2)]
    assert all(before)
    await store.upsert("b1", registration(1), NOW + 2)
    await selector.choose(CLIENT, NOW + 2, 10)
    b1 = await store.get("b1")
    assert b1 is not None
    after = [outstanding(selector.reservations, b, NOW + 2, 30.0) for b in (b0, b1, b2)]
    # At most the hand-out just made on b1: the heartbeat covered the others; b0's and b2's stay.
    assert after[1] <= 1 and after[0] >= before[0] and after[2] >= before[2]
    assert sum(after) == before[0] + before[2] + 1


class Guard:
    """AddressGuard's part the selector sees: admits, and an epoch moved by each new refusal."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.refusals = 0
        self.asked = 0

    def admits(self, b: Broadcaster) -> bool:
        self.asked += 1
        return b.name not in self.refused

    def refuse(self, name: str) -> None:
        if name not in self.refused:
            self.refusals += 1
        self.refused.add(name)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), max_size=20), st.booleans())
async def test_a_broadcaster_refused_between_answers_is_never_answered_again(
    steps: list[tuple[int, bool, bool]], cached: bool
) -> None:
    store = MemoryRegistryStore([], clock=lambda: NOW)
    for i in range(6):
        await store.upsert(f"b{i}", registration(i), NOW)
    guard = Guard()
    selector = Selector(store, POLICY, random.Random(1), admits=guard.admits, admits_epoch=lambda: guard.refusals,
                        cache=RankingCache(CachePolicy()) if cached else None)
    for step, (i, refuse, heartbeat) in enumerate(steps):
        now = NOW + step
        if refuse:
            guard.refuse(f"b{i}")
        if heartbeat:
            await store.upsert(f"b{i}", registration(i), now)
        answered = {b.name for b in await selector.choose(CLIENT, now, 10)}
        assert answered == {f"b{j}" for j in range(6)} - guard.refused


async def test_answers_are_not_judged_again_while_nobody_is_refused() -> None:
    store = MemoryRegistryStore([], clock=lambda: NOW)
    for i in range(6):
        await store.upsert(f"b{i}", registration(i), NOW)
    guard = Guard()
    selector = Selector(store, POLICY, random.Random(1), admits=guard.admits, admits_epoch=lambda: guard.refusals,
                        cache=RankingCache(CachePolicy()))
    await selector.choose(CLIENT, NOW, 10)
    asked = guard.asked
    for step in range(5):
        await selector.choose(CLIENT, NOW + step / 10, 10)
    assert guard.asked == asked
