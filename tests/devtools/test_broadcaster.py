"""The reference broadcaster against a real edge: the hook, go-livepeer's HLS layout with real
transcodes, registration and heartbeats, idle streams, and the faults the demo switches on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.media import probe
from tests.conftest import EdgeProcess, start_edge
from tests.devtools.conftest import CREDENTIALS, MakeBroadcaster, admin_broadcasters, create_stream
from tests.media import pattern_segments, require

PROFILE = "P144p30fps16x9"  # 256x144


async def put(url: str, body: bytes, duration_ms: int = 2000) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.put(url, content=body,
                              headers={"Content-Duration": str(duration_ms), "Content-Resolution": "320x180"})


async def until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """One edge for the module: these tests never ask it to choose among broadcasters, so the ones
    earlier tests left registered do not matter."""
    process = start_edge(tmp_path_factory.mktemp("edge"), env=CREDENTIALS)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    return pattern_segments(tmp_path_factory.mktemp("media"), seconds=6)  # three 2 s segments


async def test_an_upload_for_a_stream_the_edge_does_not_know_is_refused(
    edge: EdgeProcess, make_broadcaster: MakeBroadcaster
) -> None:
    b = await make_broadcaster("b1", transcode="copy")
    unknown = "0d4c8a4e-8b1a-4c43-9c55-2f6f2b6f0f00"
    response = await put(f"{b.url}/live/{unknown}/0.ts", b"\x47" * 188)
    assert response.status_code == 403
    assert "not found" in response.text  # the edge's reason is passed on
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{b.url}/stream/{unknown}/source.m3u8")).status_code == 404
    assert b.streams() == []


async def test_uploads_are_transcoded_and_served_the_way_go_livepeer_serves_them(
    edge: EdgeProcess, make_broadcaster: MakeBroadcaster, segments: list[bytes]
) -> None:
    require("ffmpeg")
    b = await make_broadcaster("b1", transcode="ffmpeg", window=2)
    sid = await create_stream(edge, [PROFILE])
    for n, duration_ms in zip((100, 101, 102), (2000, 2000, 1500)):
        response = await put(f"{b.url}/live/{sid}/{n}.ts", segments[n - 100], duration_ms)
        assert response.status_code == 200, response.text

    async with httpx.AsyncClient() as http:
        master = await http.get(f"{b.url}/stream/{sid}.m3u8")
        media = await http.get(f"{b.url}/stream/{sid}/{PROFILE}.m3u8")
        transcoded = await http.get(f"{b.url}/stream/{sid}/{PROFILE}/101.ts")
        source = await http.get(f"{b.url}/stream/{sid}/source/101.ts")
        missing = await http.get(f"{b.url}/stream/{sid}/{PROFILE}/7.ts")

    assert master.status_code == 200
    assert f"RESOLUTION=256x144\n{sid}/{PROFILE}.m3u8" in master.text
    assert f"{sid}/source.m3u8" in master.text
    # The window of 2 slid once: the broadcaster's own counter says 1; the URIs carry the ingest's n.
    assert media.text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-TARGETDURATION:2\n"
        f"#EXTINF:2.000,\n/stream/{sid}/{PROFILE}/101.ts\n"
        f"#EXTINF:1.500,\n/stream/{sid}/{PROFILE}/102.ts\n"
    )
    for response in (master, media):
        assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert response.headers["cache-control"] == "max-age=5"
    assert transcoded.headers["content-type"] == "video/mp2t"
    for response in (master, media, transcoded, missing):  # players fetch cross-origin
        assert response.headers["access-control-allow-origin"] == "*"
    assert missing.status_code == 404

    out, src = await probe(transcoded.content), await probe(source.content)
    assert (out.width, out.height) == (256, 144)
    assert (src.width, src.height) == (320, 180)
    # -copyts: the rendition keeps the source's timestamps, so broadcasters continue each other.
    assert out.start_time == pytest.approx(src.start_time, abs=0.05)


async def test_heartbeats_register_the_broadcaster_with_its_streams_and_stop_drains_it(
    edge: EdgeProcess, make_broadcaster: MakeBroadcaster
) -> None:
    b = await make_broadcaster("fra-1", transcode="copy", region="eu", latitude=50.11, longitude=8.68,
                               heartbeat_interval=0.2, capacity=7)
    listed = (await admin_broadcasters(edge))["fra-1"]
    assert listed["address"] == b.url
    assert (listed["region"], listed["latitude"], listed["longitude"], listed["capacity"]) == ("eu", 50.11, 8.68, 7)
    assert listed["health"]["serving"] is True

    sid = await create_stream(edge, [PROFILE])
    assert (await put(f"{b.url}/live/{sid}/0.ts", b"\x47" * 188)).status_code == 200

    async def reported() -> bool:
        doc = (await admin_broadcasters(edge))["fra-1"]
        return doc["streams"] == [sid] and doc["load"]["activeStreams"] == 1

    await until(reported)
    await b.stop(drain=True)
    assert (await admin_broadcasters(edge))["fra-1"]["state"] == "draining"


async def test_an_idle_stream_is_dropped(edge: EdgeProcess, make_broadcaster: MakeBroadcaster) -> None:
    b = await make_broadcaster("b1", transcode="copy", idle_timeout=0.5)
    sid = await create_stream(edge, [PROFILE])
    assert (await put(f"{b.url}/live/{sid}/0.ts", b"\x47" * 188)).status_code == 200

    async def gone() -> bool:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{b.url}/stream/{sid}/source.m3u8")).status_code == 404

    await until(gone)
    assert b.streams() == []


async def test_faults_switch_on_and_off_at_run_time(edge: EdgeProcess, make_broadcaster: MakeBroadcaster) -> None:
    b = await make_broadcaster("b1", transcode="copy", max_segment_bytes=10_000)
    sid = await create_stream(edge, [PROFILE])
    upload = f"{b.url}/live/{sid}/0.ts"
    async with httpx.AsyncClient() as http:
        bad = await http.post(f"{b.url}/_faults", json={"slow": "very", "crash": True})
        assert bad.status_code == 422
        assert sorted(bad.json()["errors"]) == ["crash: unknown field", "slow: must be a number of seconds from 0 to 600"]

        assert (await http.post(f"{b.url}/_faults", json={"refuseUploads": True})).status_code == 200
        assert (await put(upload, b"\x47" * 188)).status_code == 403

        await http.post(f"{b.url}/_faults", json={"refuseUploads": False, "error5xx": True})
        failing = await http.get(f"{b.url}/stream/{sid}/source.m3u8")
        assert failing.status_code == 503 and failing.headers["access-control-allow-origin"] == "*"

        await http.post(f"{b.url}/_faults", json={"error5xx": False, "slow": 0.6})
        started = time.monotonic()
        assert (await put(upload, b"\x47" * 188)).status_code == 200
        assert time.monotonic() - started >= 0.6

        b.set_faults(slow=0)
        assert (await put(upload, b"\x47" * 20_000)).status_code == 413  # the segment size cap

        assert (await http.post(f"{b.url}/_faults", json={"die": True})).status_code == 200
        await until(lambda: asyncio.sleep(0, not b.running))
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{b.url}/stream/{sid}/source.m3u8")
    # Died, not drained: the edge still believes in it until its heartbeat TTL runs out.
    assert (await admin_broadcasters(edge))["b1"]["state"] == "active"
