"""The embedded store: one SQLite file, one connection, used from one worker thread.

SQLite calls block, so they run on a single-thread executor: the event loop never waits on disk, and
one thread owning the connection serialises writers without extra locks. WAL keeps readers from
blocking on a writer; synchronous=NORMAL in WAL mode is durable across process crashes.
This backend serves one edge node; several nodes share the Redis backend instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from broadcaster_registry.codec import from_doc, to_doc
from broadcaster_registry.credentials import Credential
from broadcaster_registry.liveness import DEFAULT_LIVENESS, LivenessPolicy
from broadcaster_registry.model import Broadcaster
from broadcaster_registry.storage import CARRIER_HINT_TTL_S, MemoryRegistryStore
from edge.store.base import Page, StoredStates, StoreUnavailable
from edge.store.leases import LocalLeases
from edge.streams.codec import from_document, to_document
from edge.streams.model import Stream, ended

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
    """
    CREATE TABLE broadcasters (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE handouts (
        stream_id TEXT NOT NULL,
        name TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (stream_id, name)
    );
    """,
    """
    CREATE TABLE playlist_states (
        stream_id TEXT NOT NULL,
        rendition TEXT NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (stream_id, rendition)
    );
    """,
    """
    CREATE TABLE playlist_revisions (stream_id TEXT PRIMARY KEY, revision INTEGER NOT NULL);
    """,
    """
    CREATE TABLE broadcaster_credentials (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        salt BLOB NOT NULL,
        digest BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX broadcaster_credentials_by_name ON broadcaster_credentials (name, created_at);
    """,
)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _owner_only(path: Path) -> None:
    """Create the database file readable by its owner only, as the credential files are, and
    tighten one an older version left readable by others. SQLite creates the -wal and -shm files
    with the database file's mode, so they follow."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists() and sidecar.stat().st_mode & 0o077:
            sidecar.chmod(0o600)


class SqliteDatabase:
    """The connection, its thread and its schema; repositories run their SQL through `run`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _owner_only(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        self._conn = conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
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

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self.run(_close)
        self._executor.shutdown(wait=True)


class SqliteStreams:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def create(self, stream: Stream) -> None:
        doc = _dumps(to_document(stream))
        await self.db.run(
            lambda: self.db.conn.execute(
                "INSERT INTO streams (id, created_at, doc) VALUES (?, ?, ?)", (stream.id, stream.created_at, doc)
            )
        )

    async def get(self, stream_id: str) -> Stream | None:
        row = await self.db.run(
            lambda: self.db.conn.execute("SELECT doc FROM streams WHERE id = ?", (stream_id,)).fetchone()
        )
        return from_document(json.loads(row[0])) if row else None

    async def list(self, limit: int, cursor: str | None) -> Page:
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
            return self.db.conn.execute(sql, args).fetchall()

        rows = await self.db.run(_list)
        streams = tuple(from_document(json.loads(r[0])) for r in rows[:limit])
        next_cursor = encode_cursor(streams[-1]) if len(rows) > limit else None
        return Page(items=streams, next_cursor=next_cursor)

    async def end(self, stream_id: str, ended_at: int) -> Stream | None:
        return await self.update(stream_id, partial(ended, ended_at=ended_at))

    async def update(self, stream_id: str, change: Callable[[Stream], Stream]) -> Stream | None:
        def _update() -> Stream | None:
            conn = self.db.conn
            with conn:  # one transaction: read, decide, write
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT doc FROM streams WHERE id = ?", (stream_id,)).fetchone()
                if row is None:
                    return None
                stream = from_document(json.loads(row[0]))
                changed = change(stream)
                if changed != stream:
                    conn.execute("UPDATE streams SET doc = ? WHERE id = ?", (_dumps(to_document(changed)), stream_id))
                return changed

        return await self.db.run(_update)

    async def delete(self, stream_id: str) -> bool:
        cursor = await self.db.run(lambda: self.db.conn.execute("DELETE FROM streams WHERE id = ?", (stream_id,)))
        return cursor.rowcount > 0


class SqliteRegistryRows:
    """Where SqliteRegistry persists each change of its in-memory registry: one row per broadcaster
    (its stored document) and one per carrier hint. Every method submits its statement to the
    single SQLite thread before it awaits, so rows are written in the order the changes were made."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def save(self, b: Broadcaster, *, afresh: bool = False) -> None:
        doc = _dumps(to_doc(b))

        def _save() -> None:
            with self.db.conn:
                self.db.conn.execute("BEGIN")
                if afresh:
                    self.db.conn.execute("DELETE FROM handouts WHERE name = ?", (b.name,))
                self.db.conn.execute(
                    "INSERT INTO broadcasters (name, doc) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                    (b.name, doc),
                )

        await self.db.run(_save)

    async def forget(self, names: Iterable[str]) -> None:
        rows = [(name,) for name in names]

        def _forget() -> None:
            with self.db.conn:
                self.db.conn.execute("BEGIN")
                self.db.conn.executemany("DELETE FROM broadcasters WHERE name = ?", rows)
                self.db.conn.executemany("DELETE FROM handouts WHERE name = ?", rows)

        await self.db.run(_forget)

    async def save_hint(self, stream_id: str, name: str, at: float) -> None:
        await self.db.run(
            lambda: self.db.conn.execute(
                "INSERT OR REPLACE INTO handouts (stream_id, name, at) VALUES (?, ?, ?)", (stream_id, name, at)
            )
        )

    async def drop_hints(self, stream_id: str, names: Iterable[str] | None = None) -> None:
        if names is None:
            await self.db.run(
                lambda: self.db.conn.execute("DELETE FROM handouts WHERE stream_id = ?", (stream_id,))
            )
            return
        rows = [(stream_id, name) for name in names]
        await self.db.run(
            lambda: self.db.conn.executemany("DELETE FROM handouts WHERE stream_id = ? AND name = ?", rows)
        )


class SqliteRegistry(MemoryRegistryStore):
    """RegistryStore on SQLite: the shared in-memory registry (broadcaster_registry.storage), loaded
    from the file at start and persisting every change to it. One node owns an SQLite file, so
    memory is always what the file holds, and reads cost no disk I/O."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(liveness=liveness, hint_ttl_s=hint_ttl_s, clock=clock, rows=SqliteRegistryRows(db))
        self.db = db

    async def load(self) -> None:
        def _load() -> tuple[list[tuple[str]], list[tuple[str, str, float]]]:
            conn = self.db.conn
            return (
                conn.execute("SELECT doc FROM broadcasters").fetchall(),
                conn.execute("SELECT stream_id, name, at FROM handouts").fetchall(),
            )

        docs, hints = await self.db.run(_load)
        self.replace_all((from_doc(json.loads(d[0])) for d in docs), hints)


class SqliteCredentials:
    """Broadcaster credentials, read from the file on every use: a revoked one stops working at once."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def add(self, credential: Credential) -> None:
        await self.db.run(
            lambda: self.db.conn.execute(
                "INSERT INTO broadcaster_credentials (id, name, salt, digest, created_at) VALUES (?, ?, ?, ?, ?)",
                (credential.id, credential.name, credential.salt, credential.digest, credential.created_at),
            )
        )

    async def get(self, credential_id: str) -> Credential | None:
        row = await self.db.run(
            lambda: self.db.conn.execute(
                "SELECT id, name, salt, digest, created_at FROM broadcaster_credentials WHERE id = ?",
                (credential_id,),
            ).fetchone()
        )
        return _credential(row) if row else None

    async def list_for(self, name: str) -> list[Credential]:
        rows = await self.db.run(
            lambda: self.db.conn.execute(
                "SELECT id, name, salt, digest, created_at FROM broadcaster_credentials WHERE name = ? "
                "ORDER BY created_at, id",
                (name,),
            ).fetchall()
        )
        return [_credential(row) for row in rows]

    async def revoke(self, name: str, credential_id: str) -> bool:
        cursor = await self.db.run(
            lambda: self.db.conn.execute(
                "DELETE FROM broadcaster_credentials WHERE id = ? AND name = ?", (credential_id, name)
            )
        )
        return cursor.rowcount > 0


def _credential(row: tuple[str, str, bytes, bytes, float]) -> Credential:
    credential_id, name, salt, digest, created_at = row
    return Credential(id=credential_id, name=name, salt=bytes(salt), digest=bytes(digest), created_at=created_at)


class SqlitePlaylists:
    """Published playlist states, one opaque blob per (stream, rendition), and a revision per stream."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def load(self, stream_id: str) -> StoredStates:
        def _load() -> StoredStates:
            conn = self.db.conn
            rows = conn.execute(
                "SELECT rendition, state FROM playlist_states WHERE stream_id = ?", (stream_id,)
            ).fetchall()
            return StoredStates(self._revision(stream_id), {rendition: bytes(state) for rendition, state in rows})

        return await self.db.run(_load)

    def _revision(self, stream_id: str) -> int:
        row = self.db.conn.execute(
            "SELECT revision FROM playlist_revisions WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        return row[0] if row else 0

    async def revision(self, stream_id: str) -> int:
        return await self.db.run(self._revision, stream_id)

    async def save(self, stream_id: str, states: dict[str, bytes], expected_revision: int) -> int | None:
        def _save() -> int | None:
            conn = self.db.conn
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if self._revision(stream_id) != expected_revision:
                    return None
                conn.executemany(
                    "INSERT INTO playlist_states (stream_id, rendition, state) VALUES (?, ?, ?) "
                    "ON CONFLICT (stream_id, rendition) DO UPDATE SET state = excluded.state",
                    [(stream_id, rendition, state) for rendition, state in states.items()],
                )
                conn.execute(
                    "INSERT INTO playlist_revisions (stream_id, revision) VALUES (?, ?) "
                    "ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision",
                    (stream_id, expected_revision + 1),
                )
                return expected_revision + 1

        return await self.db.run(_save)

    async def delete(self, stream_id: str) -> None:
        def _delete() -> None:
            with self.db.conn:
                self.db.conn.execute("BEGIN")
                self.db.conn.execute("DELETE FROM playlist_states WHERE stream_id = ?", (stream_id,))
                self.db.conn.execute("DELETE FROM playlist_revisions WHERE stream_id = ?", (stream_id,))

        await self.db.run(_delete)


class SqliteStore:
    """Every repository on one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: wall-clock seconds, the clock callers take the registry's `now` from
        (broadcasters are forgotten and carrier hints lapse on it)."""
        self.db = SqliteDatabase(path)
        self.streams = SqliteStreams(self.db)
        self.registry = SqliteRegistry(self.db, liveness=liveness, hint_ttl_s=hint_ttl_s, clock=clock)
        self.credentials = SqliteCredentials(self.db)
        self.playlists = SqlitePlaylists(self.db)
        self.leases = LocalLeases()
        self.shared = False  # one node owns the file

    async def open(self) -> None:
        await self.db.open()
        await self.registry.load()

    async def ping(self) -> None:
        await self.db.run(lambda: self.db.conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self.db.close()

    def describe(self) -> str:
        return f"sqlite:///{self.db.path}"


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
