"""Stored documents across versions: what a node of the previous version wrote, straight into
SQLite or Redis, is read back through the API by this one (a rolling upgrade on a shared Redis,
or an upgrade in place on SQLite), and what this one writes carries its version."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from broadcaster_registry.codec import VERSION as BROADCASTER_VERSION
from broadcaster_registry.codec import from_doc
from broadcaster_registry.model import Registration
from edge.store.redis import RedisStore
from edge.store.sqlite import SqliteStore
from edge.streams.codec import VERSION as STREAM_VERSION
from edge.streams.codec import from_document
from edge.streams.model import Profile, Stream
from tests.broadcasters.harness import T0, open_edge
from tests.conftest import ADMIN_TOKEN, auth

from .conftest import REDIS_URL, delete_prefix, require_redis

STREAM_ID = str(uuid.UUID(int=1, version=4))

# Version 1, as the previous release stored them: the same fields, no version.
OLD_STREAM = {
    "id": STREAM_ID, "name": "cam-old",
    "profiles": [{"name": "720p", "width": 1280, "height": 720, "bitrate": 2000000, "fps": 30}],
    "presets": [], "createdAt": 1_700_000_000_000, "endedAt": None, "dvrWindowSeconds": 120,
}
OLD_BROADCASTER = {
    "name": "fra", "address": "https://fra-1.example.net", "region": "eu", "latitude": 50.11,
    "longitude": 8.68, "capacity": 40,
    "load": {"activeStreams": 3, "cpu": 0.2, "bandwidthBps": None, "bandwidthCapacityBps": None},
    "streams": [STREAM_ID], "state": "draining", "source": "self", "lastHeartbeat": T0, "registeredAt": T0 - 60,
    "probe": {"consecutiveFailures": 0, "consecutiveSuccesses": 0, "down": False, "lastProbeAt": None},
    "ejection": {"consecutiveFailures": 2, "timesEjected": 0, "ejectedUntil": None},
}
PLACEHOLDER = Stream(id=STREAM_ID, name="x", profiles=(Profile("720p", 1280, 720, 2000000, 30),), created_at=1)


async def assert_read_through_the_api(tmp_path: Path, **settings: Any) -> None:
    async with open_edge(tmp_path / "edge", **settings) as edge:
        stream = (await edge.client.get(f"/api/stream/{STREAM_ID}", headers=auth())).json()
        assert {k: stream[k] for k in OLD_STREAM} == OLD_STREAM
        assert stream["renditions"]["720p"] == f"/stream/{STREAM_ID}/720p.m3u8" and stream["isActive"] is True
        assert [s["id"] for s in (await edge.client.get("/api/stream", headers=auth())).json()] == [STREAM_ID]

        listed = await edge.listed("fra")
        assert {k: listed[k] for k in OLD_BROADCASTER} == OLD_BROADCASTER
        assert listed["health"]["reason"] == "draining"
        ended = await edge.client.post(f"/api/stream/{STREAM_ID}/end", headers=auth())
        assert ended.status_code == 200 and ended.json()["ended"] is True
        drained = await edge.client.put("/api/broadcasters/fra/state", json={"state": "active"}, headers=auth(ADMIN_TOKEN))
        assert drained.status_code == 200, drained.text


async def test_a_node_reads_the_previous_versions_documents_from_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "edge" / "edge.db"
    store = SqliteStore(path)
    await store.open()
    await store.streams.create(PLACEHOLDER)  # the rows exist; then their documents as v1 wrote them
    await store.registry.upsert("fra", Registration(address="https://fra-1.example.net"), T0)
    await store.registry.flush()
    conn = store.db.conn
    conn.execute("UPDATE streams SET created_at = ?, doc = ? WHERE id = ?",
                 (OLD_STREAM["createdAt"], json.dumps(OLD_STREAM), STREAM_ID))
    conn.execute("UPDATE broadcasters SET doc = ? WHERE name = 'fra'", (json.dumps(OLD_BROADCASTER),))
    await store.close()

    await assert_read_through_the_api(tmp_path)

    rewritten = SqliteStore(path)
    await rewritten.open()
    try:
        (stream_doc,) = rewritten.db.conn.execute("SELECT doc FROM streams").fetchone()
        (broadcaster_doc,) = rewritten.db.conn.execute("SELECT doc FROM broadcasters").fetchone()
    finally:
        await rewritten.close()
    assert json.loads(stream_doc)["version"] == STREAM_VERSION
    assert json.loads(broadcaster_doc)["version"] == BROADCASTER_VERSION


async def test_a_node_reads_the_previous_versions_documents_from_redis(tmp_path: Path, redis_prefix: str) -> None:
    require_redis()
    store = RedisStore(REDIS_URL, redis_prefix)
    try:
        await store.open()
        await store.streams.create(
            Stream(id=STREAM_ID, name="x", profiles=PLACEHOLDER.profiles, created_at=OLD_STREAM["createdAt"])
        )
        await store.registry.upsert("fra", Registration(address="https://fra-1.example.net", streams=frozenset({STREAM_ID})), T0)
        client = store.db.client
        await client.set(store.db.key("stream", STREAM_ID), json.dumps(OLD_STREAM))
        await client.set(store.db.key("broadcaster", "fra"), json.dumps(OLD_BROADCASTER), keepttl=True)
        await store.close()

        await assert_read_through_the_api(tmp_path, store=REDIS_URL, redis_prefix=redis_prefix)

        store = RedisStore(REDIS_URL, redis_prefix)
        raw_stream = await store.db.client.get(store.db.key("stream", STREAM_ID))
        raw_broadcaster = await store.db.client.get(store.db.key("broadcaster", "fra"))
        assert json.loads(raw_stream)["version"] == STREAM_VERSION
        assert json.loads(raw_broadcaster)["version"] == BROADCASTER_VERSION
    finally:
        await store.close()
        await delete_prefix(REDIS_URL, redis_prefix)


@pytest.mark.parametrize("version", [0, 3, "2"])
def test_a_document_of_a_version_this_node_cannot_read_is_refused(version: object) -> None:
    with pytest.raises(ValueError, match="version"):
        from_document({**OLD_STREAM, "version": version})
    with pytest.raises(ValueError, match="version"):
        from_doc({**OLD_BROADCASTER, "version": version})


def test_probed_media_a_node_cannot_read_is_left_out_not_served() -> None:
    """An entry written by a newer node (or damaged) that this node cannot validate is dropped,
    so nothing stored reaches a master playlist unchecked; the others are kept."""
    doc = {**OLD_STREAM, "version": STREAM_VERSION, "media": {
        "720p": {"codecs": ["avc1.64001f"], "width": 1280, "height": 720},
        "source": {"codecs": ['avc1.64001f",URI="x']},
        "bad name/": {"codecs": ["mp4a.40.2"]},
        "other": {"codecs": "mp4a.40.2", "width": True},
    }}
    stream = from_document(doc)
    assert [m.rendition for m in stream.media] == ["720p"]
    assert stream.media[0].codecs == ("avc1.64001f",)
