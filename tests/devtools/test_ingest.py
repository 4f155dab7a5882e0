"""The ingest client against a real edge and reference broadcasters: real-time cutting with ffmpeg,
failover of the same segment when a broadcaster refuses or dies, rotation, and both command lines."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from devtools.broadcaster import ReferenceBroadcaster
from devtools.ingest import Ingest
from devtools.media import TestPattern
from tests.conftest import API_KEY, BROADCASTER_TOKEN, EdgeProcess, auth
from tests.devtools.conftest import MakeBroadcaster, admin_broadcasters
from tests.media import require

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "P144p30fps16x9"


def small_ingest(edge: EdgeProcess, duration: float, **kwargs: object) -> Ingest:
    return Ingest(edge.url, API_KEY, pattern=TestPattern(320, 180, 25), presets=(PROFILE,),
                  segment_seconds=1.0, duration=duration, **kwargs)  # type: ignore[arg-type]


async def wait_for(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def current(ingest: Ingest, broadcasters: list[ReferenceBroadcaster]) -> ReferenceBroadcaster:
    return next(b for b in broadcasters if b.url == ingest.stats.current)


def assert_moved_with_the_failed_segment(ingest: Ingest, first: ReferenceBroadcaster) -> int:
    """Every segment arrived exactly once somewhere; the first failed one was retried, with the
    same number, on another broadcaster. Returns that number."""
    failed = [e for e in ingest.events if e.kind == "failed"]
    # One failure only: the edge still offers the bad one (its heartbeat TTL has not run out), but
    # the ingest passes it over.
    assert len(failed) == 1 and failed[0].broadcaster == first.url
    n = failed[0].segment
    assert n is not None
    assert ingest.sent[n] != first.url  # the same segment, on another broadcaster
    assert all(ingest.sent[k] == first.url for k in range(n))
    assert sorted(ingest.sent) == list(range(ingest.stats.cut))
    assert ingest.stats.dropped == 0 and ingest.stats.switches >= 1
    return n


async def merged_origins(edge: EdgeProcess, sid: str, rendition: str) -> set[str]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{edge.url}/stream/{sid}/{rendition}.m3u8")
    if response.status_code != 200:
        return set()
    return {line.split("/stream/")[0] for line in response.text.splitlines() if line.startswith("http")}


async def test_a_refusing_broadcaster_is_left_and_the_same_segment_goes_to_another(
    edge: EdgeProcess, make_broadcaster: MakeBroadcaster
) -> None:
    require("ffmpeg")
    broadcasters = [await make_broadcaster(f"b{i}") for i in range(2)]
    ingest = small_ingest(edge, duration=5)
    sid = await ingest.start()
    try:
        await wait_for(lambda: ingest.stats.sent >= 2)
        first = current(ingest, broadcasters)
        first.set_faults(refuse_uploads=True)
        await ingest.wait()
    finally:
        await ingest.stop()
    n = assert_moved_with_the_failed_segment(ingest, first)
    assert first.stats.uploads_refused >= 1
    second = next(b for b in broadcasters if b is not first)
    # The edge merges both: the segments before n from the first, the rest from the second.
    expected = {first.url, second.url}
    deadline = time.monotonic() + 10
    while (origins := await merged_origins(edge, sid, PROFILE)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert origins == expected, f"segment {n} moved, but the edge merged {origins}"


async def test_a_broadcaster_that_dies_mid_stream_is_replaced_for_the_segment_it_lost(
    edge: EdgeProcess, make_broadcaster: MakeBroadcaster
) -> None:
    require("ffmpeg")
    broadcasters = [await make_broadcaster(f"b{i}") for i in range(2)]
    ingest = small_ingest(edge, duration=5)
    await ingest.start()
    try:
        await wait_for(lambda: ingest.stats.sent >= 2)
        first = current(ingest, broadcasters)
        await first.die()
        await ingest.wait()
    finally:
        await ingest.stop()
    assert_moved_with_the_failed_segment(ingest, first)


async def test_segments_are_cut_at_real_time_and_rotation_moves_between_broadcasters(
    edge: EdgeProcess, make_broadcaster: MakeBroadcaster
) -> None:
    require("ffmpeg")
    broadcasters = [await make_broadcaster(f"b{i}", transcode="copy") for i in range(3)]
    ingest = small_ingest(edge, duration=5, switch_every=2)
    await ingest.run()
    sent = [e for e in ingest.events if e.kind == "sent"]
    assert len(sent) == ingest.stats.cut >= 4
    # Real time: about one 1 s segment a second, not all at once (the bound is generous).
    assert sent[-1].at - sent[0].at >= 0.5 * (len(sent) - 1)
    assert ingest.stats.switches >= 1 and ingest.stats.failures == 0
    assert len(set(ingest.sent.values())) >= 2
    carried = {b.url for b in broadcasters if b.streams() == [ingest.stream_id]}
    assert carried == set(ingest.sent.values())


async def test_the_command_lines_push_a_test_pattern_through_a_broadcaster(tmp_path: Path, edge: EdgeProcess) -> None:
    require("ffmpeg")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    broadcaster = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devtools.broadcaster", "--port", "0", "--name", "cli-1", "--edge", edge.url,
        "--token", BROADCASTER_TOKEN, "--region", "eu", "--latitude", "50.1", "--longitude", "8.7",
        "--heartbeat", "0.5", "--transcode", "copy",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert broadcaster.stdout is not None
        url = (await asyncio.wait_for(broadcaster.stdout.readline(), 15)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        ingest = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devtools.ingest", "--edge", edge.url, "--api-key", API_KEY,
            "--test-pattern", "--size", "320x180", "--presets", PROFILE,
            "--segment-seconds", "1", "--duration", "3", "--end-stream",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(ingest.communicate(), 30)
        progress = err.decode()
        assert ingest.returncode == 0, progress
        assert "playback: " in progress and "finished" in progress
        assert f"to {url}" in progress  # the progress line names the broadcaster
        async with httpx.AsyncClient() as http:
            streams = (await http.get(f"{edge.url}/api/stream", headers=auth())).json()
        assert streams[0]["ended"] is True  # --end-stream
    finally:
        if broadcaster.returncode is None:
            broadcaster.send_signal(signal.SIGTERM)
        await asyncio.wait_for(broadcaster.wait(), 15)
    assert broadcaster.returncode == 0
    assert (await admin_broadcasters(edge))["cli-1"]["state"] == "draining"  # a graceful stop drains
