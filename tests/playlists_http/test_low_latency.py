"""LL-HLS for whole segments over real HTTP (draft-pantos-hls-rfc8216bis §6.2.5): blocking playlist
reloads and Playlist Delta Updates, checked strictly tag by tag, with the 400 / 503 rules."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.playlists_http.harness import Edge, open_edge, serve_on_loopback

TARGET = 1  # fixed, so that "three target durations" is 3 s of a test
SEGMENT_S = 1.0


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in open_edge(tmp_path, target_duration=TARGET, playlist_window=20.0):
        yield e


@pytest.fixture
async def base(edge: Edge) -> AsyncIterator[str]:
    async for url in serve_on_loopback(edge):
        yield url


def strict(text: str) -> dict:
    """A strict reading of one media playlist: every line known, each header tag once and in the
    header, EXT-X-SKIP right after the header, versions as the tags require."""
    lines = text.split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == "", text
    header: dict[str, str] = {}
    segments: list[str] = []
    skipped = None
    pending_extinf = False
    for line in lines[1:-1]:
        tag, _, value = line.partition(":")
        if tag in ("#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE",
                   "#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-SERVER-CONTROL"):
            assert not segments and skipped is None and tag not in header, f"{tag} misplaced or repeated:\n{text}"
            header[tag] = value
        elif tag == "#EXT-X-SKIP":
            assert skipped is None and not segments, text
            name, _, count = value.partition("=")
            assert name == "SKIPPED-SEGMENTS" and count.isdigit() and int(count) > 0, line
            skipped = int(count)
        elif tag == "#EXTINF":
            assert not pending_extinf
            duration = float(value.rstrip(","))
            assert round(duration) <= int(header["#EXT-X-TARGETDURATION"])
            pending_extinf = True
        elif tag in ("#EXT-X-DISCONTINUITY", "#EXT-X-PROGRAM-DATE-TIME", "#EXT-X-ENDLIST"):
            pass
        else:
            assert pending_extinf and line.startswith("http"), f"unexpected line {line!r}:\n{text}"
            segments.append(line)
            pending_extinf = False
    control = dict(a.split("=") for a in header["#EXT-X-SERVER-CONTROL"].split(","))
    target = int(header["#EXT-X-TARGETDURATION"])
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    assert float(control["HOLD-BACK"]) >= 3 * target
    assert float(control["CAN-SKIP-UNTIL"]) >= 6 * target
    assert int(header["#EXT-X-VERSION"]) == (9 if skipped else 3)
    msn = int(header["#EXT-X-MEDIA-SEQUENCE"])
    return {"msn": msn, "skipped": skipped or 0, "segments": segments,
            "next_msn": msn + (skipped or 0) + len(segments), "ended": "#EXT-X-ENDLIST" in lines, "target": target}


async def live(edge: Edge, first: int = 0, count: int = 4) -> tuple[str, object]:
    fake = await edge.add_broadcaster("a", segment_duration=SEGMENT_S, window=40)
    stream = await edge.create_stream(dvrWindowSeconds=60)
    sid = stream["id"]
    await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
    fake.add(sid, "source", *range(first, first + count))
    return sid, fake


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, CIMultiDict[str], str]:
    async with session.get(url) as response:
        return response.status, CIMultiDict(response.headers), await response.text()


async def settled(session: aiohttp.ClientSession, url: str, segments: int) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, _, text = await get(session, url)
        if status == 200 and len(strict(text)["segments"]) >= segments:
            return strict(text)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url}: not {segments} segments in time")


async def test_a_blocking_reload_waits_for_its_msn_and_is_cacheable_six_target_durations(edge: Edge, base: str) -> None:
    sid, fake = await live(edge)
    url = f"{base}/stream/{sid}/source.m3u8"
    async with aiohttp.ClientSession() as session:
        now = await settled(session, url, 4)
        wanted = now["next_msn"]
        blocked = asyncio.create_task(get(session, f"{url}?_HLS_msn={wanted}"))
        await asyncio.sleep(0.5)
        assert not blocked.done(), "answered before the segment existed"
        started = time.monotonic()
        fake.add(sid, "source", 4)
        status, headers, text = await asyncio.wait_for(blocked, 3 * TARGET)
        assert status == 200, text
        assert time.monotonic() - started < 1.0  # woken by the new version, not by a poll of its own
        answer = strict(text)
        assert answer["next_msn"] > wanted
        assert headers["Cache-Control"] == f"public, max-age={6 * TARGET}"
        assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
        # Already published: answered at once, with the same lifetime.
        status, headers, again = await get(session, f"{url}?_HLS_msn={wanted}")
        assert status == 200 and strict(again)["next_msn"] > wanted
        assert headers["Cache-Control"] == f"public, max-age={6 * TARGET}"
        # A plain reload keeps the short lifetime.
        status, headers, _ = await get(session, url)
        assert headers["Cache-Control"] == f"public, max-age={max(1, TARGET // 2)}"


async def test_too_far_ahead_is_400_at_once_and_too_late_is_503_after_three_target_durations(edge: Edge, base: str) -> None:
    sid, _ = await live(edge)
    url = f"{base}/stream/{sid}/source.m3u8"
    async with aiohttp.ClientSession() as session:
        last = (await settled(session, url, 4))["next_msn"] - 1
        started = time.monotonic()
        status, _, text = await get(session, f"{url}?_HLS_msn={last + 3}")
        assert status == 400 and "_HLS_msn" in text
        assert time.monotonic() - started < 0.5
        started = time.monotonic()
        status, headers, text = await get(session, f"{url}?_HLS_msn={last + 2}")  # allowed, never comes
        waited = time.monotonic() - started
        assert status == 503, text
        assert 3 * TARGET - 0.1 <= waited < 3 * TARGET + 1.0
        assert "max-age" in headers["Cache-Control"]


async def test_query_order_does_not_matter_other_queries_are_ignored_and_bad_directives_refused(edge: Edge, base: str) -> None:
    sid, _ = await live(edge, count=12)
    url = f"{base}/stream/{sid}/source.m3u8"
    async with aiohttp.ClientSession() as session:
        msn = (await settled(session, url, 12))["next_msn"] - 1
        one = await get(session, f"{url}?_HLS_msn={msn}&_HLS_skip=YES")
        other = await get(session, f"{url}?_HLS_skip=YES&_HLS_msn={msn}")
        assert one[0] == other[0] == 200
        assert one[2] == other[2] and one[1]["ETag"] == other[1]["ETag"]
        buster = await get(session, f"{url}?_HLS_skip=YES&t=17&_HLS_msn={msn}")  # a CDN's cache-buster
        assert buster[0] == 200 and buster[1]["ETag"] == one[1]["ETag"]
        for query, name in ((f"_HLS_msn={msn}&_HLS_part=0", "_HLS_part"),
                            ("_HLS_msn=abc", "_HLS_msn"), ("_HLS_skip=v2", "_HLS_skip")):
            status, _, text = await get(session, f"{url}?{query}")
            assert status == 400 and text.startswith(name + ":"), (query, status, text)


async def test_delta_updates_skip_what_is_beyond_the_skip_boundary_and_rebuild_the_playlist(edge: Edge, base: str) -> None:
    sid, fake = await live(edge, count=14)
    url = f"{base}/stream/{sid}/source.m3u8"
    async with aiohttp.ClientSession(auto_decompress=True) as session:
        full = await settled(session, url, 14)
        status, headers, text = await get(session, f"{url}?_HLS_skip=YES")
        assert status == 200
        delta = strict(text)
        # 14 one-second segments, CAN-SKIP-UNTIL 6 s: the first 8 are left out.
        assert delta["skipped"] == 8 and delta["msn"] == full["msn"]
        assert full["segments"][:8] + delta["segments"] == full["segments"]
        assert headers["ETag"] != (await get(session, url))[1]["ETag"]
        # Blocking and delta together: the next segment, as a delta.
        blocked = asyncio.create_task(get(session, f"{url}?_HLS_msn={full['next_msn']}&_HLS_skip=YES"))
        await asyncio.sleep(0.3)
        fake.add(sid, "source", 14)
        status, headers, text = await asyncio.wait_for(blocked, 3 * TARGET)
        newer = strict(text)
        assert status == 200 and newer["next_msn"] == full["next_msn"] + 1
        assert newer["skipped"] == 9 and newer["segments"][-1].endswith("/14.ts")
        assert headers["Cache-Control"] == f"public, max-age={6 * TARGET}"
        # gzip too, as for full playlists.
        async with session.get(f"{url}?_HLS_skip=YES", headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"


async def test_directives_are_ignored_once_the_playlist_has_ended(edge: Edge, base: str) -> None:
    sid, _ = await live(edge)
    url = f"{base}/stream/{sid}/source.m3u8"
    async with aiohttp.ClientSession() as session:
        last = (await settled(session, url, 4))["next_msn"] - 1
        async with session.post(f"{base}/api/stream/{sid}/end", headers={"Authorization": "Bearer test-api-key"}):
            pass
        deadline = time.monotonic() + 10
        while not strict((await get(session, url))[2])["ended"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        started = time.monotonic()
        status, headers, text = await get(session, f"{url}?_HLS_msn={last + 50}")
        assert status == 200 and strict(text)["ended"]
        assert time.monotonic() - started < 0.5
        assert headers["Cache-Control"] == "public, max-age=3600"


async def test_many_blocked_reloads_share_one_wait_and_are_all_woken(edge: Edge, base: str) -> None:
    sid, fake = await live(edge)
    url = f"{base}/stream/{sid}/source.m3u8"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        wanted = (await settled(session, url, 4))["next_msn"]
        blocked = [asyncio.create_task(get(session, f"{url}?_HLS_msn={wanted}")) for _ in range(300)]
        await asyncio.sleep(1.0)
        feed = edge.svc.playlists.feeds[sid]
        assert len(feed.rendered._next) == 1  # one future for the rendition, however many wait
        fake.add(sid, "source", 4)
        answers = await asyncio.wait_for(asyncio.gather(*blocked), 3 * TARGET)
        assert {status for status, _, _ in answers} == {200}
        assert len({text for _, _, text in answers}) == 1
