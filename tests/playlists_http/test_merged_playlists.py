"""Merged live playlists over HTTP, with fake broadcasters that are real servers on loopback."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator

import pytest

from broadcaster_registry.model import Registration
from tests.conftest import auth
from tests.fakes import FakeBroadcaster
from tests.playlists_http.harness import Edge, open_edge, parse
from devtools.playlist_rules import Seen, check_next, check_reload


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in open_edge(tmp_path):
        yield e


async def carried(edge: Edge, stream_id: str, *names: str) -> None:
    for name in names:
        await edge.svc.store.registry.note_carrier(stream_id, name, edge.svc.clock())


async def test_ingest_moving_a_lost_segment_and_a_killed_broadcaster_keep_every_rule(edge: Edge) -> None:
    """The issue's scenario: 100 successive reloads while the ingest moves every 3 segments, number 7
    is lost for good, retries duplicate segments, and broadcaster b is killed mid-stream."""
    names = ["a", "b", "c"]
    for name in names:
        await edge.add_broadcaster(name)
    stream = await edge.create_stream(presets=["P144p30fps16x9"])
    sid = stream["id"]
    await carried(edge, sid, *names)
    alive = list(names)

    async def ingest() -> None:
        for n in range(60):
            if n == 30:
                await edge.fakes["b"].stop()  # killed mid-stream
                alive.remove("b")
            target = alive[(n // 3) % len(alive)]
            if n != 7:  # lost for good
                for rendition in ("source", "P144p30fps16x9"):
                    edge.fakes[target].add(sid, rendition, n)
                    if n % 3 == 0:  # the upload was retried on the next broadcaster too
                        edge.fakes[alive[(n // 3 + 1) % len(alive)]].add(sid, rendition, n)
            # Time is compressed, but as in real life the player reloads more often than segments
            # arrive (a 2 s segment, reloads every target duration or less).
            await asyncio.sleep(0.12)

    task = asyncio.create_task(ingest())
    seen: dict[str, list[Seen]] = {"source": [], "P144p30fps16x9": []}
    reloads = 0
    while reloads < 100:
        for rendition in seen:
            response = await edge.playlist(sid, rendition)
            if response.status_code == 404:  # nothing published yet
                continue
            current = Seen.of(parse(response).dumps())
            check_next(seen[rendition], current)
        reloads += 1
        await asyncio.sleep(0.04)
    await task
    for history in seen.values():
        assert len(history) >= 90
        last = history[-1]
        uris = [uri for uri, _, _ in last.segments]
        assert len(uris) == len(set(uris)), "a number appears twice"
        # the lost number 7 was passed with a discontinuity before 8, and nothing else was
        flagged = {uri.rsplit("/", 1)[1] for h in history for uri, _, d in h.segments if d}
        assert flagged == {"8.ts"}, flagged
        assert not any(uri.endswith("/7.ts") for h in history for uri, _, _ in h.segments)
    targets = {history[-1].target for history in seen.values()}
    assert len(targets) == 1, "renditions disagree on EXT-X-TARGETDURATION"


async def test_segment_urls_are_absolute_on_the_broadcaster_resolved_per_rfc3986(edge: Edge) -> None:
    fake = await edge.add_broadcaster("a")
    stream = await edge.create_stream()
    sid = stream["id"]
    await carried(edge, sid, "a")
    fake.raw[(sid, "source")] = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        f"#EXTINF:2.0,\nsource/0.ts\n"  # relative to /stream/<id>/source.m3u8
        f"#EXTINF:2.0,\n../{sid}/source/1.ts\n"
        f"#EXTINF:2.0,\n{fake.url}/stream/{sid}/source/2.ts\n"
    ).encode()
    response = await edge.playlist(sid)
    uris = [s.uri for s in parse(response).segments]
    assert uris == [
        f"{fake.url}/stream/{sid}/source/0.ts",
        f"{fake.url}/stream/{sid}/source/1.ts",
        f"{fake.url}/stream/{sid}/source/2.ts",
    ]


async def test_hostile_upstream_input_is_skipped_counted_and_never_served(edge: Edge) -> None:
    good = await edge.add_broadcaster("good")
    evil = await edge.add_broadcaster("evil")
    stream = await edge.create_stream()
    sid = stream["id"]
    await carried(edge, sid, "good", "evil")
    good.add(sid, "source", 0, 1, 2)
    evil.raw[(sid, "source")] = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        "#EXTINF:2.0,\nhttp://169.254.169.254/latest/meta-data/3.ts\n"  # another host
        "#EXTINF:2.0,\nfile:///etc/passwd\n"
        f"#EXTINF:2.0,\n/stream/{sid}/source/index.ts\n"  # not a sequence number
        f"#EXTINF:9999,\n/stream/{sid}/source/4.ts\n"  # absurd duration
        f"#EXTINF:nan,\n/stream/{sid}/source/5.ts\n"
        "\x00\xff garbage \x00\n"
    ).encode("latin-1")
    response = await edge.playlist(sid)
    uris = [s.uri for s in parse(response).segments]
    assert all(uri.startswith(good.url) for uri in uris) and len(uris) == 3
    metrics = (await edge.client.get("/metrics")).text
    assert "edge_upstream_segments_rejected_total" in metrics
    rejected = [line for line in metrics.splitlines() if line.startswith("edge_upstream_segments_rejected_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in rejected) >= 5

    # A playlist of many megabytes and one that is not a playlist at all change nothing and break nothing.
    evil.raw[(sid, "source")] = b"#EXTM3U\n" + b"#EXTINF:2.0,\n/x/1.ts\n" * 200_000
    await asyncio.sleep(0.3)
    evil.raw[(sid, "source")] = b"<html>502 Bad Gateway</html>"
    await asyncio.sleep(0.3)
    after = await edge.playlist(sid)
    assert after.status_code == 200 and [s.uri for s in parse(after).segments] == uris


async def test_serving_headers_etag_gzip_head_cors(edge: Edge) -> None:
    fake = await edge.add_broadcaster("a")
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0, 1, 2)
    response = await edge.playlist(sid)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    target = parse(response).target_duration
    max_age = int(response.headers["cache-control"].split("max-age=")[1])
    assert 1 <= max_age <= max(1, target / 2)
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["content-encoding"] == "gzip" and response.content.startswith(b"#EXTM3U")
    assert not response.text.startswith("\ufeff")

    etag = response.headers["etag"]
    again = await edge.client.get(f"/stream/{sid}/source.m3u8", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    plain = await edge.client.get(f"/stream/{sid}/source.m3u8", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == response.text
    head = await edge.client.head(f"/stream/{sid}/source.m3u8", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(plain.content)

    fake.add(sid, "source", 3)

    async def changed() -> bool:
        answer = await edge.client.get(f"/stream/{sid}/source.m3u8", headers={"If-None-Match": etag})
        return answer.status_code == 200 and answer.headers["etag"] != etag

    await edge.wait_for(changed)


@pytest.mark.parametrize(
    "path",
    [
        "/stream/not-a-uuid/source.m3u8",
        "/stream/00000000-0000-4000-8000-000000000000/source.m3u8",
        "/stream/00000000-0000-4000-8000-000000000000.m3u8",
        "/stream/..%2F..%2Fetc/source.m3u8",
        "/stream/x/..%2Fadmin.m3u8",
    ],
)
async def test_unknown_streams_are_404_without_any_upstream_fetch(edge: Edge, path: str) -> None:
    fake = await edge.add_broadcaster("a")
    response = await edge.client.get(path)
    assert response.status_code == 404
    assert sum(fake.requests.values()) == 0


async def test_unknown_rendition_is_404(edge: Edge) -> None:
    await edge.add_broadcaster("a")
    sid = (await edge.create_stream())["id"]
    response = await edge.playlist(sid, "P720p30fps16x9")
    assert response.status_code == 404 and "not in stream" in response.text
    assert not any("P720p30fps16x9" in path for path in edge.fakes["a"].requests)


async def test_ended_stream_gets_endlist_and_a_long_cache(edge: Edge) -> None:
    fake = await edge.add_broadcaster("a")
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0, 1, 2)
    first = Seen.of((await edge.playlist(sid)).text)
    assert not first.ended
    await edge.client.post(f"/api/stream/{sid}/end", headers=auth())

    async def ended() -> bool:
        return Seen.of((await edge.playlist(sid)).text).ended

    await edge.wait_for(ended)
    final = await edge.playlist(sid)
    assert int(final.headers["cache-control"].split("max-age=")[1]) >= 3600
    check_reload(first, Seen.of(final.text))
    fake.add(sid, "source", 3, 4)
    await asyncio.sleep(0.3)
    assert (await edge.playlist(sid)).text == final.text


async def test_master_playlist_lists_every_rendition_with_relative_uris(edge: Edge) -> None:
    stream = await edge.create_stream(presets=["P360p30fps16x9"], profiles=[
        {"name": "hd", "width": 1280, "height": 720, "bitrate": 3000000, "fps": 30}])
    response = await edge.client.get(f"/stream/{stream['id']}.m3u8")
    assert response.status_code == 200 and response.headers["content-type"] == "application/vnd.apple.mpegurl"
    playlist = parse(response)
    variants = {p.uri: p.stream_info for p in playlist.playlists}
    assert set(variants) == {f"{stream['id']}/{r}.m3u8" for r in ("source", "P360p30fps16x9", "hd")}
    p360 = variants[f"{stream['id']}/P360p30fps16x9.m3u8"]
    assert (p360.bandwidth, p360.resolution, p360.frame_rate) == (1200000, (640, 360), 30.0)


async def test_upstream_load_does_not_grow_with_players(edge: Edge) -> None:
    fake = await edge.add_broadcaster("a")
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0, 1, 2)
    await edge.playlist(sid)
    path = f"/stream/{sid}/source.m3u8"

    async def fetches_during(players: int) -> int:
        start = fake.requests[path]
        end_at = asyncio.get_running_loop().time() + 1.0
        async def player() -> None:
            while asyncio.get_running_loop().time() < end_at:
                assert (await edge.playlist(sid)).status_code == 200
                await asyncio.sleep(0.01)
        await asyncio.gather(*(player() for _ in range(players)))
        return fake.requests[path] - start

    one, many = await fetches_during(1), await fetches_during(50)
    assert many <= one * 1.5 + 2, (one, many)


async def test_a_stuck_broadcaster_never_delays_nor_breaks_the_answer(edge: Edge) -> None:
    fast = await edge.add_broadcaster("fast")
    await edge.add_broadcaster("stuck", delay=30.0)
    await edge.add_broadcaster("failing", status=503)
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "fast", "stuck", "failing")
    fast.add(sid, "source", 0, 1, 2)
    started = asyncio.get_running_loop().time()
    response = await edge.playlist(sid)
    elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 200 and len(parse(response).segments) == 3
    assert elapsed < edge.svc.settings.upstream_timeout + 1.0
    for _ in range(20):  # served from memory meanwhile
        assert (await edge.playlist(sid)).status_code == 200
    metrics = (await edge.client.get("/metrics")).text
    assert 'edge_upstream_fetches_total{broadcaster="failing",outcome="http_error"}' in metrics
    assert 'edge_upstream_fetches_total{broadcaster="fast",outcome="ok"}' in metrics


async def test_only_carriers_are_polled_and_a_new_carrier_is_picked_up_quickly(edge: Edge) -> None:
    carrier = await edge.add_broadcaster("carrier")
    bystanders = [await edge.add_broadcaster(f"idle{i}") for i in range(5)]
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "carrier")
    carrier.add(sid, "source", 0, 1, 2)
    await edge.playlist(sid)
    await asyncio.sleep(1.0)
    polls = carrier.requests[f"/stream/{sid}/source.m3u8"]
    for fake in bystanders:  # only the periodic discovery asks them, far less often
        assert fake.requests[f"/stream/{sid}/source.m3u8"] * 3 < polls, (fake.name, polls)

    # The ingest moves to idle0: its hook call names it, and its segments appear at once.
    newcomer = bystanders[0]
    newcomer.add(sid, "source", 3)
    hook = await edge.client.post(
        "/api/stream/hook", json={"url": f"{newcomer.url}/live/{sid}/3.ts"}, headers=auth("test-broadcaster-token"))
    assert hook.status_code == 200
    started = asyncio.get_running_loop().time()

    async def has_three() -> bool:
        return any(s.uri.endswith("/3.ts") for s in parse(await edge.playlist(sid)).segments)

    await edge.wait_for(has_three, timeout=2.0)
    target = parse(await edge.playlist(sid)).target_duration
    assert asyncio.get_running_loop().time() - started < target


async def test_numbering_continues_across_an_edge_restart(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path):
        fake = await edge.add_broadcaster("a")
        sid = (await edge.create_stream())["id"]
        await carried(edge, sid, "a")
        fake.add(sid, "source", *range(0, 20))
        before = Seen.of((await edge.playlist(sid)).text)
        assert before.segments[-1][0].endswith("/19.ts")
        port = int(fake.url.rsplit(":", 1)[1])
        held = dict(fake.segments)
    async for edge in open_edge(tmp_path):
        fake = await edge.add_broadcaster("a", port=port)  # the same broadcaster, still holding its segments
        fake.segments.update(held)
        fake.add(sid, "source", 20, 21)

        async def grew() -> bool:
            return Seen.of((await edge.playlist(sid)).text).segments[-1][0].endswith("/21.ts")

        await edge.wait_for(grew)
        after = Seen.of((await edge.playlist(sid)).text)
        check_reload(before, after)
        assert after.msn >= before.msn


async def test_dvr_window_keeps_more_than_the_default(edge: Edge) -> None:
    fake = await edge.add_broadcaster("a", window=200)
    short = (await edge.create_stream())["id"]
    long = (await edge.create_stream(dvrWindowSeconds=300))["id"]
    for sid in (short, long):
        await carried(edge, sid, "a")
        fake.add(sid, "source", *range(0, 100))
        # the feed starts from the last window's worth; feed it on from there
    for sid in (short, long):
        await edge.playlist(sid)
    await asyncio.sleep(0.3)
    window = edge.svc.settings.playlist_window
    short_seen, long_seen = Seen.of((await edge.playlist(short)).text), Seen.of((await edge.playlist(long)).text)
    assert sum(d for _, d, _ in short_seen.segments) <= window + short_seen.target
    assert len(long_seen.segments) > len(short_seen.segments)


async def test_a_number_missing_in_one_rendition_only_keeps_the_renditions_aligned(edge: Edge) -> None:
    """RFC 8216 §6.2.4: the same MSN is the same media in every rendition. The rendition whose
    transcode of 3 failed shows the source's 3 there, set off by discontinuities in both."""
    fake = await edge.add_broadcaster("a")
    sid = (await edge.create_stream(presets=["P144p30fps16x9"]))["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0, 1, 2, 3, 4, 5)
    fake.add(sid, "P144p30fps16x9", 0, 1, 2, 4, 5)  # its transcode of 3 failed

    async def both_at_5() -> bool:
        texts = [(await edge.playlist(sid, r)).text for r in ("source", "P144p30fps16x9")]
        return all(t.rstrip().endswith("/5.ts") for t in texts)

    await edge.playlist(sid)
    await edge.wait_for(both_at_5)
    low = Seen.of((await edge.playlist(sid, "P144p30fps16x9")).text)
    source = Seen.of((await edge.playlist(sid, "source")).text)
    assert low.msn == source.msn and len(low.segments) == len(source.segments)
    assert [u.rsplit("/", 1)[1] for u, _, _ in low.segments] == [u.rsplit("/", 1)[1] for u, _, _ in source.segments]
    assert low.discontinuity_numbers() == source.discontinuity_numbers()
    stand_in = next(u for u, _, _ in low.segments if u.endswith("/3.ts"))
    assert stand_in == f"{fake.url}/stream/{sid}/source/3.ts"
    marks = {u.rsplit("/", 1)[1] for u, _, d in source.segments if d}
    assert marks == {"3.ts", "4.ts"}


async def test_hostile_entries_never_reach_a_playlist_nor_displace_a_real_copy(edge: Edge) -> None:
    """A broadcaster listing, beside real numbers, paths outside the stream's rendition directory:
    none of them is published, and the real copy of each number is what players get."""
    real, hostile = await edge.add_broadcaster("a"), await edge.add_broadcaster("0-first")
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a", "0-first")
    real.add(sid, "source", 14, 15, 16, 17)
    hostile.raw[(sid, "source")] = "\n".join([
        "#EXTM3U", "#EXT-X-TARGETDURATION:2",
        "#EXTINF:2,", "../../../../etc/14.ts",
        "#EXTINF:2,", "/admin/15.ts",
        "#EXTINF:2,", f"/stream/{sid}/source/%2e%2e/16.ts",
        "#EXTINF:2,", f"/stream/{sid}/source/17.ts?x=../",
        "#EXTINF:2,", f"/stream/other/source/18.ts",
        "#EXTINF:2,", f"/stream/{sid}/P720p30fps16x9/18.ts",
        "#EXTINF:2,", "http://169.254.169.254/stream/" + sid + "/source/18.ts",
    ]).encode() + b"\n"
    await edge.playlist(sid)
    await asyncio.sleep(1.0)  # past a hole wait: nothing hostile turns up later either
    uris = [s.uri for s in parse(await edge.playlist(sid)).segments]
    assert uris == [f"{real.url}/stream/{sid}/source/{n}.ts" for n in (14, 15, 16, 17)]
    metrics = (await edge.client.get("/metrics")).text
    assert 'edge_upstream_segments_rejected_total{reason="outside_layout"}' in metrics


async def test_a_broadcaster_that_merely_claims_a_stream_never_displaces_its_carrier(edge: Edge) -> None:
    """Issue: a second broadcaster heartbeating the stream and listing the same numbers at its own
    paths replaced every new segment. A claim is trusted less than a hand-out, whatever the name."""
    real = await edge.add_broadcaster("zz-real")
    claimer = FakeBroadcaster("0-claimer")
    await claimer.start()
    edge.fakes[claimer.name] = claimer
    sid = (await edge.create_stream())["id"]
    await edge.svc.store.registry.upsert(
        claimer.name, Registration(address=claimer.url, streams=frozenset({sid})), edge.svc.clock()
    )
    await carried(edge, sid, "zz-real")
    real.add(sid, "source", 0, 1, 2)
    claimer.add(sid, "source", 0, 1, 2, 3)  # its own copies, even one number ahead
    await edge.playlist(sid)
    for n in range(3, 12):
        real.add(sid, "source", n)
        claimer.add(sid, "source", n + 1)
        await asyncio.sleep(0.1)
    segments = parse(await edge.playlist(sid)).segments
    assert segments and all(s.uri.startswith(real.url) for s in segments[:-1]), [s.uri for s in segments]


@pytest.mark.parametrize(
    "accept, gzipped", [("gzip", True), ("br, gzip;q=0.5", True), ("gzip;q=0", False), ("*;q=0", False), ("", False)]
)
async def test_gzip_only_when_accepted(edge: Edge, accept: str, gzipped: bool) -> None:
    fake = await edge.add_broadcaster("a")
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0, 1, 2)
    await edge.playlist(sid)
    response = await edge.client.get(f"/stream/{sid}/source.m3u8", headers={"Accept-Encoding": accept})
    assert (response.headers.get("content-encoding") == "gzip") is gzipped


async def test_a_store_outage_while_a_feed_starts_is_survived(
        edge: Edge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The first read of stored states fails; the feed retries it, and the player is served once
    the store answers again. The loop that drops idle feeds keeps running. The outage is logged
    once, as a warning naming it: no traceback, which operators read as a crash."""
    import logging

    from edge.store.base import StoreUnavailable

    fake = await edge.add_broadcaster("a")
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0, 1, 2)
    real_load = edge.svc.store.playlists.load
    failures = 3

    async def flaky_load(stream_id: str):  # type: ignore[no-untyped-def]
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreUnavailable("store down for a moment")
        return await real_load(stream_id)

    monkeypatch.setattr(edge.svc.store.playlists, "load", flaky_load)

    async def served() -> bool:
        return (await edge.playlist(sid)).status_code == 200

    with caplog.at_level(logging.INFO, logger="edge"):
        await edge.wait_for(served)
    assert failures == 0
    logged = [r for r in caplog.records if "store down for a moment" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in logged] == [(logging.WARNING, None)]
    reaper = edge.svc.playlists._reaper
    assert reaper is not None and not reaper.done()


async def test_a_store_that_lost_writes_never_takes_players_back(tmp_path: Path) -> None:
    """A shared Redis restarted from a file a second old holds an older playlist than players were
    served: the node keeps what it served, writes it back, and goes on from there."""
    import uuid

    import redis.asyncio as aioredis

    from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    try:
        async for edge in open_edge(tmp_path, store=REDIS_URL, redis_prefix=prefix):
            fake = await edge.add_broadcaster("a")
            sid = (await edge.create_stream())["id"]
            await carried(edge, sid, "a")
            fake.add(sid, "source", 0, 1, 2)
            await edge.playlist(sid)
            await edge.wait_for(lambda: edge.svc.playlists.feeds[sid].states.get("source") is not None)
            async with aioredis.Redis.from_url(REDIS_URL) as redis:
                keys = [k async for k in redis.scan_iter(match=f"{prefix}playlist*")]
                snapshot = {k: await redis.dump(k) for k in keys}  # what an older file would hold
                fake.add(sid, "source", 3, 4, 5)

                async def at_5() -> bool:
                    return (await edge.playlist(sid)).text.rstrip().endswith("/5.ts")

                async def at_6() -> bool:
                    return (await edge.playlist(sid)).text.rstrip().endswith("/6.ts")

                await edge.wait_for(at_5)
                served = Seen.of((await edge.playlist(sid)).text)
                # Meanwhile 3-5 are gone from "a" and only "b" has them: re-deciding them from the
                # old stored state would give their MSNs other URIs.
                other = await edge.add_broadcaster("b")
                await carried(edge, sid, "b")
                other.add(sid, "source", 3, 4, 5, 6)
                fake.segments[(sid, "source")] = [0, 1, 2]
                for key, value in snapshot.items():  # the store goes back
                    await redis.restore(key, 0, value, replace=True)
                last = served
                for _ in range(30):  # every reload a player would make meanwhile keeps the rules
                    current = Seen.of((await edge.playlist(sid)).text)
                    check_reload(last, current)
                    last = current
                    await asyncio.sleep(0.05)
                await edge.wait_for(at_6)
                check_reload(last, Seen.of((await edge.playlist(sid)).text))
                stored = await edge.svc.store.playlists.load(sid)
                assert b"/6.ts" in stored.states["source"], "the node wrote its newer state back"
    finally:
        await delete_prefix(REDIS_URL, prefix)


async def test_a_node_taking_its_lease_back_serves_as_the_publisher_only_once_it_read_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared Redis restarting: the node's lease lapses meanwhile (another node may take it and
    publish), and when the store comes back the node takes the lease again but cannot yet read the
    stored playlists. Until it has, it answers players as any node that cannot tell whether its
    playlist is the newest (503), not from its own possibly older one as the publisher (the chaos
    soak caught a node serving MEDIA-SEQUENCE 51 after the other had served 53, right as Redis
    came back)."""
    import uuid

    from edge.store.base import StoreUnavailable
    from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    try:
        async for edge in open_edge(tmp_path, store=REDIS_URL, redis_prefix=prefix, lease_ttl=0.5):
            fake = await edge.add_broadcaster("a")
            sid = (await edge.create_stream())["id"]
            await carried(edge, sid, "a")
            fake.add(sid, "source", 0, 1, 2)

            async def status(code: int) -> bool:
                return (await edge.playlist(sid)).status_code == code

            await edge.wait_for(lambda: status(200))
            feed = edge.svc.playlists.feeds[sid]
            store = edge.svc.store
            down = {"leases": True, "playlists": True}
            refused = {"leases": 0, "playlists": 0}

            def failing(part: str, method):  # type: ignore[no-untyped-def]
                async def call(*args, **kwargs):  # type: ignore[no-untyped-def]
                    if down[part]:
                        refused[part] += 1
                        raise StoreUnavailable("redis restarting")
                    return await method(*args, **kwargs)
                return call

            for name in ("acquire", "holder", "release", "announce"):
                monkeypatch.setattr(store.leases, name, failing("leases", getattr(store.leases, name)))
            for name in ("revision", "load", "save"):
                monkeypatch.setattr(store.playlists, name, failing("playlists", getattr(store.playlists, name)))
            await asyncio.sleep(1.0)  # two lease TTLs: lapsed, here as in the store
            assert await status(200)  # nobody could publish since: the last publisher keeps serving
            down["leases"] = False  # back for leases, not yet for the playlists
            refused["playlists"] = 0
            # The feed's next round takes the lease and fails to read the stored revision.
            await edge.wait_for(lambda: refused["playlists"] > 0)
            assert feed.leader
            for _ in range(10):
                assert await status(503)
                await asyncio.sleep(0.05)
            down["playlists"] = False
            await edge.wait_for(lambda: status(200))
    finally:
        await delete_prefix(REDIS_URL, prefix)


async def test_the_last_publisher_stops_answering_once_another_node_may_have_taken_its_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes down, answers for a moment, and goes down again: in that moment another node
    may have taken the lapsed lease and published newer (the chaos soak: a player alternating
    between the nodes went from MEDIA-SEQUENCE 54 back to 53). The node that published when the
    store first went down keeps answering while nobody can have taken its lease; once the store
    answered anything after the lease lapsed, it says 503 as any node that cannot tell, until it
    reads the store again."""
    import uuid

    from edge.store.base import StoreUnavailable
    from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    try:
        async for edge in open_edge(tmp_path, store=REDIS_URL, redis_prefix=prefix, lease_ttl=0.5):
            fake = await edge.add_broadcaster("a")
            sid = (await edge.create_stream())["id"]
            await carried(edge, sid, "a")
            fake.add(sid, "source", 0, 1, 2)

            async def status(code: int) -> bool:
                return (await edge.playlist(sid)).status_code == code

            await edge.wait_for(lambda: status(200))
            store = edge.svc.store
            down = [True]

            def failing(method):  # type: ignore[no-untyped-def]
                async def call(*args, **kwargs):  # type: ignore[no-untyped-def]
                    if down[0]:
                        raise StoreUnavailable("redis restarting")
                    return await method(*args, **kwargs)
                return call

            for part, names in ((store.leases, ("acquire", "holder", "release", "announce")),
                                (store.playlists, ("revision", "load", "save")),
                                (store.streams, ("get",))):
                for name in names:
                    monkeypatch.setattr(part, name, failing(getattr(part, name)))
            await asyncio.sleep(1.0)  # two lease TTLs: lapsed, in a store that answered nobody since
            assert await status(200)  # nobody could take it: the last publisher keeps serving
            await store.ping()  # the store answers for a moment: another node may hold the lease now
            for _ in range(5):
                assert await status(503)
                await asyncio.sleep(0.05)
            down[0] = False
            await edge.wait_for(lambda: status(200))
    finally:
        await delete_prefix(REDIS_URL, prefix)


@pytest.mark.parametrize("blip", [False, True])
async def test_a_node_taking_a_lease_back_asks_every_carrier_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blip: bool) -> None:
    """While another node held the lease, the ingest may have gone to a carrier this node had left
    alone (everything it listed had left the window): taking the lease back, the node asks every
    carrier at once, not only once discovery next comes round; also when its first read of the
    store after taking the lease fails (`blip`: a store hiccup between the two)."""
    import uuid

    from edge.playlists.cadence import NEVER, Cadence, Watch, due
    from edge.playlists.feed import lease_key
    from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    try:
        async for edge in open_edge(tmp_path, store=REDIS_URL, redis_prefix=prefix, lease_ttl=0.5,
                                    discovery_interval=60.0):
            a, b = await edge.add_broadcaster("a"), await edge.add_broadcaster("b")
            sid = (await edge.create_stream())["id"]
            await carried(edge, sid, "a", "b")
            a.add(sid, "source", 0, 1, 2)
            await edge.wait_for(lambda: edge.playlist(sid), timeout=5.0)
            feed = edge.svc.playlists.feeds[sid]
            await edge.wait_for(lambda: ("b", "source") in feed.watches)
            # As the node saw it: b listed 0 long ago, and is left alone.
            old = edge.svc.clock() - 3600
            feed._watches[("b", "source")] = Watch(asked_at=old + 100, answered=True, newest=0, duration=2.0,
                                                  seen_at=old, unseen_at=old - 1, sightings=5)
            assert due(feed.watches[("b", "source")], Cadence(retry=1.0, window=30.0)) == NEVER
            leases = edge.svc.store.leases
            key = lease_key(sid)
            for _ in range(20):  # another node takes it for a while (the feed may renew in between)
                await leases.release(key, edge.svc.node_id)
                if await leases.acquire(key, "another-node", 2.0):
                    break
            else:
                raise AssertionError("could not take the lease away")
            await edge.wait_for(lambda: not feed.leader, timeout=1.5)
            if blip:  # the first stored-revision read once the lease is back fails
                from edge.store.base import StoreUnavailable

                playlists, real_revision, failed = edge.svc.store.playlists, edge.svc.store.playlists.revision, []

                async def revision(*args, **kwargs):  # type: ignore[no-untyped-def]
                    if feed.leader and not failed:
                        failed.append(True)
                        raise StoreUnavailable("a blip right after the takeover")
                    return await real_revision(*args, **kwargs)

                monkeypatch.setattr(playlists, "revision", revision)
            asked = b.requests[f"/stream/{sid}/source.m3u8"]
            b.add(sid, "source", 3, 4)  # the ingest went to b meanwhile
            await edge.wait_for(lambda: feed.publishes_alone, timeout=5.0)  # the other's lease lapsed: back here
            await edge.wait_for(lambda: b.requests[f"/stream/{sid}/source.m3u8"] > asked, timeout=0.5)
            assert not blip or failed
    finally:
        await delete_prefix(REDIS_URL, prefix)


async def test_one_failed_lease_renewal_keeps_what_the_node_learnt_of_its_carriers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal that fails once (a shared store's blip) and succeeds at the next round, nobody else
    having published meanwhile: the node still knows each carrier's cadence. Forgetting it (taking
    the renewal for a takeover) made the next segments of every stream up to a second late."""
    import uuid

    from edge.store.base import StoreUnavailable
    from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    try:
        async for edge in open_edge(tmp_path, store=REDIS_URL, redis_prefix=prefix, lease_ttl=2.0):
            fake = await edge.add_broadcaster("a")
            sid = (await edge.create_stream())["id"]
            await carried(edge, sid, "a")
            fake.add(sid, "source", 0, 1, 2)
            await edge.wait_for(lambda: edge.playlist(sid), timeout=5.0)
            feed = edge.svc.playlists.feeds[sid]
            await edge.wait_for(lambda: ("a", "source") in feed.watches)
            leases = edge.svc.store.leases
            real_acquire = leases.acquire
            failed = 0

            async def blip(*args, **kwargs):  # type: ignore[no-untyped-def]
                nonlocal failed
                if failed == 0:
                    failed += 1
                    raise StoreUnavailable("redis blip")
                return await real_acquire(*args, **kwargs)

            monkeypatch.setattr(leases, "acquire", blip)
            marked = replace(feed.watches[("a", "source")], sightings=1000)  # what was learnt, marked
            feed._watches[("a", "source")] = marked
            feed._lease_until = float("-inf")  # the next round renews
            feed.poke()
            await edge.wait_for(lambda: failed == 1, timeout=5.0)
            await edge.wait_for(lambda: feed.publishes_alone, timeout=5.0)
            assert feed.leader
            assert ("a", "source") in feed.watches and feed.watches[("a", "source")].sightings >= 1000
    finally:
        await delete_prefix(REDIS_URL, prefix)


async def test_a_broadcaster_answering_304_keeps_its_segments_listed_and_new_ones_still_arrive(edge: Edge) -> None:
    fake = await edge.add_broadcaster("a", etag=True)
    stream = await edge.create_stream()
    sid = stream["id"]
    fake.add(sid, "source", 1, 2, 3)
    await carried(edge, sid, "a")

    async def listed() -> list[str]:
        response = await edge.playlist(sid)
        return [s.uri.rsplit("/", 1)[1] for s in parse(response).segments] if response.status_code == 200 else []

    await edge.wait_for(lambda: listed(), timeout=5.0)
    path = f"/stream/{sid}/source.m3u8"
    # Unchanged: asked conditionally and answered 304, which stands for the last playlist.
    await edge.wait_for(lambda: fake.not_modified[path] >= 2, timeout=5.0)
    assert await listed() == ["1.ts", "2.ts", "3.ts"]
    fake.add(sid, "source", 4)

    async def has_four() -> bool:
        return "4.ts" in await listed()

    await edge.wait_for(has_four, timeout=5.0)
    assert await listed() == ["1.ts", "2.ts", "3.ts", "4.ts"]
