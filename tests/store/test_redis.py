"""What only the Redis backend has to show: expiry by Redis itself, several nodes on one Redis,
concurrent writers, and a Redis that is away and comes back."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from broadcaster_registry.codec import from_doc
from broadcaster_registry.liveness import DEFAULT_LIVENESS, LivenessPolicy, is_ejected
from broadcaster_registry.model import Broadcaster
from edge.store.base import StoreUnavailable
from edge.store.redis import RedisStore
from tests.processes import OwnRedis

from .conftest import REDIS_URL, MakeRedisStore, delete_prefix, redis_nodes
from .test_contract import NOW, registration, stream

SHORT = LivenessPolicy(heartbeat_ttl_s=0.5, forget_after_s=1.0)


async def pttl(store: RedisStore, *parts: str) -> int:
    return await store.db.client.pttl(store.db.key(*parts))


# --- expiry by Redis itself ---


async def test_a_broadcaster_that_stops_heartbeating_is_forgotten_by_key_expiry(
    make_redis_store: MakeRedisStore,
) -> None:
    store = await make_redis_store(liveness=SHORT)
    registry = store.registry
    await registry.upsert("quiet", registration("quiet", "s1"), NOW)
    await registry.note_carrier("s2", "quiet", NOW)
    await registry.upsert("fixed", registration("fixed", "s1"), NOW, source="static")
    assert 0 < await pttl(store, "broadcaster", "quiet") <= 1000
    assert await pttl(store, "broadcaster", "fixed") == -1  # the operator's: never expires
    assert [b.name for b in await registry.list_all()] == ["fixed", "quiet"]

    started = time.monotonic()
    while time.monotonic() - started < 1.4:  # "busy" heartbeats, "quiet" does not
        await registry.upsert("busy", registration("busy"), NOW)
        await asyncio.sleep(0.2)

    assert [b.name for b in await registry.list_all()] == ["busy", "fixed"]
    assert await registry.get("quiet") is None
    assert [b.name for b in await registry.carrying("s1")] == ["fixed"]
    # Forgotten with everything that named it: back again, it carries nothing of before.
    await registry.upsert("quiet", registration("quiet"), NOW + 5)
    assert await registry.carrying("s2") == []


async def test_a_broadcaster_back_after_expiry_starts_afresh_even_if_nobody_listed(
    make_redis_store: MakeRedisStore,
) -> None:
    store = await make_redis_store(liveness=SHORT)
    await store.registry.upsert("quiet", registration("quiet", "s1"), NOW)
    await store.registry.note_carrier("s2", "quiet", NOW)
    await asyncio.sleep(1.1)
    back = await store.registry.upsert("quiet", registration("quiet"), NOW + 5)
    assert back.registered_at == NOW + 5
    assert await store.registry.carrying("s1") == [] and await store.registry.carrying("s2") == []


async def test_only_heartbeats_renew_the_expiry(make_redis_store: MakeRedisStore) -> None:
    store = await make_redis_store(liveness=LivenessPolicy(forget_after_s=60))
    registry = store.registry
    await registry.upsert("a", registration("a"), NOW)
    await asyncio.sleep(0.05)
    before = await pttl(store, "broadcaster", "a")
    await registry.set_state("a", "draining")
    await registry.record_probe("a", False, NOW, DEFAULT_LIVENESS)
    await registry.record_fetch("a", False, NOW, DEFAULT_LIVENESS)
    assert 0 < await pttl(store, "broadcaster", "a") <= before
    await registry.upsert("a", registration("a"), NOW + 1)
    assert await pttl(store, "broadcaster", "a") > before

    # The operator's file takes the name over: no expiry; a self-registration of a static name
    # (refused by the API, allowed by the store) would bring it back.
    await registry.upsert("a", registration("a"), NOW + 2, source="static")
    assert await pttl(store, "broadcaster", "a") == -1
    await registry.upsert("a", registration("a"), NOW + 3)
    assert await pttl(store, "broadcaster", "a") > 0


async def test_handouts_lapse_after_their_ttl(make_redis_store: MakeRedisStore) -> None:
    store = await make_redis_store(hint_ttl_s=0.3)
    await store.registry.upsert("ash", registration("ash"), NOW)
    await store.registry.note_carrier("s1", "ash", NOW)
    assert [b.name for b in await store.registry.carrying("s1")] == ["ash"]
    await asyncio.sleep(0.45)
    assert await store.registry.carrying("s1") == []
    assert await pttl(store, "handouts", "s1") == -2  # the key itself is gone too


# --- several nodes, one Redis ---


async def test_every_write_on_one_node_is_seen_by_another_at_once(make_redis_store: MakeRedisStore) -> None:
    a, b = await make_redis_store(), await make_redis_store()

    created = stream("s1", 1000)
    await a.streams.create(created)
    assert await b.streams.get("s1") == created
    assert [s.id for s in (await b.streams.list(10, None)).items] == ["s1"]
    await b.streams.end("s1", 2000)
    ended = await a.streams.get("s1")
    assert ended is not None and ended.ended_at == 2000

    fra = await a.registry.upsert("fra", registration("fra"), NOW)
    assert await b.registry.list_all() == [fra]
    await b.registry.set_state("fra", "draining")
    drained = await a.registry.get("fra")
    assert drained is not None and drained.state == "draining"
    await b.registry.note_carrier("s1", "fra", NOW)
    assert await a.registry.carrying("s1") == [drained]

    assert await a.playlists.save("s1", {"source": b"state"}, 0) == 1
    assert (await b.playlists.load("s1")).states == {"source": b"state"}

    assert await a.leases.acquire("s1/source", "node-a", 10)
    assert not await b.leases.acquire("s1/source", "node-b", 10)
    assert await b.leases.holder("s1/source") == "node-a"

    await b.streams.delete("s1")
    assert await a.streams.get("s1") is None


async def test_concurrent_writes_from_two_nodes_lose_nothing(make_redis_store: MakeRedisStore) -> None:
    a, b = await make_redis_store(), await make_redis_store()
    patient = LivenessPolicy(ejection_consecutive_failures=1000)
    await a.registry.upsert("fra", registration("fra"), NOW)
    writes = [node.registry.record_fetch("fra", False, NOW, patient) for node in (a, b) for _ in range(25)]
    writes += [node.registry.upsert("fra", registration("fra", "s1"), NOW + 1) for node in (a, b)]
    writes += [node.registry.record_probe("fra", True, NOW + 1, patient) for node in (a, b)]
    await asyncio.gather(*writes)
    fra = await b.registry.get("fra")
    assert fra is not None
    assert fra.ejection.consecutive_failures == 50
    assert (fra.last_heartbeat, fra.streams, fra.probe.consecutive_successes) == (NOW + 1, {"s1"}, 2)


async def test_two_nodes_ejecting_at_once_stay_within_the_fleet_cap(make_redis_store: MakeRedisStore) -> None:
    a, b = await make_redis_store(), await make_redis_store()
    policy = DEFAULT_LIVENESS  # 5 failures eject; at most 50% of the fleet
    for round_ in range(5):
        names = (f"x{round_}", f"y{round_}")
        for name in names:
            await a.registry.upsert(name, registration(name), NOW)
            for _ in range(policy.ejection_consecutive_failures - 1):
                await a.registry.record_fetch(name, False, NOW, policy)
        # The last failure of each arrives at the same moment on two nodes: only one may eject.
        await asyncio.gather(
            a.registry.record_fetch(names[0], False, NOW, policy),
            b.registry.record_fetch(names[1], False, NOW, policy),
        )
        fleet = await a.registry.list_all()
        assert sum(is_ejected(x, NOW) for x in fleet) == 1, fleet
        for name in names:
            await a.registry.delete(name)


async def test_listing_a_thousand_broadcasters_again_reads_only_what_changed(
    make_redis_store: MakeRedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await make_redis_store(), await make_redis_store()
    names = [f"node-{i:04d}" for i in range(1000)]
    for first in range(0, len(names), 100):
        await asyncio.gather(*(a.registry.upsert(n, registration(n), NOW) for n in names[first:first + 100]))
    assert [x.name for x in await b.registry.list_all()] == names  # b's first call reads them all

    decoded: list[str] = []

    def counting_from_doc(doc: dict[str, object]) -> Broadcaster:
        decoded.append(str(doc["name"]))
        return from_doc(doc)

    monkeypatch.setattr("edge.store.redis.from_doc", counting_from_doc)
    started = time.perf_counter()
    for i in range(5):
        await a.registry.upsert(names[i], registration(names[i], "s1"), NOW + 1)  # a heartbeat
        decoded.clear()
        listed = await b.registry.list_all()
        assert listed[i].streams == {"s1"} and len(listed) == 1000
        assert decoded == [names[i]]  # only that doc travelled and was decoded, not a thousand
    # Measured ~1 ms a call here (a whole read: 30-100 ms); the bound is only a sanity check.
    assert (time.perf_counter() - started) / 5 < 0.1


async def test_a_node_listing_again_sees_exactly_what_another_changed(make_redis_store: MakeRedisStore) -> None:
    a, b = await make_redis_store(), await make_redis_store()
    for name in ("fra", "sin", "ash"):
        await a.registry.upsert(name, registration(name), NOW)
    assert len(await b.registry.list_all()) == 3

    await a.registry.upsert("lon", registration("lon"), NOW)  # joins
    await a.registry.set_state("fra", "draining")  # changes
    await a.registry.delete("sin")  # leaves
    await a.registry.delete("ash")
    await a.registry.upsert("ash", registration("ash", "s1"), NOW + 1)  # leaves and comes back
    fresh = await make_redis_store()
    expected = await fresh.registry.list_all()
    assert [x.name for x in expected] == ["ash", "fra", "lon"]
    assert await b.registry.list_all() == expected


async def test_a_node_reads_the_registry_whole_when_redis_lost_it(
    make_redis_store: MakeRedisStore, redis_prefix: str
) -> None:
    a, b = await make_redis_store(), await make_redis_store()
    await a.registry.upsert("fra", registration("fra"), NOW)
    assert [x.name for x in await b.registry.list_all()] == ["fra"]
    await delete_prefix(REDIS_URL, redis_prefix)  # as a Redis restarted without persistence
    # Its change numbers start again: by now they pass the one b had reached.
    lon = await a.registry.upsert("lon", registration("lon"), NOW)
    sin = await a.registry.upsert("sin", registration("sin"), NOW)
    assert await b.registry.list_all() == [lon, sin]


async def test_removals_too_old_to_replay_make_a_node_read_the_registry_whole(make_redis_store: MakeRedisStore) -> None:
    a, b = await make_redis_store(), await make_redis_store()
    for name in ("fra", "sin", "ash"):
        await a.registry.upsert(name, registration(name), NOW)
    assert len(await b.registry.list_all()) == 3
    await a.registry.delete("sin")
    # 10,000 broadcasters leave after sin (written directly: quicker), then ash: the oldest
    # removals, sin's among them, are trimmed, so b cannot replay them and must read whole.
    client, gone, seq_key = a.db.client, a.db.key("broadcasters", "gone"), a.db.key("broadcasters", "seq")
    seq = int(await client.get(seq_key) or 0)
    await client.zadd(gone, {f"old-{i}": seq + 1 + i for i in range(10_000)})
    await client.set(seq_key, seq + 10_000)
    await a.registry.delete("ash")
    assert await client.zcard(gone) == 9_002 and await client.zscore(gone, "sin") is None
    assert [x.name for x in await b.registry.list_all()] == ["fra"]


async def test_hundreds_of_concurrent_calls_all_get_a_connection(make_redis_store: MakeRedisStore) -> None:
    """Hundreds of feeds reach their round boundary together (redis-py's default pool of 100
    connections failed the calls past its size with MaxConnectionsError)."""
    store = await make_redis_store()
    keys = [f"feed:s{i}" for i in range(500)]
    taken = await asyncio.gather(*(store.leases.acquire(key, "node-a", 5) for key in keys))
    assert all(taken)
    holders = await asyncio.gather(*(store.leases.holder(key) for key in keys))
    assert holders == ["node-a"] * len(keys)


# --- Redis away, Redis back ---


async def test_an_unreachable_redis_is_store_unavailable_quickly() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", "test-edge:")
    started = time.monotonic()
    await store.open()  # the node starts anyway
    calls = [
        store.ping(),
        store.streams.get("s1"),
        store.streams.list(20, None),
        store.streams.end("s1", 1),
        store.registry.list_all(),
        store.registry.upsert("fra", registration("fra"), NOW),
        store.registry.carrying("s1"),
        store.playlists.save("s1", {"source": b"x"}, 0),
        store.leases.acquire("k", "node-a", 5),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable, match="127.0.0.1:1"):
            await call
    assert time.monotonic() - started < 5
    await store.close()


def test_the_description_carries_no_credentials() -> None:
    store = RedisStore("redis://user:s3cret@redis.internal:6380/2?password=s3cret", "edge:")
    assert store.describe() == "redis://redis.internal:6380/2 (keys edge:*)"


async def test_a_node_recovers_by_itself_when_redis_returns(own_redis: OwnRedis, redis_prefix: str) -> None:
    async with redis_nodes(redis_prefix, own_redis.url) as make:
        node = await make()
        created = stream("s1", 1000)
        await node.streams.create(created)
        await node.registry.upsert("fra", registration("fra", "s1"), NOW)
        await node.registry.note_carrier("s1", "fra", NOW)
        await node.playlists.save("s1", {"source": b"state"}, 0)
        await node.leases.acquire("s1/source", "node-a", 10)
        async with aioredis.Redis.from_url(own_redis.url, decode_responses=True) as raw:  # this test's own server
            keys = [str(key) for key in await raw.keys("*")]
        assert keys and all(key.startswith(redis_prefix) for key in keys)

        own_redis.stop()
        with pytest.raises(StoreUnavailable):
            await node.ping()
        with pytest.raises(StoreUnavailable):
            await node.streams.get("s1")
        late = await make()  # a node starting while Redis is down starts all the same
        with pytest.raises(StoreUnavailable):
            await late.registry.list_all()

        own_redis.start()
        await node.ping()
        assert await node.streams.get("s1") == created
        assert [b.name for b in await late.registry.carrying("s1")] == ["fra"]
        assert await late.leases.holder("s1/source") == "node-a"


# --- deadlines and cancellation ---


async def test_a_redis_that_accepts_and_never_answers_is_store_unavailable_at_the_deadline() -> None:
    """A hung Redis (stopped, or a network that drops the answers): every call ends at the store's
    operation deadline as StoreUnavailable, not never."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", "test-edge:", operation_timeout_s=0.2)
    try:
        async with asyncio.timeout(30):  # only a hang trips this
            for call in (store.ping(), store.streams.get("s1"), store.leases.acquire("k", "node-a", 5)):
                with pytest.raises(StoreUnavailable, match="Timeout"):
                    await call
        assert accepted  # it did connect: the deadline, not a refusal, ended the calls
    finally:
        await store.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_task_cancelled_during_a_store_call_never_goes_on(make_redis_store: MakeRedisStore) -> None:
    """A feed cancelled by a shutdown while it talks to Redis must stop. With a socket timeout set,
    redis-py wrote each command under asyncio.wait_for, which on Python 3.11 returns normally when
    the cancellation arrives as the write completes: about one cancellation in seven was lost, and
    the feed polled on for a minute. Cancelled at every point of a call in turn, the loop must never
    start another one, and no call after a cancelled one may get the cancelled call's answer (a
    connection given back with an answer still unread would hand it to the next command)."""
    store = await make_redis_store()
    keys = [(f"k{i}", f"node-{i}") for i in range(7)]
    for key, owner in keys:
        assert await store.leases.acquire(key, owner, 60)
    lost, wrong = 0, []
    for trial in range(210):
        requested = False
        key, owner = keys[trial % len(keys)]

        async def loop() -> None:
            nonlocal lost
            while True:
                if requested:  # the cancellation came and went: the task carried on
                    lost += 1
                    return
                holder = await store.leases.holder(key)
                renewed = await store.leases.acquire(key, owner, 60)
                if holder != owner or not renewed:
                    wrong.append((key, holder, renewed))

        task = asyncio.create_task(loop())
        for _ in range(trial % 11):  # each point of the calls: connection, write, read, answer
            await asyncio.sleep(0)
        task.cancel()
        requested = True
        await asyncio.wait({task})
    assert lost == 0 and wrong == []
    assert [await store.leases.holder(key) for key, _ in keys] == [owner for _, owner in keys]
