"""The embedded store: one SQLite file, one connection per process, used from one worker thread.

SQLite calls block, so they run on a single-thread executor: the event loop never waits on disk, and
one thread owning the connection serialises writers without extra locks. WAL keeps readers from
blocking on a writer; synchronous=NORMAL in WAL mode is durable across process crashes.
This backend serves one edge node; several nodes share the Redis backend instead. The worker
processes of one node (`edge serve --workers N`) share the file: opened `shared`, its leases live in
a table (one poller per stream across the workers) and each worker's registry follows the changes
the others made (see SqliteRegistry).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from cachetools import LRUCache

from broadcaster_registry.codec import from_doc, to_doc
from broadcaster_registry.credentials import Credential
from broadcaster_registry.liveness import DEFAULT_LIVENESS, LivenessPolicy
from broadcaster_registry.model import Broadcaster, Registration, Source, State
from broadcaster_registry.storage import CARRIER_HINT_TTL_S, MemoryRegistryStore
from edge.store.base import Page, StoredStates, StoreUnavailable
from edge.store.leases import LocalLeases
from edge.streams.codec import from_document, to_document
from edge.streams.model import Stream, ended

T = TypeVar("T")
log = logging.getLogger("edge.store.sqlite")

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
    """
    CREATE TABLE leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL);
    CREATE TABLE members (grp TEXT NOT NULL, member TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (grp, member));
    CREATE TABLE registry_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, stream_id TEXT);
    """,
)


_UPSERT_BROADCASTER = "INSERT INTO broadcasters (name, doc) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET doc = excluded.doc"
# How late a process alone on its file writes a broadcaster's row (SqliteRegistryRows.behind_s).
ROWS_BEHIND_S = 0.2


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

    def __init__(self, path: Path, *, reader: bool = False) -> None:
        """`reader`: also a read-only connection for the event loop's own one-row reads (see
        SqlitePlaylists.revision)."""
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._wants_reader = reader
        self.reader: sqlite3.Connection | None = None

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
        if self._wants_reader:
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=1")
            reader.execute("PRAGMA busy_timeout=100")
            self.reader = reader

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    async def read_one(self, sql: str, params: tuple[Any, ...]) -> Any:
        """One row by its key, read on the event loop itself through the read-only connection: in
        WAL mode a reader never waits for a writer, so this costs a few microseconds where the hop
        to the SQLite thread and back costs tens (and the GIL passed between the threads)."""
        reader = self.reader
        if reader is None:
            return await self.run(lambda: self.conn.execute(sql, params).fetchone())
        try:
            return reader.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("store is not open")
        return self._conn

    async def close(self) -> None:
        def _close() -> None:
            for conn in (self.reader, self._conn):
                if conn is not None:
                    conn.close()
            self._conn = self.reader = None

        await self.run(_close)
        self._executor.shutdown(wait=True)


class SqliteStreams:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        # The last document read per stream and what it parsed to (Stream is frozen).
        self._parsed: LRUCache[str, tuple[str, Stream]] = LRUCache(maxsize=10_000)

    async def create(self, stream: Stream) -> None:
        doc = _dumps(to_document(stream))
        await self.db.run(
            lambda: self.db.conn.execute(
                "INSERT INTO streams (id, created_at, doc) VALUES (?, ?, ?)", (stream.id, stream.created_at, doc)
            )
        )

    async def get(self, stream_id: str) -> Stream | None:
        # Every feed re-reads its stream every few seconds: one row by its key, read on the event
        # loop (see SqliteDatabase.read_one), and parsed again only when the document changed.
        row = await self.db.read_one("SELECT doc FROM streams WHERE id = ?", (stream_id,))
        if row is None:
            self._parsed.pop(stream_id, None)
            return None
        doc = row[0]
        cached = self._parsed.get(stream_id)
        if cached is not None and cached[0] == doc:
            return cached[1]
        stream = from_document(json.loads(doc))
        self._parsed[stream_id] = (doc, stream)
        return stream

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


# One entry per change in `registry_log`: a broadcaster's name (its document and all its hints) or
# a stream id (all its hints). Workers read the entries past the last one they applied; the oldest
# are trimmed, and a worker that fell behind the trimmed ones reloads the whole registry.
LOG_KEPT = 10_000
LOG_TRIM_EVERY = 1_000


class SqliteRegistryRows:
    """Where SqliteRegistry persists each change of its in-memory registry: one row per broadcaster
    (its stored document) and one per carrier hint. Every method submits its statement to the
    single SQLite thread before it awaits, so rows are written in the order the changes were made.
    `logged`: each change is also entered in `registry_log`, and `seen` is the last entry this
    process's memory reflects (other workers' changes are behind later entries).

    `behind_s` (a process alone on its file, where memory answers every read and the file is what a
    restart starts from): a broadcaster's row is written at most that long after `save`, together
    with the others saved meanwhile, in one transaction: heartbeats then cost no trip to the SQLite
    thread each. A crash loses at most that window of changes, which the broadcasters' next
    heartbeats repeat. Any other write, and `flush`, writes the pending rows first."""

    def __init__(self, db: SqliteDatabase, *, logged: bool = False, behind_s: float | None = None) -> None:
        self.db = db
        self.logged = logged
        self.seen = 0
        self.behind_s = behind_s
        self._pending: dict[str, Broadcaster] = {}  # saved, not yet written: the latest value of each
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._failing = False
        self._writes = 0  # writes submitted so far
        self._last_write: dict[str, int] = {}  # name -> the last write in flight that carried it

    async def _write(self, fn: Callable[[sqlite3.Connection], object], names: Iterable[str] = (),
                     streams: Iterable[str] = ()) -> None:
        names = list(names)
        pending, self._pending = self._pending, {}
        self._writes += 1
        write = self._writes
        carried = [*pending, *names]
        for name in carried:
            self._last_write[name] = write
        rows = [(b.name, _dumps(to_doc(b))) for b in pending.values()]
        entries = [(name, None) for name in carried] + [(None, stream_id) for stream_id in streams]

        def _in_transaction() -> None:
            conn = self.db.conn
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if rows:
                    conn.executemany(_UPSERT_BROADCASTER, rows)
                fn(conn)
                if self.logged and entries:
                    before = conn.execute("SELECT coalesce(max(seq), 0) FROM registry_log").fetchone()[0]
                    conn.executemany("INSERT INTO registry_log (name, stream_id) VALUES (?, ?)", entries)
                    last = before + len(entries)
                    if before == self.seen:  # nobody else wrote since: memory is still the file
                        self.seen = last
                    if last // LOG_TRIM_EVERY != before // LOG_TRIM_EVERY:
                        conn.execute("DELETE FROM registry_log WHERE seq <= ?", (last - LOG_KEPT,))

        # Once submitted the transaction runs to its end whoever stops waiting for it: what becomes of
        # the rows it carried is decided by how it ended, not by the caller being cancelled.
        job = asyncio.ensure_future(self.db.run(_in_transaction))
        job.add_done_callback(lambda done: self._written(done, write, pending, carried))
        await asyncio.shield(job)

    def _written(self, job: asyncio.Future[None], write: int, pending: dict[str, Broadcaster],
                 carried: list[str]) -> None:
        """After write number `write` ended: when it failed, the rows it carried are pending again,
        except those of names saved again since or carried by a later write (their newer state wins)."""
        failed = job.cancelled() or job.exception() is not None
        for name in carried:
            if self._last_write.get(name) != write:
                continue  # a later write carried it
            del self._last_write[name]
            if failed and name in pending and name not in self._pending:
                self._pending[name] = pending[name]
        if failed and self._pending:
            self._schedule()

    async def save(self, b: Broadcaster, *, afresh: bool = False) -> None:
        if self.behind_s is not None and not afresh:
            self._pending[b.name] = b
            self._schedule()
            return
        doc = _dumps(to_doc(b))

        def _save(conn: sqlite3.Connection) -> None:
            if afresh:
                conn.execute("DELETE FROM handouts WHERE name = ?", (b.name,))
            conn.execute(_UPSERT_BROADCASTER, (b.name, doc))

        self._pending.pop(b.name, None)  # an older value
        await self._write(_save, names=[b.name])

    def _schedule(self) -> None:
        if self._timer is None and self.behind_s is not None:
            self._timer = asyncio.get_running_loop().call_later(self.behind_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._pending and self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_behind(), name="sqlite-registry-rows")

    async def _flush_behind(self) -> None:
        try:
            await self.flush()
        except StoreUnavailable as exc:  # kept pending and scheduled again by _write
            if not self._failing:
                log.warning("registry rows not written, retrying: %s", exc)
            self._failing = True
        else:
            if self._failing:
                log.info("registry rows written again")
            self._failing = False
        finally:
            self._flushing = None
            if self._pending:  # saved while this flush was in flight
                self._schedule()

    async def flush(self) -> None:
        """Write every pending row now."""
        if self._pending:
            await self._write(lambda conn: None)

    async def close(self) -> None:
        """Write what is pending and stop writing behind."""
        self.behind_s = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.wait([self._flushing])
        await self.flush()

    async def forget(self, names: Iterable[str]) -> None:
        rows = [(name,) for name in names]

        def _forget(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM broadcasters WHERE name = ?", rows)
            conn.executemany("DELETE FROM handouts WHERE name = ?", rows)

        await self._write(_forget, names=[name for (name,) in rows])

    async def save_hint(self, stream_id: str, name: str, at: float) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO handouts (stream_id, name, at) VALUES (?, ?, ?)", (stream_id, name, at)
        ), streams=[stream_id])

    async def drop_hints(self, stream_id: str, names: Iterable[str] | None = None) -> None:
        if names is None:
            await self._write(lambda conn: conn.execute("DELETE FROM handouts WHERE stream_id = ?", (stream_id,)),
                              streams=[stream_id])
            return
        rows = [(stream_id, name) for name in names]
        await self._write(
            lambda conn: conn.executemany("DELETE FROM handouts WHERE stream_id = ? AND name = ?", rows),
            streams=[stream_id],
        )


class SqliteRegistry(MemoryRegistryStore):
    """RegistryStore on SQLite: the shared in-memory registry (broadcaster_registry.storage), loaded
    from the file at start and persisting every change to it. One process alone on the file: memory
    is what the file holds (broadcaster rows written a moment later: SqliteRegistryRows.behind_s),
    and reads cost no disk I/O.

    `shared` (worker processes on one file): every write is also entered in `registry_log`, and
    every call first reads the entries past the last one this worker applied (usually none: one
    index lookup) and reloads just the names and streams they name; so a heartbeat that reached one
    worker is seen by all of them at their next call. A read-modify-write
    (a heartbeat, a probe's outcome) is computed from the registry as of that check: two workers
    writing one broadcaster at the same instant keep the last write, as the same broadcaster's two
    heartbeats would on one node."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
        clock: Callable[[], float] = time.time,
        shared: bool = False,
    ) -> None:
        rows = SqliteRegistryRows(db, logged=shared, behind_s=None if shared else ROWS_BEHIND_S)
        super().__init__(liveness=liveness, hint_ttl_s=hint_ttl_s, clock=clock, rows=rows)
        self.db = db
        self.shared = shared
        self._rows = rows

    async def load(self) -> None:
        def _load() -> tuple[int, list[tuple[str]], list[tuple[str, str, float]]]:
            conn = self.db.conn
            with conn:  # one snapshot: the last log entry and the rows as of it
                conn.execute("BEGIN")
                return (
                    _last_entry(conn),
                    conn.execute("SELECT doc FROM broadcasters").fetchall(),
                    conn.execute("SELECT stream_id, name, at FROM handouts").fetchall(),
                )

        seq, docs, hints = await self.db.run(_load)
        self.replace_all((from_doc(json.loads(d[0])) for d in docs), hints)
        self._rows.seen = seq

    async def flush(self) -> None:
        """Write the rows still pending (SqliteRegistryRows.behind_s) now."""
        await self._rows.flush()

    async def close(self) -> None:
        """Write the rows still pending, and from now on every change at once: before the file closes."""
        await self._rows.close()

    async def _follow(self) -> None:
        """Apply what other workers changed since this one last read or wrote the registry."""
        if not self.shared:
            return
        seen = self._rows.seen

        def _changes() -> tuple[int, bool, dict[str, str | None], list[tuple[str, str, float]], dict[str, dict[str, float]]]:
            conn = self.db.conn
            with conn:  # one snapshot: the entries and the rows as of the last one
                conn.execute("BEGIN")
                entries = conn.execute(
                    "SELECT seq, name, stream_id FROM registry_log WHERE seq > ? ORDER BY seq", (seen,)
                ).fetchall()
                if not entries:
                    return seen, False, {}, [], {}
                trimmed = entries[0][0] != seen + 1 and seen < _first_entry(conn)
                names = sorted({name for _, name, _ in entries if name is not None})
                streams = sorted({stream_id for _, _, stream_id in entries if stream_id is not None})
                docs: dict[str, str | None] = dict.fromkeys(names)
                their_hints: list[tuple[str, str, float]] = []
                stream_hints: dict[str, dict[str, float]] = {s: {} for s in streams}
                for chunk in _chunks(names):
                    marks = ",".join("?" * len(chunk))
                    docs.update(conn.execute(f"SELECT name, doc FROM broadcasters WHERE name IN ({marks})", chunk))
                    their_hints += conn.execute(
                        f"SELECT stream_id, name, at FROM handouts WHERE name IN ({marks})", chunk).fetchall()
                for chunk in _chunks(streams):
                    marks = ",".join("?" * len(chunk))
                    for stream_id, name, at in conn.execute(
                        f"SELECT stream_id, name, at FROM handouts WHERE stream_id IN ({marks})", chunk
                    ):
                        stream_hints[stream_id][name] = at
                return entries[-1][0], trimmed, docs, their_hints, stream_hints

        last, trimmed, docs, their_hints, stream_hints = await self.db.run(_changes)
        if trimmed:  # fell behind the trimmed entries: start over from the file
            await self.load()
            return
        if last == seen or self._rows.seen != seen:  # nothing new, or a write of ours moved on meanwhile
            return
        broadcasters = {name: from_doc(json.loads(doc)) if doc is not None else None for name, doc in docs.items()}
        self.replace_some(broadcasters, their_hints, stream_hints)
        self._rows.seen = last

    async def upsert(self, name: str, registration: Registration, now: float, source: Source = "self") -> Broadcaster:
        await self._follow()
        return await super().upsert(name, registration, now, source)

    async def get(self, name: str) -> Broadcaster | None:
        await self._follow()
        return await super().get(name)

    async def list_all(self) -> list[Broadcaster]:
        await self._follow()
        return await super().list_all()

    def list_now(self) -> list[Broadcaster] | None:
        return None if self.shared else super().list_now()  # shared: other workers' changes are read first

    def revision(self) -> object | None:
        """Alone: memory's. Shared: memory's and the last entry of `registry_log`, which moves at
        every change any worker makes (read on the event loop through the read-only connection: a
        few microseconds, never waiting on a writer in WAL mode); None when that cannot be read."""
        own = super().revision()
        if not self.shared:
            return own
        reader = self.db.reader
        if reader is None:
            return None
        try:
            last = reader.execute("SELECT coalesce(max(seq), 0) FROM registry_log").fetchone()[0]
        except sqlite3.Error:
            return None
        return own, last

    async def set_state(self, name: str, state: State) -> Broadcaster | None:
        await self._follow()
        return await super().set_state(name, state)

    async def delete(self, name: str) -> bool:
        await self._follow()
        return await super().delete(name)

    async def record_probe(self, name: str, ok: bool, now: float, policy: LivenessPolicy) -> Broadcaster | None:
        await self._follow()
        return await super().record_probe(name, ok, now, policy)

    async def record_fetch(self, name: str, ok: bool, now: float, policy: LivenessPolicy) -> Broadcaster | None:
        await self._follow()
        return await super().record_fetch(name, ok, now, policy)

    async def note_carrier(self, stream_id: str, name: str, now: float) -> None:
        await self._follow()
        await super().note_carrier(stream_id, name, now)

    async def carrying(self, stream_id: str) -> list[Broadcaster]:
        await self._follow()
        return await super().carrying(stream_id)

    async def carrier_hints(self, stream_id: str) -> frozenset[str]:
        await self._follow()
        return await super().carrier_hints(stream_id)

    async def forget_stream(self, stream_id: str) -> None:
        await self._follow()
        await super().forget_stream(stream_id)


def _last_entry(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM registry_log").fetchone()[0]


def _first_entry(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(min(seq), 0) FROM registry_log").fetchone()[0]


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    """Below SQLite's limit of bound parameters in one statement."""
    return (values[i:i + size] for i in range(0, len(values), size))


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


_MAX_VARIABLES = 500  # bound parameters per statement (SQLite's limit is 999 in old builds)


class SqlitePlaylists:
    """Published playlist states, one opaque blob per (stream, rendition), and a revision per stream.

    Saves are committed in groups: those asked while one commit runs on the database thread go
    together in the next transaction, each fenced by its own revision as if alone. At a thousand
    streams (a save per stream every segment) that is one transaction and one hop to the thread for
    dozens of saves, instead of one each, which had the SQLite thread busy a quarter of a core."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._pending: list[tuple[str, dict[str, bytes], int, asyncio.Future[int | None]]] = []
        self._committing = False
        self._task: asyncio.Task[None] | None = None

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
        # The follower's check on every player request (store.shared): see SqliteDatabase.read_one.
        row = await self.db.read_one("SELECT revision FROM playlist_revisions WHERE stream_id = ?", (stream_id,))
        return row[0] if row else 0

    def revision_now(self, stream_id: str) -> int | None:
        reader = self.db.reader
        if reader is None:
            return None
        try:
            row = reader.execute("SELECT revision FROM playlist_revisions WHERE stream_id = ?", (stream_id,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else 0

    async def save(self, stream_id: str, states: dict[str, bytes], expected_revision: int) -> int | None:
        waiter: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append((stream_id, states, expected_revision, waiter))
        self._commit_next()
        return await waiter

    def _commit_next(self) -> None:
        if self._committing or not self._pending:
            return
        group, self._pending = self._pending, []
        self._committing = True
        self._task = asyncio.get_running_loop().create_task(self._commit(group))  # kept: the loop holds it weakly

    async def _commit(self, group: list[tuple[str, dict[str, bytes], int, asyncio.Future[int | None]]]) -> None:
        try:
            revisions = await self.db.run(self._save_all, [(sid, states, rev) for sid, states, rev, _ in group])
        except asyncio.CancelledError:  # the loop is closing
            for *_, waiter in group:
                waiter.cancel()
            raise
        except Exception as exc:  # every save of the group failed with its transaction
            for *_, waiter in group:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for (*_, waiter), revision in zip(group, revisions):
                if not waiter.done():  # its caller may have been cancelled meanwhile
                    waiter.set_result(revision)
        finally:
            self._committing = False
            self._commit_next()

    def _save_all(self, group: list[tuple[str, dict[str, bytes], int]]) -> list[int | None]:
        """One transaction for the group; each save's new revision, or None where the stored one
        was not the one it expected (another writer published first: nothing of it is written).
        A handful of statements for the whole group: each call into SQLite hands the GIL back and
        forth with the event loop's thread."""
        conn = self.db.conn
        revisions: list[int | None] = []
        rows: list[tuple[str, str, bytes]] = []
        new_revisions: dict[str, int] = {}
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            stored = self._revisions([stream_id for stream_id, _, _ in group])
            for stream_id, states, expected_revision in group:
                if stored.get(stream_id, 0) != expected_revision:
                    revisions.append(None)
                    continue
                stored[stream_id] = new_revisions[stream_id] = expected_revision + 1
                rows.extend((stream_id, rendition, state) for rendition, state in states.items())
                revisions.append(expected_revision + 1)
            conn.executemany(
                "INSERT INTO playlist_states (stream_id, rendition, state) VALUES (?, ?, ?) "
                "ON CONFLICT (stream_id, rendition) DO UPDATE SET state = excluded.state",
                rows,
            )
            conn.executemany(
                "INSERT INTO playlist_revisions (stream_id, revision) VALUES (?, ?) "
                "ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision",
                new_revisions.items(),
            )
        return revisions

    def _revisions(self, stream_ids: list[str]) -> dict[str, int]:
        """The stored revision of each of these streams that has one."""
        out: dict[str, int] = {}
        unique = list(dict.fromkeys(stream_ids))
        for start in range(0, len(unique), _MAX_VARIABLES):
            chunk = unique[start:start + _MAX_VARIABLES]
            out.update(self.db.conn.execute(
                f"SELECT stream_id, revision FROM playlist_revisions WHERE stream_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall())
        return out

    async def delete(self, stream_id: str) -> None:
        def _delete() -> None:
            with self.db.conn:
                self.db.conn.execute("BEGIN")
                self.db.conn.execute("DELETE FROM playlist_states WHERE stream_id = ?", (stream_id,))
                self.db.conn.execute("DELETE FROM playlist_revisions WHERE stream_id = ?", (stream_id,))

        await self.db.run(_delete)


class SqliteLeases:
    """Leases (edge.store.leases) in a table, for the worker processes sharing the file: one
    statement takes, extends or refuses a lease, so it is atomic between processes. Deadlines are on
    `clock`, wall-clock seconds: every process reads the same clock, and a deadline written before
    a reboot is not in the future of the next boot's clock (a monotonic one would be)."""

    def __init__(self, db: SqliteDatabase, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        now = self.clock()
        cursor = await self.db.run(lambda: self.db.conn.execute(
            "INSERT INTO leases (key, owner, until) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE leases.owner = excluded.owner OR leases.until <= ?",
            (key, owner, now + ttl_s, now),
        ))
        return cursor.rowcount == 1

    async def release(self, key: str, owner: str) -> None:
        await self.db.run(lambda: self.db.conn.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner)))

    async def holder(self, key: str) -> str | None:
        now = self.clock()
        row = await self.db.run(
            lambda: self.db.conn.execute("SELECT owner FROM leases WHERE key = ? AND until > ?", (key, now)).fetchone()
        )
        return row[0] if row else None

    async def announce(self, group: str, member: str, ttl_s: float) -> frozenset[str]:
        now = self.clock()

        def _announce() -> frozenset[str]:
            conn = self.db.conn
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO members (grp, member, until) VALUES (?, ?, ?) "
                    "ON CONFLICT (grp, member) DO UPDATE SET until = excluded.until",
                    (group, member, now + ttl_s),
                )
                conn.execute("DELETE FROM members WHERE grp = ? AND until <= ?", (group, now))
                return frozenset(r[0] for r in conn.execute("SELECT member FROM members WHERE grp = ?", (group,)))

        return await self.db.run(_announce)

    async def leave(self, group: str, member: str) -> None:
        await self.db.run(
            lambda: self.db.conn.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member))
        )


class SqliteStore:
    """Every repository on one SQLite file. `shared`: several worker processes open it (see the
    module's docstring); alone, leases are kept in memory."""

    def __init__(
        self,
        path: Path,
        *,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
        clock: Callable[[], float] = time.time,
        shared: bool = False,
        lease_clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: wall-clock seconds, the clock callers take the registry's `now` from
        (broadcasters are forgotten and carrier hints lapse on it); `lease_clock`: the leases'."""
        self.db = SqliteDatabase(path, reader=True)
        self.streams = SqliteStreams(self.db)
        self.registry = SqliteRegistry(self.db, liveness=liveness, hint_ttl_s=hint_ttl_s, clock=clock, shared=shared)
        self.credentials = SqliteCredentials(self.db)
        self.playlists = SqlitePlaylists(self.db)
        self.leases: LocalLeases | SqliteLeases = SqliteLeases(self.db, lease_clock) if shared else LocalLeases()
        self.shared = shared  # worker processes share the file: players must see the newest revision
        self.answered = 0  # a local file: never lost as a server is (Store.answered)

    async def open(self) -> None:
        await self.db.open()
        await self.registry.load()

    async def ping(self) -> None:
        await self.db.run(lambda: self.db.conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        try:
            await self.registry.close()
        finally:
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
