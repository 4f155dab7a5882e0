"""MemoryRegistryStore: the reference behaviour every RegistryStore backend must have."""

from __future__ import annotations

from broadcaster_registry.liveness import DEFAULT_LIVENESS, is_serving
from broadcaster_registry.model import Registration
from broadcaster_registry.storage import MemoryRegistryStore, RegistryStore

from .builders import NOW


def _registration(name: str, streams: frozenset[str] = frozenset()) -> Registration:
    return Registration(address=f"https://{name}.example.net", streams=streams)


def test_it_implements_the_interface() -> None:
    assert isinstance(MemoryRegistryStore(), RegistryStore)


async def test_register_heartbeat_list_drain_delete() -> None:
    store = MemoryRegistryStore()
    await store.upsert("sin", _registration("sin"), NOW)
    await store.upsert("fra", _registration("fra"), NOW)
    beat = await store.upsert("fra", _registration("fra"), NOW + 10)
    assert (beat.registered_at, beat.last_heartbeat) == (NOW, NOW + 10)
    assert await store.get("fra") == beat
    assert [b.name for b in await store.list_all()] == ["fra", "sin"]

    drained = await store.set_state("fra", "draining")
    assert drained is not None and drained.state == "draining"
    assert (await store.upsert("fra", _registration("fra"), NOW + 20)).state == "draining"
    assert await store.set_state("nope", "draining") is None

    assert await store.delete("fra") is True
    assert await store.delete("fra") is False
    assert await store.get("fra") is None


async def test_static_entries_keep_their_source() -> None:
    store = MemoryRegistryStore()
    b = await store.upsert("fra", _registration("fra"), NOW, source="static")
    assert b.source == "static"


async def test_probe_and_fetch_results_accumulate() -> None:
    store = MemoryRegistryStore()
    for name in ("a", "b", "c"):
        await store.upsert(name, _registration(name), NOW)
    for _ in range(3):
        await store.record_probe("a", False, NOW, DEFAULT_LIVENESS)
    a = await store.get("a")
    assert a is not None and a.probe.down

    # The store passes the whole registry as the fleet: of b and c (a is probed down) only one
    # may be ejected at a time.
    for _ in range(5):
        await store.record_fetch("b", False, NOW, DEFAULT_LIVENESS)
        await store.record_fetch("c", False, NOW, DEFAULT_LIVENESS)
    serving = [b.name for b in await store.list_all() if is_serving(b, NOW, DEFAULT_LIVENESS)]
    assert serving == ["c"]

    assert await store.record_probe("nope", True, NOW, DEFAULT_LIVENESS) is None
    assert await store.record_fetch("nope", True, NOW, DEFAULT_LIVENESS) is None


async def test_carrying_joins_reports_and_handouts() -> None:
    store = MemoryRegistryStore()
    await store.upsert("fra", _registration("fra", frozenset({"s1"})), NOW)
    await store.upsert("ash", _registration("ash"), NOW)
    await store.upsert("sin", _registration("sin"), NOW)
    await store.note_handout("s1", "ash", NOW)
    await store.note_handout("s2", "sin", NOW)

    assert [b.name for b in await store.carrying("s1")] == ["ash", "fra"]
    assert [b.name for b in await store.carrying("s2")] == ["sin"]
    assert await store.carrying("s3") == []

    await store.forget_stream("s1")  # hand-outs go, what fra reports stays
    assert [b.name for b in await store.carrying("s1")] == ["fra"]
    await store.delete("sin")
    assert await store.carrying("s2") == []
