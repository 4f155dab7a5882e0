"""The shared store: every edge node of a fleet reads and writes one Redis, so a stream created, a
broadcaster registered or a playlist published on one node is seen by all the others at once.

Same semantics as the embedded SQLite store (edge/store/sqlite.py), with what one process cannot
give there: writes that read-modify-write (end a stream, every registry write) run as optimistic
transactions (WATCH/MULTI, retried when another node wrote the key in between) that apply the same
pure steps from broadcaster_registry; a self-registered broadcaster's key expires by itself
`forget_after` after its last heartbeat, so no node sweeps; leases give one poller per key across
the fleet. Nothing is cached: every read asks Redis, so a write is visible everywhere at once
(list_all keeps a mirror, but brings it up to date on every call, see RedisRegistry).

Any failure to reach Redis is StoreUnavailable (the API answers 503), raised within the short
socket timeouts; the client reconnects on its own, so a node recovers when Redis returns.

Key layout, every key under the prefix (P, default "edge:"):

    P stream:<id>          string  edge.streams.codec.to_document() (versioned)
    P streams              zset    "<created_at + 2^63, 20 digits>:<id>" at score 0, so that the
                                   lexical order is SQLite's (created_at, id) and a cursor is a
                                   ZRANGE BYLEX bound
    P broadcaster:<name>   string  broadcaster_registry.codec.to_doc() (versioned); PX forget_after
                                   when self-registered
    P heartbeats           zset    name -> last heartbeat (ms, Redis clock), self-registered ones:
                                   by last seen, so finding the expired ones needs no scan
    P broadcasters         zset    live name -> change number of its last write
    P broadcasters:gone    zset    removed name -> change number of its removal (newest 10,000)
    P broadcasters:seq     string  the last change number
    P broadcasters:floor   string  the newest removal number trimmed from :gone
    P broadcasters:epoch   string  set once; another value means Redis lost the registry
    P reports:<name>       set     stream ids <name> reports carrying (mirror of the doc's streams)
    P reported:<stream>    set     names reporting <stream>, so `carrying` reads a few docs, not all
    P handouts:<stream>    zset    carrier hints: name -> deadline (ms, Redis clock); PX hint ttl
    P handed:<name>        zset    stream id -> deadline, the reverse, so `delete` finds them
    P credential:<id>      hash    version, name, salt, digest, created of a broadcaster credential
    P credentials:<name>   zset    credential id -> created, the ones bound to <name>
    P playlist:<stream>    hash    rendition -> published state (opaque bytes)
    P lease:<key>          string  owner; PX ttl (also want:<key>, the owner asking for it)
    P members:<group>      zset    live member -> deadline (ms, Redis clock): the fleet's nodes

The scripts build key names from the prefix, so this needs one Redis (or a primary with replicas
and Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import random
from dataclasses import replace
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Iterator, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from broadcaster_registry.codec import from_doc, to_doc
from broadcaster_registry.credentials import Credential
from broadcaster_registry.liveness import DEFAULT_LIVENESS, LivenessPolicy, forget_after, record_fetch, record_probe
from broadcaster_registry.model import Broadcaster, Registration, Source, State, from_registration
from broadcaster_registry.storage import CARRIER_HINT_TTL_S, worth_writing
from edge.store.base import Page, StoredStates, StoreUnavailable
from edge.store.sqlite import decode_cursor, encode_cursor
from edge.streams.codec import from_document, to_document
from edge.streams.model import Stream, ended

log = logging.getLogger("edge.store.redis")

P = ParamSpec("P")
T = TypeVar("T")

CONNECT_TIMEOUT_S = 1.0
OPERATION_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 10  # an idle pooled connection is PINGed before reuse
# Connections one process may open: hundreds of feeds reach their round boundary together, and
# redis-py's default pool (100) fails the calls past its size with MaxConnectionsError.
MAX_CONNECTIONS = 2000
_MGET_CHUNK = 1000  # Lua's unpack() has a stack limit of ~8000 values
# Removed broadcaster names remembered for nodes catching up (see _SYNC); trimmed by this many.
_GONE_KEPT = 10_000
_GONE_TRIM = 1_000


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _text(reply: Any) -> str:
    """A bulk reply as text: replies are bytes here (decode_responses=False), typed looser."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def redact_url(url: str) -> str:
    """The URL without user, password or query (which may carry a password)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _unavailable_as_store_error(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Every Redis failure (refused, timed out, loading, read-only replica, ...) as StoreUnavailable."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        db = args[0].db  # type: ignore[attr-defined]  # every wrapped method's self has .db
        try:
            async with asyncio.timeout(db.operation_timeout_s):
                result = await fn(*args, **kwargs)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise StoreUnavailable(f"{db.where}: {type(exc).__name__}: {exc}") from exc
        db.answered += 1
        return result

    return call


class RedisDatabase:
    """The client (a connection pool), the key prefix and the scripts every repository shares."""

    def __init__(
        self,
        url: str,
        prefix: str,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        operation_timeout_s: float = OPERATION_TIMEOUT_S,
    ) -> None:
        self.prefix = prefix
        self.where = f"{redact_url(url)} (keys {prefix}*)"
        self.answered = 0  # calls Redis answered (Store.answered)
        # The deadline of every call, whole (_unavailable_as_store_error), not redis-py's
        # socket_timeout: with it set, redis-py writes each command under asyncio.wait_for, which on
        # Python 3.11 loses a cancellation that arrives as the write completes. The task then goes
        # on as if never cancelled (a feed stopped by a shutdown polled on until it went idle:
        # 60 s; a loop that never idles would hang the shutdown). asyncio.timeout loses none.
        self.operation_timeout_s = operation_timeout_s
        # One retry without delay: after Redis restarts, the first command on each pooled
        # connection fails on its dead socket and succeeds on a new one. Not more: while Redis is
        # down a request should get its 503 fast, not after a back-off.
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=None,  # its default is 5 s
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=Retry(NoBackoff(), 1),
            max_connections=MAX_CONNECTIONS,
            decode_responses=False,
        )

    def key(self, *parts: str) -> str:
        """The prefix, then the parts joined by ':' ("edge:" + "stream", id -> "edge:stream:<id>")."""
        return self.prefix + ":".join(parts)

    def script(self, source: str) -> Any:
        return self.client.register_script(source)

    async def transact(self, keys: list[str], body: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Run `body` with `keys` watched, again and again until no other client wrote one of
        them before its MULTI/EXEC (if it queued one; else nothing is written)."""
        async with self.client.pipeline(transaction=True) as pipe:
            for attempt in itertools.count(1):
                try:
                    await pipe.watch(*keys)
                    return await body(pipe)
                except WatchError:
                    await pipe.reset()
                    # Another node won the race; a little jitter keeps the losers from colliding again.
                    await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
            raise AssertionError("unreachable")


# --- streams ---

_STREAM_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] the index; ARGV: key prefix of the docs, exclusive upper bound, count.
_STREAM_PAGE = """
local members = redis.call('ZRANGE', KEYS[1], ARGV[2], '-', 'BYLEX', 'REV', 'LIMIT', 0, tonumber(ARGV[3]))
local docs = {}
for _, m in ipairs(members) do
  local doc = redis.call('GET', ARGV[1] .. string.sub(m, 22))
  if doc then docs[#docs + 1] = doc end
end
return docs
"""

_OFFSET = 2**63  # created_at may be any signed 64-bit integer, as in SQLite


def _member(created_at: int, stream_id: str) -> str:
    clamped = min(max(created_at, -_OFFSET), _OFFSET - 1)
    return f"{clamped + _OFFSET:020d}:{stream_id}"


class RedisStreams:
    def __init__(self, db: RedisDatabase) -> None:
        self.db = db
        self.index = db.key("streams")
        self._create = db.script(_STREAM_CREATE)
        self._page = db.script(_STREAM_PAGE)

    @_unavailable_as_store_error
    async def create(self, stream: Stream) -> None:
        created = await self._create(
            keys=[self.db.key("stream", stream.id), self.index],
            args=[_dumps(to_document(stream)), _member(stream.created_at, stream.id)],
        )
        if not created:  # as SQLite's primary key: ids are random, so this is a fault, not a request
            raise StoreUnavailable(f"{self.db.where}: stream {stream.id} already exists")

    @_unavailable_as_store_error
    async def get(self, stream_id: str) -> Stream | None:
        raw = await self.db.client.get(self.db.key("stream", stream_id))
        return from_document(json.loads(raw)) if raw is not None else None

    @_unavailable_as_store_error
    async def list(self, limit: int, cursor: str | None) -> Page:
        bound = "(" + _member(*decode_cursor(cursor)) if cursor else "+"
        raws = await self._page(keys=[self.index], args=[self.db.key("stream", ""), bound, limit + 1])
        streams = tuple(from_document(json.loads(raw)) for raw in raws[:limit])
        next_cursor = encode_cursor(streams[-1]) if len(raws) > limit else None
        return Page(items=streams, next_cursor=next_cursor)

    @_unavailable_as_store_error
    async def end(self, stream_id: str, ended_at: int) -> Stream | None:
        return await self.update(stream_id, functools.partial(ended, ended_at=ended_at))

    @_unavailable_as_store_error
    async def update(self, stream_id: str, change: Callable[[Stream], Stream]) -> Stream | None:
        key = self.db.key("stream", stream_id)

        async def _update(pipe: Pipeline) -> Stream | None:
            raw = await pipe.get(key)
            if raw is None:
                return None
            stream = from_document(json.loads(raw))
            changed = change(stream)
            if changed != stream:
                pipe.multi()
                pipe.set(key, _dumps(to_document(changed)), xx=True)
                await pipe.execute()
            return changed

        return await self.db.transact([key], _update)

    @_unavailable_as_store_error
    async def delete(self, stream_id: str) -> bool:
        key = self.db.key("stream", stream_id)

        async def _delete(pipe: Pipeline) -> bool:
            raw = await pipe.get(key)
            if raw is None:
                return False
            created_at = from_document(json.loads(raw)).created_at
            pipe.multi()
            pipe.delete(key)
            pipe.zrem(self.index, _member(created_at, stream_id))
            await pipe.execute()
            return True

        return await self.db.transact([key], _delete)


# --- registry ---

# Shared by the registry scripts. Key names are built from the prefix (ARGV[1]): see the module
# docstring. Every change to the set of broadcasters takes the next number of P broadcasters:seq:
# a live name is in P broadcasters at the number of its last write, a removed one in
# P broadcasters:gone at the number of its removal, so a node can ask "what changed since n".
_REGISTRY_LIB = f"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function epoch(p)
  local e = redis.call('GET', p .. 'broadcasters:epoch')
  if not e then
    local t = redis.call('TIME')
    e = t[1] .. '.' .. t[2]
    redis.call('SET', p .. 'broadcasters:epoch', e)
  end
  return e
end
local function touch(p, name)
  epoch(p)
  local seq = redis.call('INCR', p .. 'broadcasters:seq')
  redis.call('ZADD', p .. 'broadcasters', seq, name)
  redis.call('ZREM', p .. 'broadcasters:gone', name)
end
-- Forget a broadcaster and everything that names it: doc, index entries, reports, hand-outs.
local function forget(p, name)
  local reports = p .. 'reports:' .. name
  for _, sid in ipairs(redis.call('SMEMBERS', reports)) do
    redis.call('SREM', p .. 'reported:' .. sid, name)
  end
  local handed = p .. 'handed:' .. name
  for _, sid in ipairs(redis.call('ZRANGE', handed, 0, -1)) do
    redis.call('ZREM', p .. 'handouts:' .. sid, name)
  end
  local existed = redis.call('DEL', p .. 'broadcaster:' .. name)
  redis.call('DEL', reports, handed)
  redis.call('ZREM', p .. 'heartbeats', name)
  if redis.call('ZREM', p .. 'broadcasters', name) == 1 then
    epoch(p)
    local gone = p .. 'broadcasters:gone'
    redis.call('ZADD', gone, redis.call('INCR', p .. 'broadcasters:seq'), name)
    if redis.call('ZCARD', gone) > {_GONE_KEPT} then
      -- Keep the newest removals; a node that last synced before the oldest kept one resyncs whole.
      local oldest = redis.call('ZRANGE', gone, 0, {_GONE_TRIM - 1}, 'WITHSCORES')
      redis.call('SET', p .. 'broadcasters:floor', oldest[#oldest])
      redis.call('ZREMRANGEBYRANK', gone, 0, {_GONE_TRIM - 1})
    end
  end
  return existed
end
"""

# ARGV: prefix, name, doc, mode, px, count of added stream ids, added ids..., removed ids...
# mode "self": a heartbeat, the key lives px ms from now on Redis's clock, which P heartbeats
# (by last seen) records; "static": no expiry (a plain SET drops one); "keep": not a heartbeat,
# the expiry stays, and a key that expired meanwhile stays gone (0).
_SAVE = _REGISTRY_LIB + """
local p, name, doc, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. 'broadcaster:' .. name
if mode ~= 'keep' and redis.call('EXISTS', key) == 0 and redis.call('ZSCORE', p .. 'broadcasters', name) then
  forget(p, name)  -- back after its key expired: nothing of before, whether or not anyone listed since
end
if mode == 'self' then
  redis.call('SET', key, doc, 'PX', ARGV[5])
  redis.call('ZADD', p .. 'heartbeats', now_ms(), name)
elseif mode == 'static' then
  redis.call('SET', key, doc)
  redis.call('ZREM', p .. 'heartbeats', name)
elseif not redis.call('SET', key, doc, 'KEEPTTL', 'XX') then
  return 0
end
local added = tonumber(ARGV[6])
for i = 7, #ARGV do
  local reported, reports = p .. 'reported:' .. ARGV[i], p .. 'reports:' .. name
  if i < 7 + added then
    redis.call('SADD', reported, name)
    redis.call('SADD', reports, ARGV[i])
  else
    redis.call('SREM', reported, name)
    redis.call('SREM', reports, ARGV[i])
  end
end
touch(p, name)
return 1
"""

_DELETE = _REGISTRY_LIB + "return forget(ARGV[1], ARGV[2])"

# ARGV: prefix, the caller's epoch, the number it synced to, forget_after in ms.
# First forgets self-registered names whose key expired (no heartbeat for forget_after: Redis
# dropped the key; this drops what pointed at it), then answers {epoch, number, whole (1) or
# changes (0), changed names, their docs, removed names}. Whole when the caller has nothing yet,
# or its epoch or number no longer fits (Redis lost its data, or too many removals ago).
_SYNC = _REGISTRY_LIB + f"""
local p, since = ARGV[1], tonumber(ARGV[3])
local stale = redis.call('ZRANGEBYSCORE', p .. 'heartbeats', '-inf', now_ms() - tonumber(ARGV[4]))
for _, name in ipairs(stale) do
  if redis.call('EXISTS', p .. 'broadcaster:' .. name) == 0 then forget(p, name) end
end
local e = epoch(p)
local seq = tonumber(redis.call('GET', p .. 'broadcasters:seq') or '0')
local floor = tonumber(redis.call('GET', p .. 'broadcasters:floor') or '0')
local whole = e ~= ARGV[2] or since == 0 or since > seq or since < floor
local names
if whole then
  names = redis.call('ZRANGE', p .. 'broadcasters', 0, -1)
else
  names = redis.call('ZRANGEBYSCORE', p .. 'broadcasters', '(' .. since, '+inf')
end
local found, docs, removed = {{}}, {{}}, {{}}
for first = 1, #names, {_MGET_CHUNK} do
  local keys = {{}}
  for i = first, math.min(first + {_MGET_CHUNK - 1}, #names) do
    keys[#keys + 1] = p .. 'broadcaster:' .. names[i]
  end
  local got = redis.call('MGET', unpack(keys))
  for i = 1, #keys do
    local name = names[first + i - 1]
    if got[i] then
      found[#found + 1] = name
      docs[#docs + 1] = got[i]
    else  -- expired just now
      forget(p, name)
      removed[#removed + 1] = name
    end
  end
end
if not whole then
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', p .. 'broadcasters:gone', '(' .. since, '+inf')) do
    removed[#removed + 1] = name
  end
end
seq = tonumber(redis.call('GET', p .. 'broadcasters:seq') or '0')
return {{e, seq, whole and 1 or 0, found, docs, removed}}
"""

# Docs of the names that report the stream or were handed it (live hand-outs only), each followed
# by "1" if handed; an expired registration met here is forgotten, a hand-out to a name never
# registered is kept (as SQLite keeps it).
_CARRYING = _REGISTRY_LIB + """
local p, sid = ARGV[1], ARGV[2]
local handed = {}
local names = redis.call('SMEMBERS', p .. 'reported:' .. sid)
for _, name in ipairs(redis.call('ZRANGEBYSCORE', p .. 'handouts:' .. sid, '(' .. now_ms(), '+inf')) do
  handed[name] = true
  names[#names + 1] = name
end
local out, seen = {}, {}
for _, name in ipairs(names) do
  if not seen[name] then
    seen[name] = true
    local doc = redis.call('GET', p .. 'broadcaster:' .. name)
    if doc then
      out[#out + 1] = doc
      out[#out + 1] = handed[name] and '1' or '0'
    elseif redis.call('ZSCORE', p .. 'broadcasters', name) then
      forget(p, name)
    end
  end
end
return out
"""

# Names with a live carrier hint for the stream.
_CARRIER_HINTS = _REGISTRY_LIB + """
local p, sid = ARGV[1], ARGV[2]
return redis.call('ZRANGEBYSCORE', p .. 'handouts:' .. sid, '(' .. now_ms(), '+inf')
"""

# ARGV: prefix, stream id, name, ttl in ms. A carrier hint lives ttl ms on Redis's clock; both sides
# (stream -> names, name -> streams) are sorted by deadline so each entry lapses on its own.
_NOTE_CARRIER = _REGISTRY_LIB + """
local p, sid, name, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
for _, pair in ipairs({{p .. 'handouts:' .. sid, name}, {p .. 'handed:' .. name, sid}}) do
  redis.call('ZREMRANGEBYSCORE', pair[1], '-inf', now)
  redis.call('ZADD', pair[1], now + ttl, pair[2])
  redis.call('PEXPIRE', pair[1], ttl)
end
"""

_FORGET_STREAM = """
local p, sid = ARGV[1], ARGV[2]
local handouts = p .. 'handouts:' .. sid
for _, name in ipairs(redis.call('ZRANGE', handouts, 0, -1)) do
  redis.call('ZREM', p .. 'handed:' .. name, sid)
end
redis.call('DEL', handouts)
"""


class _FleetProbe:
    """An empty fleet that notes whether it was looked at: record_fetch needs the fleet only to
    cap ejections, so the common case (a success, an early failure) reads one key, not all."""

    consulted = False

    def __iter__(self) -> Iterator[Broadcaster]:
        self.consulted = True
        return iter(())


class _KeyedLocks:
    """One asyncio lock per name, dropped when unused: this node's writes to one broadcaster
    queue here instead of all racing on WATCH (which costs round trips per lost race)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)


def _broadcaster(raw: bytes | str | None) -> Broadcaster | None:
    return from_doc(json.loads(raw)) if raw is not None else None


class RedisRegistry:
    """RegistryStore on Redis: each write applies its pure step to the stored value in an
    optimistic transaction on the broadcaster's key, so writes from several nodes never overwrite
    each other; heartbeat expiry is the key's own expiry.

    `list_all` keeps a mirror of the registry that each call brings up to date in one round trip
    (only what changed since this node's last call travels), so it is exact, not a cache, and
    costs little with a thousand broadcasters.
    """

    def __init__(
        self,
        db: RedisDatabase,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
    ) -> None:
        self.db = db
        self.forget_ms = max(1, round(forget_after(liveness) * 1000))
        self.hint_ttl_ms = max(1, round(hint_ttl_s * 1000))
        self._save = db.script(_SAVE)
        self._delete = db.script(_DELETE)
        self._sync = db.script(_SYNC)
        self._carrying = db.script(_CARRYING)
        self._carrier_hints = db.script(_CARRIER_HINTS)
        self._note_carrier = db.script(_NOTE_CARRIER)
        self._forget_stream = db.script(_FORGET_STREAM)
        self._locks = _KeyedLocks()
        self._mirror: dict[str, Broadcaster] = {}
        self._epoch = ""
        self._seq = 0

    async def _update(
        self,
        name: str,
        step: Callable[[Broadcaster | None, Pipeline], Awaitable[Broadcaster | None]],
        heartbeat: bool = False,
    ) -> Broadcaster | None:
        """Apply `step` to the stored value atomically; a heartbeat always writes (it renews the
        expiry), other steps only when they changed something. None: unknown name."""
        key = self.db.key("broadcaster", name)

        async def _apply(pipe: Pipeline) -> Broadcaster | None:
            current = _broadcaster(await pipe.get(key))
            updated = await step(current, pipe)
            if updated is None or (not heartbeat and not worth_writing(current, updated)):
                return updated
            before = current.streams if current is not None else frozenset()
            added, removed = sorted(updated.streams - before), sorted(before - updated.streams)
            mode = updated.source if heartbeat else "keep"
            pipe.multi()
            doc = _dumps(to_doc(updated))
            await self._save(
                args=[self.db.prefix, name, doc, mode, self.forget_ms, len(added), *added, *removed], client=pipe
            )
            (saved,) = await pipe.execute()
            return updated if saved else None

        async with self._locks.hold(name):
            return await self.db.transact([key], _apply)

    async def _watched_fleet(self, pipe: Pipeline) -> list[Broadcaster]:
        """Every broadcaster, read with their keys watched: an ejection decided on this fleet is
        retried if any of them changed before the write, so concurrent ejections from several
        nodes cannot together pass the cap. (A broadcaster joining only loosens the cap.)"""
        names = [_text(n) for n in await pipe.zrange(self.db.key("broadcasters"), 0, -1)]
        if not names:
            return []
        keys = [self.db.key("broadcaster", n) for n in names]
        await pipe.watch(*keys)
        return [b for b in map(_broadcaster, await pipe.mget(keys)) if b is not None]

    @_unavailable_as_store_error
    async def upsert(self, name: str, registration: Registration, now: float, source: Source = "self") -> Broadcaster:
        async def step(current: Broadcaster | None, pipe: Pipeline) -> Broadcaster:
            return from_registration(name, registration, now, source=source, previous=current)

        b = await self._update(name, step, heartbeat=True)
        assert b is not None  # a heartbeat writes whether or not the key was there
        return b

    @_unavailable_as_store_error
    async def get(self, name: str) -> Broadcaster | None:
        return _broadcaster(await self.db.client.get(self.db.key("broadcaster", name)))

    @_unavailable_as_store_error
    async def list_all(self) -> list[Broadcaster]:
        epoch, seq, whole, names, docs, removed = await self._sync(
            args=[self.db.prefix, self._epoch, self._seq, self.forget_ms]
        )
        epoch = _text(epoch)
        # Two calls of this node may answer out of order: the later state wins.
        if epoch != self._epoch or seq >= self._seq:
            if whole:
                self._mirror = {}
            for name, raw in zip(names, docs):
                self._mirror[_text(name)] = from_doc(json.loads(raw))
            for name in removed:
                self._mirror.pop(_text(name), None)
            self._epoch, self._seq = epoch, seq
        return sorted(self._mirror.values(), key=lambda b: b.name)

    def revision(self) -> int | None:
        return None  # other nodes write too: only list_all's round trip knows

    def list_now(self) -> list[Broadcaster] | None:
        return None

    @_unavailable_as_store_error
    async def set_state(self, name: str, state: State) -> Broadcaster | None:
        async def step(current: Broadcaster | None, pipe: Pipeline) -> Broadcaster | None:
            return replace(current, state=state) if current is not None else None

        return await self._update(name, step)

    @_unavailable_as_store_error
    async def delete(self, name: str) -> bool:
        return bool(await self._delete(args=[self.db.prefix, name]))

    @_unavailable_as_store_error
    async def record_probe(self, name: str, ok: bool, now: float, policy: LivenessPolicy) -> Broadcaster | None:
        async def step(current: Broadcaster | None, pipe: Pipeline) -> Broadcaster | None:
            return record_probe(current, ok, now, policy) if current is not None else None

        return await self._update(name, step)

    @_unavailable_as_store_error
    async def record_fetch(self, name: str, ok: bool, now: float, policy: LivenessPolicy) -> Broadcaster | None:
        async def step(current: Broadcaster | None, pipe: Pipeline) -> Broadcaster | None:
            if current is None:
                return None
            probe = _FleetProbe()
            updated = record_fetch(current, ok, now, policy, probe)
            if not probe.consulted:
                return updated
            return record_fetch(current, ok, now, policy, await self._watched_fleet(pipe))

        return await self._update(name, step)

    @_unavailable_as_store_error
    async def note_carrier(self, stream_id: str, name: str, now: float) -> None:
        # `now` is the caller's clock; hints expire on Redis's clock, like every other key.
        await self._note_carrier(args=[self.db.prefix, stream_id, name, self.hint_ttl_ms])

    @_unavailable_as_store_error
    async def carrying(self, stream_id: str) -> list[Broadcaster]:
        flat = await self._carrying(args=[self.db.prefix, stream_id])
        found = []
        for raw, handed in zip(flat[::2], flat[1::2]):
            b = from_doc(json.loads(raw))
            if stream_id in b.streams or handed == b"1":
                found.append(b)
        return sorted(found, key=lambda b: b.name)

    @_unavailable_as_store_error
    async def carrier_hints(self, stream_id: str) -> frozenset[str]:
        names = await self._carrier_hints(args=[self.db.prefix, stream_id])
        return frozenset(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    @_unavailable_as_store_error
    async def forget_stream(self, stream_id: str) -> None:
        await self._forget_stream(args=[self.db.prefix, stream_id])



# --- credentials ---

# ARGV: prefix, name, id. Only a credential bound to `name` is revoked.
_CREDENTIAL_REVOKE = """
local key = ARGV[1] .. 'credential:' .. ARGV[3]
if redis.call('HGET', key, 'name') ~= ARGV[2] then return 0 end
redis.call('DEL', key)
redis.call('ZREM', ARGV[1] .. 'credentials:' .. ARGV[2], ARGV[3])
return 1
"""


class RedisCredentials:
    """Broadcaster credentials, read from Redis on every use: a revocation on one node holds on all."""

    def __init__(self, db: RedisDatabase) -> None:
        self.db = db
        self._revoke = db.script(_CREDENTIAL_REVOKE)

    @_unavailable_as_store_error
    async def add(self, credential: Credential) -> None:
        async with self.db.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.db.key("credential", credential.id), mapping={
                "version": _CREDENTIAL_VERSION, "name": credential.name, "salt": credential.salt, "digest": credential.digest,
                "created": repr(credential.created_at),
            })
            pipe.zadd(self.db.key("credentials", credential.name), {credential.id: credential.created_at})
            await pipe.execute()

    @_unavailable_as_store_error
    async def get(self, credential_id: str) -> Credential | None:
        return _credential(credential_id, await self.db.client.hgetall(self.db.key("credential", credential_id)))

    @_unavailable_as_store_error
    async def list_for(self, name: str) -> list[Credential]:
        ids = [_text(i) for i in await self.db.client.zrange(self.db.key("credentials", name), 0, -1)]
        async with self.db.client.pipeline(transaction=False) as pipe:
            for credential_id in ids:
                pipe.hgetall(self.db.key("credential", credential_id))
            fields = await pipe.execute()
        found = [_credential(i, f) for i, f in zip(ids, fields)]
        return sorted((c for c in found if c is not None and c.name == name), key=lambda c: (c.created_at, c.id))

    @_unavailable_as_store_error
    async def revoke(self, name: str, credential_id: str) -> bool:
        return bool(await self._revoke(args=[self.db.prefix, name, credential_id]))


_CREDENTIAL_VERSION = 2  # bump on any change of the hash's fields, and keep reading the one before
_CREDENTIAL_READABLE = (1, 2)  # 1: the same fields, before the hash carried a version


def _credential(credential_id: str, fields: dict[bytes, bytes]) -> Credential | None:
    if not fields:
        return None
    version = int(fields.get(b"version", b"1"))
    if version not in _CREDENTIAL_READABLE:
        raise ValueError(f"credential {credential_id} of version {version}: this node reads {_CREDENTIAL_READABLE}")
    return Credential(
        id=credential_id, name=_text(fields[b"name"]), salt=fields[b"salt"], digest=fields[b"digest"],
        created_at=float(fields[b"created"]),
    )


# --- playlists ---


# The revision lives in the stream's hash under a field no rendition can have (names start with a
# letter or digit), so a save and its revision bump are one script on one key.
_REVISION_FIELD = "#rev"
_PLAYLIST_SAVE = """
local revision = tonumber(redis.call('HGET', KEYS[1], '#rev') or '0')
if revision ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], '#rev', revision + 1)
return revision + 1
"""


class RedisPlaylists:
    """Published playlist states: one hash per stream (rendition -> state, and the revision), so a
    compare-and-set save of several renditions is one script and a load one HGETALL."""

    def __init__(self, db: RedisDatabase) -> None:
        self.db = db
        self._save = db.script(_PLAYLIST_SAVE)

    @_unavailable_as_store_error
    async def load(self, stream_id: str) -> StoredStates:
        raw = await self.db.client.hgetall(self.db.key("playlist", stream_id))
        states = {_text(rendition): state for rendition, state in raw.items()}  # type: ignore[misc]
        revision = states.pop(_REVISION_FIELD, b"0")
        return StoredStates(int(revision), states)

    @_unavailable_as_store_error
    async def revision(self, stream_id: str) -> int:
        raw = await self.db.client.hget(self.db.key("playlist", stream_id), _REVISION_FIELD)
        return int(raw) if raw is not None else 0

    def revision_now(self, stream_id: str) -> int | None:
        return None  # a round trip to Redis

    @_unavailable_as_store_error
    async def save(self, stream_id: str, states: dict[str, bytes], expected_revision: int) -> int | None:
        args: list[object] = [expected_revision]
        for rendition, state in states.items():
            args += [rendition, state]
        revision = int(await self._save(keys=[self.db.key("playlist", stream_id)], args=args))
        return None if revision < 0 else revision

    @_unavailable_as_store_error
    async def delete(self, stream_id: str) -> None:
        await self.db.client.delete(self.db.key("playlist", stream_id))


# --- leases ---

_LEASE_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""

# Membership on Redis's clock: count the member until now + ttl, drop the lapsed, list the rest.
_ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class RedisLeases:
    """edge.store.leases.Leases across the fleet: the lease is a key holding its owner, expiring
    with PX; taking and extending are one script, so two nodes never both hold it."""

    def __init__(self, db: RedisDatabase) -> None:
        self.db = db
        self._acquire = db.script(_LEASE_ACQUIRE)
        self._release = db.script(_LEASE_RELEASE)
        self._announce = db.script(_ANNOUNCE)

    @_unavailable_as_store_error
    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        ttl_ms = max(1, round(ttl_s * 1000))
        return bool(await self._acquire(keys=[self.db.key("lease", key)], args=[owner, ttl_ms]))

    @_unavailable_as_store_error
    async def release(self, key: str, owner: str) -> None:
        await self._release(keys=[self.db.key("lease", key)], args=[owner])

    @_unavailable_as_store_error
    async def holder(self, key: str) -> str | None:
        raw = await self.db.client.get(self.db.key("lease", key))
        return _text(raw) if raw is not None else None

    @_unavailable_as_store_error
    async def announce(self, group: str, member: str, ttl_s: float) -> frozenset[str]:
        ttl_ms = max(1, round(ttl_s * 1000))
        members = await self._announce(keys=[self.db.key("members", group)], args=[member, ttl_ms])
        return frozenset(_text(m) for m in members)

    @_unavailable_as_store_error
    async def leave(self, group: str, member: str) -> None:
        await self.db.client.zrem(self.db.key("members", group), member)


# --- the store ---


class RedisStore:
    """Every repository on one Redis, for a fleet of edge nodes.

    url: redis://[[user]:password@]host[:port][/db], rediss://... (TLS) or
    unix:///path/redis.sock?db=N. `liveness` sets how long a silent self-registered broadcaster is
    kept (forget_after_s); pass the service's policy.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "edge:",
        *,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        operation_timeout_s: float = OPERATION_TIMEOUT_S,
    ) -> None:
        self.db = RedisDatabase(url, prefix, connect_timeout_s, operation_timeout_s)
        self.streams = RedisStreams(self.db)
        self.registry = RedisRegistry(self.db, liveness, hint_ttl_s)
        self.credentials = RedisCredentials(self.db)
        self.playlists = RedisPlaylists(self.db)
        self.leases = RedisLeases(self.db)
        self.shared = True  # every edge node of the fleet reads and writes it

    async def open(self) -> None:
        """Never fails on an unreachable Redis: the node starts, answers 503 where it needs the
        store, and recovers when Redis answers again (each call reconnects)."""
        try:
            await self.ping()
        except StoreUnavailable as exc:
            log.warning("redis not reachable at start; retrying on every use: %s", exc)

    @_unavailable_as_store_error
    async def ping(self) -> None:
        await self.db.client.ping()

    async def close(self) -> None:
        await self.db.client.aclose()

    @property
    def answered(self) -> int:
        return self.db.answered

    def describe(self) -> str:
        return self.db.where
