"""The embedded store: one SQLite file, one connection, used from one worker thread.

SQLite calls block, so they run on a single-thread executor: the event loop never waits on disk, and
one thread owning the connection serialises writers without extra locks. WAL keeps readers from
blocking on a writer; synchronous=NORMAL in WAL mode is durable across process crashes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from edge.store.base import Page, StoreUnavailable
from edge.streams.model import Stream

T = TypeVar("T")

# Each entry moves the schema one version up; PRAGMA user_version records where a file stands.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX streams_by_created ON streams (created_at DESC, id DESC);
    """,
)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    # --- plumbing ---

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("store is not open")
        return self._conn

    async def ping(self) -> None:
        await self._run(lambda: self.conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    # --- streams ---

    async def create_stream(self, stream: Stream) -> None:
        doc = json.dumps(stream.to_json(), separators=(",", ":"))
        await self._run(
            lambda: self.conn.execute(
                "INSERT INTO streams (id, created_at, doc) VALUES (?, ?, ?)", (stream.id, stream.created_at, doc)
            )
        )

    async def get_stream(self, stream_id: str) -> Stream | None:
        row = await self._run(
            lambda: self.conn.execute("SELECT doc FROM streams WHERE id = ?", (stream_id,)).fetchone()
        )
        return Stream.from_json(json.loads(row[0])) if row else None

    async def list_streams(self, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor) if cursor else None

        def _list() -> list[tuple[str]]:
            if after is None:
                sql, args = "SELECT doc FROM streams ORDER BY created_at DESC, id DESC LIMIT ?", (limit + 1,)
            else:
                sql = (
                    "SELECT doc FROM streams WHERE (created_at, id) < (?, ?) "
                    "ORDER BY created_at DESC, id DESC LIMIT ?"
                )
                args = (after[0], after[1], limit + 1)
            return self.conn.execute(sql, args).fetchall()

        rows = await self._run(_list)
        streams = tuple(Stream.from_json(json.loads(r[0])) for r in rows[:limit])
        next_cursor = encode_cursor(streams[-1]) if len(rows) > limit else None
        return Page(items=streams, next_cursor=next_cursor)

    async def end_stream(self, stream_id: str, ended_at: int) -> Stream | None:
        def _end() -> Stream | None:
            with self.conn:  # one transaction: read, decide, write
                self.conn.execute("BEGIN IMMEDIATE")
                row = self.conn.execute("SELECT doc FROM streams WHERE id = ?", (stream_id,)).fetchone()
                if row is None:
                    return None
                doc = json.loads(row[0])
                if doc.get("endedAt") is None:
                    doc["endedAt"] = ended_at
                    self.conn.execute(
                        "UPDATE streams SET doc = ? WHERE id = ?", (json.dumps(doc, separators=(",", ":")), stream_id)
                    )
                return Stream.from_json(doc)

        return await self._run(_end)

    async def delete_stream(self, stream_id: str) -> bool:
        cursor = await self._run(lambda: self.conn.execute("DELETE FROM streams WHERE id = ?", (stream_id,)))
        return cursor.rowcount > 0


def encode_cursor(last: Stream) -> str:
    raw = f"{last.created_at}:{last.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(created_at, id) of the last item of the previous page; ValueError if not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, stream_id = raw.partition(":")
        return int(created), stream_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError("cursor: not a cursor this service issued") from None
