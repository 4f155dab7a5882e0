"""The segment store's contract, for both backends: the directory and S3 (against moto's server)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from edge.segments.s3 import S3Store
from edge.segments.store import DirectoryStore, SegmentStore

SID = "8c5f6b5e-0d1c-4a5e-9b1f-0123456789ab"
OTHER = "8c5f6b5e-0d1c-4a5e-9b1f-ba9876543210"


@pytest.fixture(params=["directory", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SegmentStore]:
    if request.param == "directory":
        backend: SegmentStore = DirectoryStore(tmp_path / "segments", max_bytes=10**9, retention=3600)
    else:
        backend = S3Store(request.getfixturevalue("s3_url"))
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_put_get_exists_and_usage(store: SegmentStore) -> None:
    key = f"{SID}/source/7.ts"
    assert await store.get(key) is None and not await store.exists(key)
    await store.put(key, b"\x47" * 188 * 10)
    assert await store.exists(key)
    assert await store.get(key) == b"\x47" * 188 * 10
    await store.put(f"{SID}/P360p/e1-7.ts", b"x" * 100)
    usage = await store.usage()
    assert (usage.objects, usage.bytes) == (2, 1880 + 100)


async def test_delete_prefix_deletes_one_stream_only(store: SegmentStore) -> None:
    for n in range(5):
        await store.put(f"{SID}/source/{n}.ts", b"a")
        await store.put(f"{SID}/720p/{n}.ts", b"b")
    await store.put(f"{OTHER}/source/0.ts", b"c")
    assert await store.delete_prefix(f"{SID}/") == 10
    assert not await store.exists(f"{SID}/source/0.ts")
    assert await store.get(f"{OTHER}/source/0.ts") == b"c"
    assert (await store.usage()).objects == 1


async def test_the_directory_store_keeps_its_size_bound_and_retention(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "segments", max_bytes=1000, retention=60)
    await store.open()
    for n in range(15):  # 1,500 bytes into a 1,000-byte store: the oldest go first
        await store.put(f"{SID}/source/{n}.ts", b"z" * 100)
        path = tmp_path / "segments" / SID / "source" / f"{n}.ts"
        os.utime(path, (time.time() - 30 + n, time.time() - 30 + n))
    usage = await store.usage()
    assert usage.bytes <= 1000
    assert await store.exists(f"{SID}/source/14.ts") and not await store.exists(f"{SID}/source/0.ts")
    # retention: everything older than 60 s goes at the next sweep
    assert await store.sweep(time.time() + 120) == usage.objects
    assert (await store.usage()).objects == 0


async def test_the_directory_store_refuses_keys_outside_it(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "segments", max_bytes=1000, retention=60)
    await store.open()
    with pytest.raises(ValueError):
        await store.put("../escape.ts", b"x")
    with pytest.raises(ValueError):
        await store.get("/etc/passwd")
