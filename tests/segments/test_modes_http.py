"""The segment modes end to end: an edge in-process, fake broadcasters on loopback that keep six
segments each, the directory segment store, and players fetching every URI they are given."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import m3u8
import pytest

from tests.conftest import ADMIN_TOKEN, auth
from tests.fakes import FakeBroadcaster
from tests.media import pattern_segments, require
from tests.playlists_http.harness import Edge, open_edge, parse, serve_on_loopback


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def carried(edge: Edge, sid: str, *names: str) -> None:
    for name in names:
        await edge.svc.store.registry.note_carrier(sid, name, edge.svc.clock())


async def download_all(edge: Edge, playlist: m3u8.M3U8) -> dict[str, bytes]:
    bodies = {}
    for segment in playlist.segments:
        response = await edge.client.get(segment.uri)
        assert response.status_code == 200, (segment.uri, response.status_code, response.text)
        assert "immutable" in response.headers["cache-control"]
        bodies[segment.uri] = response.content
    return bodies


async def test_a_ten_minute_dvr_window_lists_only_segments_that_download(tmp_path: Path) -> None:
    """Broadcasters keep 6 segments; the stream asks for 10 minutes of DVR. Time compressed: 2 s
    segments arrive every 20 ms (840 s of media in under 10 s; on a busy machine some slip out of
    the broadcasters' six before a poll sees them, and are passed as holes). Every segment listed
    downloads, with its own bytes, after the broadcasters are gone."""
    LAST = 419
    async for edge in open_edge(tmp_path, segment_mode="mirror", mirror_wait=5.0):
        fakes = [await edge.add_broadcaster(name, window=6) for name in ("a", "b")]
        media = {n: b"segment %d " % n + bytes(range(256)) * 4 for n in range(LAST + 1)}
        for fake in fakes:
            fake.media = media
        sid = (await edge.create_stream(dvrWindowSeconds=600))["id"]
        await carried(edge, sid, "a", "b")
        fakes[0].add(sid, "source", 0)
        await edge.wait_for(lambda: edge.playlist(sid), timeout=5)
        for n in range(1, LAST + 1):
            fakes[(n // 40) % 2].add(sid, "source", n)  # the ingest moves between them
            await asyncio.sleep(0.02)
        await edge.wait_for(lambda: _last_number(edge, sid, LAST), timeout=10)
        for fake in fakes:
            await fake.stop()
        playlist = parse(await edge.playlist(sid))
        listed = sum(s.duration for s in playlist.segments)
        assert 598 <= listed <= 604, listed  # about 10 minutes
        assert all(s.uri.startswith(f"/stream/{sid}/source/") for s in playlist.segments)
        bodies = await download_all(edge, playlist)
        for segment in playlist.segments:
            number = int(segment.uri.rsplit("/", 1)[1].removesuffix(".ts"))
            assert bodies[segment.uri] == media[number]
        metrics = (await edge.client.get("/metrics")).text
        assert metric(metrics, "edge_segment_direct_fallbacks_total") == 0
        assert metric(metrics, 'edge_segment_copies_total{outcome="copied"}') >= len(playlist.segments)


async def _last_number(edge: Edge, sid: str, number: int) -> bool:
    response = await edge.playlist(sid)
    return response.status_code == 200 and response.text.rstrip().endswith(f"/{number}.ts")


async def test_a_store_that_fails_costs_the_mirror_wait_then_segments_go_out_direct(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path, segment_mode="mirror", mirror_wait=0.5):
        fake = await edge.add_broadcaster("a")
        fake.media = {n: b"x" * 1000 for n in range(10)}

        async def broken(key: str, data: bytes) -> None:
            raise OSError("disk full")

        edge.svc.segment_store.put = broken  # type: ignore[union-attr, method-assign]
        sid = (await edge.create_stream())["id"]
        await carried(edge, sid, "a")
        fake.add(sid, "source", 0, 1, 2)
        started = time.monotonic()
        await edge.wait_for(lambda: _last_number(edge, sid, 2), timeout=5)
        waited = time.monotonic() - started
        assert 0.4 <= waited <= 3.0, waited  # the mirror wait (0.5 s) and a round or two, not a stall
        playlist = parse(await edge.playlist(sid))
        assert all(s.uri.startswith(fake.url) for s in playlist.segments)  # direct
        metrics = (await edge.client.get("/metrics")).text
        assert metric(metrics, "edge_segment_direct_fallbacks_total") == 3
        assert metric(metrics, 'edge_segment_copies_total{outcome="store_error"}') >= 3


async def test_redirect_mode_fails_over_to_another_carrier_of_the_same_number(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path, segment_mode="redirect"):
        a = await edge.add_broadcaster("a")
        b = await edge.add_broadcaster("b")
        for fake in (a, b):
            fake.media = {n: b"x" for n in range(10)}
        sid = (await edge.create_stream())["id"]
        await carried(edge, sid, "a", "b")
        a.add(sid, "source", 0, 1, 2)
        b.add(sid, "source", 0, 1, 2)
        await edge.wait_for(lambda: _last_number(edge, sid, 2), timeout=5)
        playlist = parse(await edge.playlist(sid))
        assert [s.uri for s in playlist.segments] == [f"/stream/{sid}/source/{n}.ts" for n in range(3)]
        first = await edge.client.get(playlist.segments[0].uri)
        assert first.status_code == 302 and int(re.search(r"max-age=(\d+)", first.headers["cache-control"])[1]) <= 2
        chosen = first.headers["location"]
        alive, dead = (b, a) if chosen.startswith(a.url) else (a, b)
        await dead.stop()
        edge.svc.playlists.poke(sid)

        async def moved() -> bool:
            response = await edge.client.get(playlist.segments[0].uri)
            return response.status_code == 302 and response.headers["location"].startswith(alive.url)

        await edge.wait_for(moved, timeout=5)
        assert (await edge.client.get(f"/stream/{sid}/source/99.ts")).status_code == 404
        assert (await edge.client.get(f"/stream/{sid}/source/..%2F1.ts")).status_code == 404


async def test_a_recording_plays_in_ffmpeg_from_first_to_last_segment_after_every_broadcaster_stopped(
    tmp_path: Path,
) -> None:
    ffmpeg = require("ffmpeg")
    segments = pattern_segments(tmp_path / "media", seconds=24)
    async for edge in open_edge(tmp_path, playlist_window=6.0):
        a = await edge.add_broadcaster("a", window=6)
        b = await edge.add_broadcaster("b", window=6)
        for fake in (a, b):
            fake.media = dict(enumerate(segments))
        created = await edge.create_stream(record=True)
        sid = created["id"]
        assert created["segmentMode"] == "mirror" and created["record"] is True
        await carried(edge, sid, "a", "b")
        a.add(sid, "source", 0)
        await edge.wait_for(lambda: edge.playlist(sid), timeout=5)
        for n in range(1, len(segments)):
            (a if n < 6 else b).add(sid, "source", n)  # a dies after 6: its segments live on in the store
            await asyncio.sleep(0.1)
        await edge.wait_for(lambda: _last_number(edge, sid, len(segments) - 1), timeout=10)
        assert (await edge.client.post(f"/api/stream/{sid}/end", headers=auth())).status_code == 200
        await a.stop()
        await b.stop()

        async def closed() -> bool:
            return "#EXT-X-ENDLIST" in (await edge.playlist(sid)).text

        await edge.wait_for(closed, timeout=10)
        text = (await edge.playlist(sid)).text
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
        playlist = m3u8.loads(text)
        assert [s.uri.rsplit("/", 1)[1] for s in playlist.segments] == [f"{n}.ts" for n in range(len(segments))]
        doc = (await edge.client.get(f"/api/stream/{sid}", headers=auth())).json()
        assert doc["recording"]["renditions"]["source"] == f"/stream/{sid}/source.m3u8"
        async for url in serve_on_loopback(edge):
            proc = await asyncio.create_subprocess_exec(
                ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "verbose",
                "-i", f"{url}/stream/{sid}/source.m3u8", "-f", "null", "-",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
            log = stderr.decode(errors="replace")
            assert proc.returncode == 0, log[-3000:]
            assert "Failed to open segment" not in log, log[-3000:]
            frames = max(int(m) for m in re.findall(r"frame=\s*(\d+)", log))
            assert frames >= 25 * (len(segments) * 2 - 1), (frames, log[-2000:])  # every segment, first to last
        store = edge.svc.segment_store
        assert store is not None and (await store.usage()).objects == len(segments)
        shown = (await edge.client.get("/api/segment-store", headers=auth(ADMIN_TOKEN))).json()
        assert shown["objects"] == len(segments) and shown["store"].startswith("directory ")
        assert (await edge.client.get("/api/segment-store", headers=auth())).status_code == 403
        # Served for the recording retention (3 days by default), then gone.
        real_clock = edge.svc.clock
        edge.svc.clock = lambda: real_clock() + 2 * 86400
        assert (await edge.playlist(sid)).status_code == 200
        edge.svc.clock = lambda: real_clock() + 4 * 86400
        assert (await edge.playlist(sid)).status_code == 404
        edge.svc.clock = real_clock
        assert (await edge.client.delete(f"/api/stream/{sid}", headers=auth())).status_code == 204
        assert (await store.usage()).objects == 0


async def test_a_copy_landing_after_the_round_stopped_waiting_is_published_at_once(tmp_path: Path) -> None:
    """Mirror mode: a round waits half a poll for its copies. One that lands later wakes the feed,
    and its number is published then, not at the next poll (here 3 s later)."""
    async for edge in open_edge(tmp_path, segment_mode="mirror", mirror_wait=60.0, poll_interval=6.0):
        fake = await edge.add_broadcaster("a")
        fake.media = {n: b"x" * 1000 for n in range(10)}
        store = edge.svc.segment_store
        assert store is not None
        real_put, release = store.put, asyncio.Event()

        async def slow_put(key: str, data: bytes) -> None:
            await release.wait()
            await real_put(key, data)

        store.put = slow_put  # type: ignore[method-assign]
        sid = (await edge.create_stream())["id"]
        await carried(edge, sid, "a")
        fake.add(sid, "source", 0)
        await edge.playlist(sid)  # a player starts the feed (nothing is published yet)
        feed = edge.svc.playlists.feeds[sid]
        await edge.wait_for(lambda: feed._copies_end != float("inf"), timeout=10)  # the round stopped waiting
        assert not await _last_number(edge, sid, 0)
        release.set()
        released = time.monotonic()
        await edge.wait_for(lambda: _last_number(edge, sid, 0), timeout=10)
        assert time.monotonic() - released < 1.5  # the next poll was 3 s away


async def test_a_copy_not_stored_within_the_mirror_wait_goes_out_direct_when_the_wait_runs_out(tmp_path: Path) -> None:
    """The store hangs: the number goes out direct when its mirror wait (1 s) runs out, not at the
    next poll (6 s here)."""
    async for edge in open_edge(tmp_path, segment_mode="mirror", mirror_wait=1.0, poll_interval=6.0):
        fake, sid = await _stream_on_a_hanging_store(edge)
        listed = time.monotonic()
        await edge.playlist(sid)  # a player starts the feed
        await edge.wait_for(lambda: _last_number(edge, sid, 0), timeout=10)
        assert time.monotonic() - listed < 3.0  # the wait (1 s) and a round; the next poll was 6 s away
        playlist = parse(await edge.playlist(sid))
        assert playlist.segments[-1].uri.startswith(fake.url)  # direct


async def test_a_round_failing_before_its_copies_does_not_spin_on_a_mirror_wait_run_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy is waited for (mirror mode), then the lease store fails: rounds fail before they reach
    the copies, and the mirror wait they noted runs out. The feed retries at the poll pace, not
    every 5 ms (180 rounds a second, each a call to a store that is down)."""
    from edge.store.base import StoreUnavailable

    async for edge in open_edge(tmp_path, segment_mode="mirror", mirror_wait=1.0, poll_interval=0.5,
                                hole_wait=3.0, rendition_wait=3.0, discovery_interval=60.0):
        fake, sid = await _stream_on_a_hanging_store(edge)
        await edge.playlist(sid)
        feed = edge.svc.playlists.feeds[sid]
        await edge.wait_for(lambda: feed._copies_end != float("inf"), timeout=10)  # a copy is waited for
        leases, calls = edge.svc.store.leases, []

        async def down(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(1)
            raise StoreUnavailable("store down")

        monkeypatch.setattr(leases, "acquire", down)
        feed._lease_until = float("-inf")  # the next round renews
        await asyncio.sleep(2.5)  # the mirror wait (1 s) runs out meanwhile
        assert 1 <= len(calls) <= 12, len(calls)  # a poll's pace is 5 in 2.5 s


async def _stream_on_a_hanging_store(edge: Edge) -> tuple[FakeBroadcaster, str]:
    """A stream whose broadcaster lists segment 0, with a segment store whose writes never return."""
    fake = await edge.add_broadcaster("a")
    fake.media = {n: b"x" * 1000 for n in range(10)}
    store = edge.svc.segment_store
    assert store is not None

    async def hanging(key: str, data: bytes) -> None:
        await asyncio.Event().wait()

    store.put = hanging  # type: ignore[method-assign]
    sid = (await edge.create_stream())["id"]
    await carried(edge, sid, "a")
    fake.add(sid, "source", 0)
    return fake, sid
