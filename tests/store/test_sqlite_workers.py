"""Worker processes on one SQLite file (two stores, two connections): each worker's in-memory
registry follows the changes made through the other, also once the change log has been trimmed
past what a worker last applied (the contract suite covers the rest, calling the workers in turn)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from broadcaster_registry.model import Registration
from edge.store import sqlite

T0 = 1_700_000_000.0


async def test_a_worker_behind_the_trimmed_log_reloads_the_whole_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LOG_KEPT", 4)
    monkeypatch.setattr(sqlite, "LOG_TRIM_EVERY", 3)
    a, b = (sqlite.SqliteStore(tmp_path / "edge.db", shared=True, clock=lambda: T0) for _ in range(2))
    await a.open()
    await b.open()
    try:
        await a.registry.upsert("fra-1", Registration(address="https://fra-1.example.net"), T0)
        assert [x.name for x in await b.registry.list_all()] == ["fra-1"]  # b follows entry by entry
        for n in range(2, 12):  # far more changes than the log keeps
            await a.registry.upsert(f"fra-{n}", Registration(address=f"https://fra-{n}.example.net"), T0)
        await a.registry.delete("fra-1")
        await a.registry.note_carrier("s1", "fra-2", T0)
        with contextlib.closing(sqlite3.connect(tmp_path / "edge.db")) as conn:
            first = conn.execute("SELECT min(seq) FROM registry_log").fetchone()[0]
        assert first > 2  # what b applied last has been trimmed
        assert sorted(x.name for x in await b.registry.list_all()) == sorted(f"fra-{n}" for n in range(2, 12))
        assert await b.registry.carrier_hints("s1") == {"fra-2"}
        await b.registry.forget_stream("s1")  # and a follows b
        assert await a.registry.carrier_hints("s1") == frozenset()
    finally:
        await a.close()
        await b.close()

