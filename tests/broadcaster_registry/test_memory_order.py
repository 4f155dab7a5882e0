"""MemoryRegistryStore.list_all: every broadcaster's current value, by name, whatever mix of
registrations, heartbeats (a value replaced in place in the kept order), drains and deletions came
before it."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster_registry.model import Load, Registration
from broadcaster_registry.storage import MemoryRegistryStore

NOW = 1_800_000_000.0
NAMES = [f"b{i}" for i in range(8)]

steps = st.lists(st.tuples(st.sampled_from(["put", "put", "drain", "delete", "list"]), st.sampled_from(NAMES),
                           st.integers(0, 40)), max_size=40)


@settings(max_examples=100, deadline=None)
@given(steps=steps)
def test_list_all_is_every_current_value_by_name(steps: list[tuple[str, str, int]]) -> None:
    async def run() -> None:
        store = MemoryRegistryStore([], clock=lambda: NOW)
        for i, (step, name, streams) in enumerate(steps):
            if step == "put":
                await store.upsert(name, Registration(address=f"https://{name}.example.net",
                                                      load=Load(active_streams=streams)), NOW + i)
            elif step == "drain":
                await store.set_state(name, "draining")
            elif step == "delete":
                await store.delete(name)
            listed = await store.list_all()
            expected = sorted([b for n in NAMES if (b := await store.get(n)) is not None], key=lambda b: b.name)
            assert [b.name for b in listed] == [b.name for b in expected]
            assert all(a is b for a, b in zip(listed, expected))
    asyncio.run(run())
