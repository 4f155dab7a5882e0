"""Probing through a real edge: real ffmpeg segments on a loopback broadcaster, the master playlist
naming what each rendition carries once its first segments are published, each rendition fetched for
probing once, and the knowledge kept in the store for the next node (here: the next start)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import m3u8

from tests.media import require
from tests.playlists_http.harness import Edge
from tests.playlists_http.harness import open_edge as _open_edge
from tests.playlists_http.harness import serve_on_loopback
from tests.media_probe.test_ts import ffprobe_streams

P360 = {"name": "P360p30fps16x9", "width": 640, "height": 360, "bitrate": 1_000_000, "fps": 25}
SEGMENTS = 4
open_edge = asynccontextmanager(_open_edge)


def encode(directory: Path, size: str, video: list[str]) -> list[bytes]:
    """Four 2 s MPEG-TS segments of a test pattern with AAC-LC, keyframe at every cut."""
    directory.mkdir(parents=True)
    subprocess.run(
        [require("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(2 * SEGMENTS), *video, "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-c:a", "aac",
         "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts", str(directory / "%d.ts")],
        check=True, timeout=120,
    )
    return [(directory / f"{n}.ts").read_bytes() for n in range(SEGMENTS)]


async def master(edge: Edge, sid: str) -> m3u8.M3U8:
    response = await edge.client.get(f"/stream/{sid}.m3u8")
    assert response.status_code == 200
    return m3u8.loads(response.text)


async def test_the_master_names_what_each_rendition_carries_probed_once(tmp_path: Path) -> None:
    source = encode(tmp_path / "source", "1280x720", ["-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast"])
    low = encode(tmp_path / "low", "640x360", ["-c:v", "libx264", "-profile:v", "baseline", "-level", "3.0"])
    async with open_edge(tmp_path / "one") as edge:
        fake = await edge.add_broadcaster("a")
        fake.rendition_media = {"source": dict(enumerate(source)), "P360p30fps16x9": dict(enumerate(low))}
        sid = (await edge.create_stream(profiles=[P360]))["id"]
        await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
        for rendition in ("source", "P360p30fps16x9"):
            fake.add(sid, rendition, *range(SEGMENTS))
        before = await master(edge, sid)
        assert [p.stream_info.codecs for p in before.playlists] == [None, None]  # nothing guessed
        await edge.playlist(sid)  # a player: the feed starts

        async def probed() -> bool:
            return all(p.stream_info.codecs for p in (await master(edge, sid)).playlists)

        await edge.wait_for(probed, timeout=10)
        after = await master(edge, sid)
        infos = [p.stream_info for p in after.playlists]
        assert [i.codecs for i in infos] == ["avc1.64001f,mp4a.40.2", "avc1.42c01e,mp4a.40.2"]
        assert [i.resolution for i in infos] == [(1280, 720), (640, 360)]
        for info, segments in zip(infos, (source, low)):
            probed_ones = segments[1:]  # the newest three published
            peak = max(round(len(s) * 8 / 2.0) for s in probed_ones)
            assert info.average_bandwidth == round(sum(len(s) for s in probed_ones) * 8 / 6.0)
            assert info.bandwidth == (peak if info is infos[0] else max(peak, P360["bitrate"]))
        for name, segments in (("source", source), ("low", low)):  # what ffprobe reads there too
            streams = ffprobe_streams(tmp_path / name / "0.ts")
            video = next(s for s in streams if s.get("width"))
            assert (video["width"], video["height"]) in [i.resolution for i in infos]

        fetched = sum(n for path, n in fake.requests.items() if path.endswith(".ts"))
        assert fetched == 6  # three segments of each rendition, once
        assert 'edge_media_probes_total{outcome="named"} 2.0' in (await edge.client.get("/metrics")).text
        fake.add(sid, "source", SEGMENTS)
        fake.add(sid, "P360p30fps16x9", SEGMENTS)
        await edge.wait_for(lambda: edge.svc.playlists.feeds[sid].states["source"].next_number == SEGMENTS + 1)
        assert sum(n for path, n in fake.requests.items() if path.endswith(".ts")) == 6  # not on every poll

    async with open_edge(tmp_path / "one") as edge:  # the next start: from the store, no fetch
        assert [p.stream_info.codecs for p in (await master(edge, sid)).playlists] == [i.codecs for i in infos]
        fake = await edge.add_broadcaster("a")
        later = range(SEGMENTS + 1, 2 * SEGMENTS + 1)
        fake.rendition_media = {"source": {n: source[n % SEGMENTS] for n in later},
                                "P360p30fps16x9": {n: low[n % SEGMENTS] for n in later}}
        await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
        for rendition in ("source", "P360p30fps16x9"):
            fake.add(sid, rendition, *later)
        await edge.playlist(sid)
        feed = edge.svc.playlists.feeds[sid]
        await edge.wait_for(lambda: all(s.next_number == 2 * SEGMENTS + 1 for s in feed.states.values()))
        async with asynccontextmanager(serve_on_loopback)(edge) as url:
            # ffprobe reads the master as a player does: one program per variant, its streams as probed
            result = await asyncio.to_thread(subprocess.run, [
                require("ffprobe"), "-v", "error", "-show_entries",
                "program=program_id:program_tags=variant_bitrate:stream=codec_name,profile,width,height",
                "-of", "json", f"{url}/stream/{sid}.m3u8"], capture_output=True, timeout=60, check=True)
        programs = json.loads(result.stdout)["programs"]
        assert [int(p["tags"]["variant_bitrate"]) for p in programs] == [i.bandwidth for i in infos]
        videos = [next(s for s in p["streams"] if s["codec_name"] == "h264") for p in programs]
        assert [(v["profile"], v["width"], v["height"]) for v in videos] == [
            ("High", 1280, 720), ("Constrained Baseline", 640, 360)]


async def test_media_that_cannot_be_named_keeps_the_declaration(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        fake = await edge.add_broadcaster("a")
        fake.media = {n: b"\x47" + bytes(187) * 3 + b"not a transport stream" for n in range(SEGMENTS)}
        sid = (await edge.create_stream(profiles=[P360]))["id"]
        await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
        for rendition in ("source", "P360p30fps16x9"):
            fake.add(sid, rendition, *range(SEGMENTS))
        await edge.playlist(sid)
        await edge.wait_for(lambda: sum(n for p, n in fake.requests.items() if p.endswith(".ts")) >= 6)
        await edge.wait_for(lambda: not edge.svc.playlists.feeds[sid].prober._tasks)
        infos = [p.stream_info for p in (await master(edge, sid)).playlists]
        assert [i.codecs for i in infos] == [None, None]
        assert infos[1].resolution == (640, 360) and infos[1].bandwidth == 1_000_000
        assert 'edge_media_probes_total{outcome="unknown"} 2.0' in (await edge.client.get("/metrics")).text
