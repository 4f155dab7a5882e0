"""The store contract: every test here runs against SQLite and Redis alike (the `store` fixture),
and the registry's against the in-memory registry too (the `registry` fixture), so the backends
provably behave the same for the service, time included."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from broadcaster_registry.credentials import issue
from broadcaster_registry.liveness import DEFAULT_LIVENESS, LivenessPolicy, is_serving
from broadcaster_registry.storage import RegistryStore
from broadcaster_registry.model import Load, Registration
from edge.store.base import StoredStates, Store
from edge.streams.model import Profile, RenditionMedia, Stream

from .conftest import RegistryBackend

NOW = 1_700_000_000.0
P720 = Profile(name="P720p30fps16x9", width=1280, height=720, bitrate=4_000_000, fps=30)


def stream(stream_id: str, created_at: int, **fields: object) -> Stream:
    return Stream(id=stream_id, name=f"cam-{stream_id}", profiles=(P720,), created_at=created_at, **fields)  # type: ignore[arg-type]


def registration(name: str, *streams: str, cpu: float | None = None) -> Registration:
    return Registration(address=f"https://{name}.example.net", load=Load(cpu=cpu), streams=frozenset(streams))


async def all_pages(store: Store, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = await store.streams.list(limit, cursor)
        pages.append([s.id for s in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


# --- streams ---


async def test_a_created_stream_reads_back_whole(store: Store) -> None:
    s = stream("a1", 1000, presets=("P720p30fps16x9",), dvr_window_seconds=120)
    await store.streams.create(s)
    assert await store.streams.get("a1") == s
    assert await store.streams.get("nope") is None


async def test_listing_is_newest_first_with_ids_breaking_ties_across_pages(store: Store) -> None:
    for stream_id, created in [("b", 2000), ("a", 1000), ("d", 2000), ("c", 2000), ("e", 3000)]:
        await store.streams.create(stream(stream_id, created))
    assert await all_pages(store, 2) == [["e", "d"], ["c", "b"], ["a"]]
    assert await all_pages(store, 5) == [["e", "d", "c", "b", "a"]]  # exactly full: no next page
    assert await all_pages(store, 100) == [["e", "d", "c", "b", "a"]]


async def test_a_cursor_stays_valid_when_its_stream_is_deleted(store: Store) -> None:
    for stream_id, created in [("a", 1), ("b", 2), ("c", 3)]:
        await store.streams.create(stream(stream_id, created))
    first = await store.streams.list(1, None)
    assert [s.id for s in first.items] == ["c"] and first.next_cursor is not None
    await store.streams.delete("c")
    rest = await store.streams.list(10, first.next_cursor)
    assert [s.id for s in rest.items] == ["b", "a"] and rest.next_cursor is None


async def test_an_empty_store_lists_nothing(store: Store) -> None:
    page = await store.streams.list(20, None)
    assert page.items == () and page.next_cursor is None


@pytest.mark.parametrize("cursor", ["not a cursor!", "Zm9v", "%%%"])
async def test_a_cursor_we_did_not_issue_is_refused(store: Store, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.streams.list(20, cursor)


async def test_ending_is_idempotent_and_keeps_the_first_end_time(store: Store) -> None:
    s = stream("a", 1000)
    await store.streams.create(s)
    ended = await store.streams.end("a", 5000)
    assert ended is not None and ended.ended_at == 5000
    again = await store.streams.end("a", 9000)
    assert again == ended
    assert await store.streams.get("a") == stream("a", 1000, ended_at=5000)
    assert await store.streams.end("nope", 5000) is None


async def test_probed_media_is_stored_with_the_stream_per_rendition(store: Store) -> None:
    await store.streams.create(stream("a", 1000))
    source = RenditionMedia("source", ("avc1.64001f", "mp4a.40.2"), 1920, 1080, bandwidth=5_100_000,
                            average_bandwidth=4_800_000)
    low = RenditionMedia("P720p30fps16x9", ("avc1.42c01e",))
    await store.streams.update("a", lambda s: s.with_media(source))
    updated = await store.streams.update("a", lambda s: s.with_media(low))
    assert updated is not None and await store.streams.get("a") == updated
    assert updated.media_of("source") == source and updated.media_of("P720p30fps16x9") == low
    again = RenditionMedia("source", ("hvc1.1.6.L120.90",), 1280, 720)
    assert (await store.streams.update("a", lambda s: s.with_media(again))).media_of("source") == again  # type: ignore[union-attr]
    assert await store.streams.update("nope", lambda s: s.with_media(low)) is None


async def test_a_deleted_stream_is_gone_from_reads_and_listings(store: Store) -> None:
    await store.streams.create(stream("a", 1))
    await store.streams.create(stream("b", 2))
    assert await store.streams.delete("a") is True
    assert await store.streams.delete("a") is False
    assert await store.streams.get("a") is None
    assert await all_pages(store, 10) == [["b"]]


# --- registry ---


async def test_register_heartbeat_list_drain_delete(registry: RegistryStore) -> None:
    await registry.upsert("sin", registration("sin"), NOW)
    first = await registry.upsert("fra", registration("fra", cpu=0.1), NOW)
    beat = await registry.upsert("fra", registration("fra", cpu=0.7), NOW + 10)
    assert (first.registered_at, beat.registered_at, beat.last_heartbeat) == (NOW, NOW, NOW + 10)
    assert beat.load.cpu == 0.7
    assert await registry.get("fra") == beat
    assert await registry.list_all() == [beat, await registry.get("sin")]

    drained = await registry.set_state("fra", "draining")
    assert drained is not None and drained.state == "draining"
    assert await registry.get("fra") == drained
    assert (await registry.upsert("fra", registration("fra"), NOW + 20)).state == "draining"
    assert await registry.set_state("nope", "draining") is None

    assert await registry.delete("fra") is True
    assert await registry.delete("fra") is False
    assert await registry.get("fra") is None
    assert [b.name for b in await registry.list_all()] == ["sin"]


async def test_static_entries_keep_their_source_and_may_take_over_a_name(registry: RegistryStore) -> None:
    await registry.upsert("fra", registration("fra"), NOW)
    b = await registry.upsert("fra", registration("fra"), NOW + 1, source="static")
    assert b.source == "static" and await registry.get("fra") == b


async def test_probe_and_fetch_results_accumulate_with_the_whole_registry_as_fleet(registry: RegistryStore) -> None:
    for name in ("a", "b", "c"):
        await registry.upsert(name, registration(name), NOW)
    for _ in range(3):
        await registry.record_probe("a", False, NOW, DEFAULT_LIVENESS)
    a = await registry.get("a")
    assert a is not None and a.probe.down and a.probe.last_probe_at == NOW

    # Of b and c (a is probed down) only one may be ejected at a time (50% cap).
    for _ in range(5):
        await registry.record_fetch("b", False, NOW, DEFAULT_LIVENESS)
        await registry.record_fetch("c", False, NOW, DEFAULT_LIVENESS)
    serving = [b.name for b in await registry.list_all() if is_serving(b, NOW, DEFAULT_LIVENESS)]
    assert serving == ["c"]
    c = await registry.get("c")
    assert c is not None and c.ejection.consecutive_failures == 5

    ok = await registry.record_fetch("c", True, NOW + 1, DEFAULT_LIVENESS)
    assert ok is not None and ok.ejection.consecutive_failures == 0
    assert await registry.get("c") == ok

    assert await registry.record_probe("nope", True, NOW, DEFAULT_LIVENESS) is None
    assert await registry.record_fetch("nope", True, NOW, DEFAULT_LIVENESS) is None


async def test_fetch_results_keep_the_drain_and_the_heartbeat(registry: RegistryStore) -> None:
    policy = LivenessPolicy(ejection_consecutive_failures=100)
    await registry.upsert("a", registration("a"), NOW)
    await registry.set_state("a", "draining")
    await registry.record_fetch("a", False, NOW + 1, policy)
    await registry.upsert("a", registration("a"), NOW + 2)
    await registry.record_fetch("a", False, NOW + 3, policy)
    a = await registry.get("a")
    assert a is not None
    assert (a.state, a.last_heartbeat, a.ejection.consecutive_failures) == ("draining", NOW + 2, 2)


async def test_carrying_joins_reports_and_handouts(registry: RegistryStore) -> None:
    await registry.upsert("fra", registration("fra", "s1"), NOW)
    await registry.upsert("ash", registration("ash"), NOW)
    await registry.upsert("sin", registration("sin"), NOW)
    await registry.note_carrier("s1", "ash", NOW)
    await registry.note_carrier("s1", "ash", NOW + 1)  # again: still once
    await registry.note_carrier("s2", "sin", NOW)

    assert [b.name for b in await registry.carrying("s1")] == ["ash", "fra"]
    assert await registry.carrying("s1") == [await registry.get("ash"), await registry.get("fra")]
    assert [b.name for b in await registry.carrying("s2")] == ["sin"]
    assert await registry.carrying("s3") == []

    await registry.forget_stream("s1")  # hand-outs go, what fra reports stays
    assert [b.name for b in await registry.carrying("s1")] == ["fra"]
    await registry.delete("sin")
    assert await registry.carrying("s2") == []


async def test_carrying_follows_what_a_broadcaster_reports_now(registry: RegistryStore) -> None:
    await registry.upsert("fra", registration("fra", "s1", "s2"), NOW)
    await registry.upsert("fra", registration("fra", "s2", "s3"), NOW + 1)
    assert [await registry.carrying(s) for s in ("s1", "s2", "s3")] == [[], *[[await registry.get("fra")]] * 2]


async def test_a_name_deleted_and_registered_again_carries_nothing_of_before(registry: RegistryStore) -> None:
    await registry.upsert("fra", registration("fra", "s1"), NOW)
    await registry.note_carrier("s2", "fra", NOW)
    await registry.delete("fra")
    await registry.upsert("fra", registration("fra"), NOW + 1)
    assert await registry.carrying("s1") == [] and await registry.carrying("s2") == []


async def test_a_handout_before_registration_counts_once_it_registers(registry: RegistryStore) -> None:
    await registry.note_carrier("s1", "late", NOW)
    assert await registry.carrying("s1") == []
    late = await registry.upsert("late", registration("late"), NOW + 1)
    assert await registry.carrying("s1") == [late]


def test_every_registry_implements_the_interface(registry: RegistryStore) -> None:
    assert isinstance(registry, RegistryStore)


async def test_the_revision_moves_at_every_change_a_listing_shows(registry: RegistryStore) -> None:
    """A reader skips reading while the revision stays: every change must move it, whichever worker
    made it (None: unknown, the reader reads)."""
    async def changed(change: Awaitable[object]) -> None:
        before = registry.revision()
        listed = await registry.list_all()
        await change
        after = registry.revision()
        assert after is None or after != before or await registry.list_all() == listed

    await changed(registry.upsert("fra", registration("fra"), NOW))
    await changed(registry.upsert("ams", registration("ams", cpu=0.5), NOW))
    await changed(registry.upsert("fra", registration("fra", cpu=0.9), NOW + 1))
    await changed(registry.set_state("ams", "draining"))
    await changed(registry.delete("fra"))
    assert [b.name for b in await registry.list_all()] == ["ams"]


async def test_a_listing_without_a_wait_is_the_listing(registry: RegistryStore) -> None:
    """list_now answers what list_all would, or nothing (then list_all must be asked)."""
    for i, name in enumerate(["fra", "ams", "fra", "lhr"]):
        await registry.upsert(name, registration(name, cpu=i / 10), NOW + i)
        now = registry.list_now()
        assert now is None or now == await registry.list_all()


# Short enough for Redis, which keeps time itself and must really wait: forgotten after 1 s of
# silence, a hint lapses after 1 s.
QUICK = LivenessPolicy(heartbeat_ttl_s=0.5, forget_after_s=1.0)
QUICK_HINT_TTL_S = 1.0


async def test_a_broadcaster_silent_long_ago_is_forgotten_with_its_hints(registry_backend: RegistryBackend) -> None:
    registry, clock = await registry_backend.make(liveness=QUICK), registry_backend.clock
    await registry.upsert("quiet", registration("quiet", "s1"), clock())
    await registry.note_carrier("s2", "quiet", clock())
    await registry.upsert("fixed", registration("fixed", "s1"), clock(), source="static")
    assert [b.name for b in await registry.list_all()] == ["fixed", "quiet"]

    await clock.advance(1.2)
    busy = await registry.upsert("busy", registration("busy"), clock())
    assert await registry.list_all() == [busy, await registry.get("fixed")]  # static: the operator's
    assert await registry.get("quiet") is None
    assert [b.name for b in await registry.carrying("s1")] == ["fixed"]
    # Forgotten with everything that named it: back again, it carries nothing of before.
    back = await registry.upsert("quiet", registration("quiet"), clock())
    assert back.registered_at == back.last_heartbeat
    assert await registry.carrying("s2") == []


async def test_a_broadcaster_back_after_silence_starts_afresh_even_if_nobody_listed(
    registry_backend: RegistryBackend,
) -> None:
    registry, clock = await registry_backend.make(liveness=QUICK), registry_backend.clock
    await registry.upsert("fra", registration("fra"), clock())
    await registry.set_state("fra", "draining")
    await registry.note_carrier("s1", "fra", clock())
    await clock.advance(1.2)
    back = await registry.upsert("fra", registration("fra"), clock())
    assert back.state == "active" and await registry.carrying("s1") == []


async def test_carrier_hints_lapse_after_their_ttl_and_a_new_hint_renews_them(registry_backend: RegistryBackend) -> None:
    registry = await registry_backend.make(hint_ttl_s=QUICK_HINT_TTL_S)
    clock = registry_backend.clock
    await registry.upsert("fra", registration("fra"), clock(), source="static")
    await registry.upsert("ash", registration("ash"), clock(), source="static")
    await registry.note_carrier("s1", "fra", clock())
    await registry.note_carrier("s1", "ash", clock())
    assert await registry.carrier_hints("s1") == {"fra", "ash"}

    await clock.advance(1.2)
    await registry.note_carrier("s1", "ash", clock())  # renewed: another TTL from now
    assert await registry.carrier_hints("s1") == {"ash"}
    assert [b.name for b in await registry.carrying("s1")] == ["ash"]
    await clock.advance(1.2)
    assert await registry.carrier_hints("s1") == frozenset() and await registry.carrying("s1") == []


# --- playlists ---


async def test_playlist_states_save_per_rendition_load_and_delete(store: Store) -> None:
    playlists = store.playlists
    assert await playlists.load("s1") == StoredStates(0, {})
    assert await playlists.save("s1", {"source": b"\x00\xffsource-1", "P720p30fps16x9": b"720-1"}, 0) == 1
    assert await playlists.save("s1", {"source": b"source-2"}, 1) == 2  # only the renditions given change
    assert await playlists.save("s2", {"source": b"other"}, 0) == 1
    assert await playlists.load("s1") == StoredStates(2, {"source": b"source-2", "P720p30fps16x9": b"720-1"})
    assert await playlists.revision("s1") == 2 and await playlists.revision("nope") == 0

    await playlists.delete("s1")
    assert await playlists.load("s1") == StoredStates(0, {})
    assert await playlists.load("s2") == StoredStates(1, {"source": b"other"})
    await playlists.delete("nope")


async def test_a_stale_writer_cannot_overwrite_newer_states(store: Store) -> None:
    """Two nodes merged from revision 0; the second to save is refused and nothing of it is kept."""
    playlists = store.playlists
    assert await playlists.save("s1", {"source": b"from-a"}, 0) == 1
    assert await playlists.save("s1", {"source": b"from-b", "P360p30fps16x9": b"b"}, 0) is None
    assert await playlists.load("s1") == StoredStates(1, {"source": b"from-a"})


async def test_concurrent_saves_of_many_streams_each_keep_their_own_fence(store: Store) -> None:
    """Saves asked at once (many streams' rounds ending together; SQLite commits them in groups):
    each is fenced by its own revision, the first of two racing writers of one stream wins, and
    every one that was accepted reads back."""
    playlists = store.playlists
    for n in range(0, 40, 2):  # half of the streams already have a revision
        assert await playlists.save(f"s{n}", {"source": b"old"}, 0) == 1
    expected = {f"s{n}": (1 if n % 2 else 2) for n in range(40)}
    saves = [playlists.save(sid, {"source": f"{sid}-new".encode()}, rev - 1) for sid, rev in expected.items()]
    saves.append(playlists.save("s0", {"source": b"racer"}, 1))  # the same fence as s0's
    saves.append(playlists.save("s1", {"source": b"stale"}, 5))  # a fence nobody holds
    results = await asyncio.gather(*saves)
    assert results[1:40] == list(expected.values())[1:]
    assert sorted([results[0], results[40]], key=str) == [2, None]  # one of the racers, not both
    assert results[41] is None
    winner = b"s0-new" if results[0] == 2 else b"racer"
    assert await playlists.load("s0") == StoredStates(2, {"source": winner})
    for sid, rev in list(expected.items())[1:]:
        assert await playlists.load(sid) == StoredStates(rev, {"source": f"{sid}-new".encode()})


# --- the store ---


async def test_it_answers_a_ping_and_says_where_it_lives(store: Store) -> None:
    await store.ping()
    assert store.describe().startswith(("sqlite:///", "redis://"))


# --- broadcaster credentials ---


async def test_credentials_are_kept_hashed_listed_per_name_and_revoked_under_their_name(store: Store) -> None:
    old, old_token = issue("fra", NOW)
    new, new_token = issue("fra", NOW + 1)
    other, _ = issue("ash", NOW)
    for credential in (new, old, other):
        await store.credentials.add(credential)
    stored = await store.credentials.get(old.id)
    assert stored == old and old_token.rsplit(".", 1)[1].encode() not in stored.digest + stored.salt
    assert stored.matches(old_token.rsplit(".", 1)[1]) and not stored.matches(new_token.rsplit(".", 1)[1])
    assert [c.id for c in await store.credentials.list_for("fra")] == [old.id, new.id]  # oldest first
    assert not await store.credentials.revoke("ash", old.id)  # not under another name
    assert await store.credentials.revoke("fra", old.id)
    assert await store.credentials.get(old.id) is None and not await store.credentials.revoke("fra", old.id)
    assert [c.id for c in await store.credentials.list_for("fra")] == [new.id]
    assert await store.credentials.list_for("nobody") == []


async def test_credentials_outlive_their_broadcasters_registration(store: Store) -> None:
    credential, _ = issue("fra", NOW)
    await store.credentials.add(credential)
    await store.registry.upsert("fra", registration("fra"), NOW)
    await store.registry.delete("fra")
    assert await store.credentials.get(credential.id) == credential
