"""A process alone on its SQLite file writes broadcaster rows behind (SqliteRegistryRows.behind_s):
heartbeats cost no trip to the SQLite thread each, yet the file, read by the next start, holds every
change in the order it was made: the latest value of each name, nothing forgotten brought back,
nothing lost when a write fails and is tried again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from broadcaster_registry.model import Load, Registration
from edge.store import sqlite
from edge.store.base import StoreUnavailable

T0 = 1_700_000_000.0


def registration(n: int, streams: int = 0) -> Registration:
    return Registration(address=f"https://fra-{n}.example.net", load=Load(active_streams=streams))


def rows_in(path: Path) -> dict[str, dict[str, object]]:
    """What a new process would read: each row's document, through a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {name: json.loads(doc) for name, doc in conn.execute("SELECT name, doc FROM broadcasters")}


async def opened(path: Path, shared: bool = False) -> sqlite.SqliteStore:
    store = sqlite.SqliteStore(path, shared=shared, clock=lambda: T0)
    await store.open()
    return store


async def reopened(path: Path) -> dict[str, int | None]:
    """Each broadcaster's reported streams as a store opened afresh on `path` reads them."""
    store = await opened(path)
    try:
        return {b.name: b.load.active_streams for b in await store.registry.list_all()}
    finally:
        await store.close()


async def test_heartbeats_reach_the_file_in_one_group_and_each_name_at_its_latest(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    store = await opened(path)
    try:
        for beat in range(3):
            for n in range(20):
                await store.registry.upsert(f"fra-{n}", registration(n, streams=beat), T0 + beat)
        # Answered from memory at once; the file follows within behind_s, without any other write.
        assert {b.load.active_streams for b in await store.registry.list_all()} == {2}
        for _ in range(100):
            if len(rows_in(path)) == 20:
                break
            await asyncio.sleep(sqlite.ROWS_BEHIND_S / 4)
        assert {name: doc["load"]["activeStreams"] for name, doc in rows_in(path).items()} == \
            {f"fra-{n}": 2 for n in range(20)}
    finally:
        await store.close()


async def test_closing_writes_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    store = await opened(path)
    await store.registry.upsert("fra-1", registration(1, streams=1), T0)
    await store.registry.upsert("fra-1", registration(1, streams=7), T0 + 1)
    await store.close()
    assert await reopened(path) == {"fra-1": 7}


async def test_a_forgotten_name_is_not_brought_back_by_its_pending_row(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    store = await opened(path)
    await store.registry.upsert("fra-1", registration(1), T0)
    await store.registry.upsert("fra-2", registration(2), T0)
    assert await store.registry.delete("fra-1")
    # Other writes carry the pending rows first, in the same transaction: the file already agrees.
    assert set(rows_in(path)) == {"fra-2"}
    await store.registry.upsert("fra-2", registration(2, streams=3), T0 + 1)
    await store.close()
    assert await reopened(path) == {"fra-2": 3}


async def test_a_failed_write_keeps_the_rows_and_the_next_one_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    store = await opened(path)
    try:
        await store.db.run(lambda: store.db.conn.execute("PRAGMA busy_timeout=20"))
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the file
            await store.registry.upsert("fra-1", registration(1, streams=1), T0)
            with pytest.raises(StoreUnavailable):
                await store.registry.flush()
            await store.registry.upsert("fra-2", registration(2, streams=2), T0)
            await store.registry.upsert("fra-1", registration(1, streams=5), T0 + 1)  # newer than the failed one
            other.execute("ROLLBACK")
        await store.registry.flush()
        assert {name: doc["load"]["activeStreams"] for name, doc in rows_in(path).items()} == {"fra-1": 5, "fra-2": 2}
    finally:
        await store.close()


async def test_workers_sharing_the_file_write_at_once(tmp_path: Path) -> None:
    """Workers read each other's changes from the file: nothing is written behind there."""
    path = tmp_path / "edge.db"
    a = await opened(path, shared=True)
    try:
        await a.registry.upsert("fra-1", registration(1, streams=4), T0)
        assert {name: doc["load"]["activeStreams"] for name, doc in rows_in(path).items()} == {"fra-1": 4}
    finally:
        await a.close()


async def test_a_failed_write_never_brings_back_what_a_later_write_changed(tmp_path: Path) -> None:
    """A write that fails gives its rows back to the pending ones only where nothing later carried
    the name: a broadcaster deleted after it stays deleted (the SQLite thread runs jobs in order:
    the failing write, the lock released, the delete)."""
    path = tmp_path / "edge.db"
    store = await opened(path)
    try:
        await store.registry.upsert("fra-1", registration(1, streams=1), T0)
        await store.registry.flush()
        await store.registry.upsert("fra-1", registration(1, streams=2), T0 + 1)  # pending
        await store.db.run(lambda: store.db.conn.execute("PRAGMA busy_timeout=20"))
        with contextlib.closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other:
            other.execute("BEGIN IMMEDIATE")
            hint = asyncio.create_task(store.registry.note_carrier("s1", "fra-1", T0 + 1))  # carries fra-1: fails
            await asyncio.sleep(0)
            release = asyncio.create_task(store.db.run(lambda: other.execute("ROLLBACK")))
            await asyncio.sleep(0)
            deleted = asyncio.create_task(store.registry.delete("fra-1"))
            outcomes = await asyncio.gather(hint, release, deleted, return_exceptions=True)
        assert isinstance(outcomes[0], StoreUnavailable) and outcomes[2] is True
        await asyncio.sleep(sqlite.ROWS_BEHIND_S * 2)  # a retry would have run by now
        await store.registry.flush()
        assert rows_in(path) == {}
    finally:
        await store.close()
    assert await reopened(path) == {}
