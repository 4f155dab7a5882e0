"""The copier: fetches segments from their broadcasters into the segment store, once each.

Only a stream's lease holder asks for copies, so across the fleet each segment has one copier. One
copier per node serves every feed: bounded concurrency, a bounded backlog (back-pressure: a copy
that cannot even be queued is not attempted, and its number falls back to `direct` after the
mirror wait, counted), retries over every carrier of the segment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge.segments.policy import Copies
from edge.segments.store import SegmentStore

log = logging.getLogger("edge.segments")

MAX_SEGMENT_BYTES = 64 * 1024 * 1024
REMEMBERED = 200_000  # stored keys kept in memory (a few hours of a hundred streams)
FORGET_WANTS_AFTER_S = 600.0

# (broadcaster, url) -> the segment's bytes, or None when that copy could not be had
FetchSegment = Callable[[str, str], Awaitable[bytes | None]]


class CopierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.copies = Counter("edge_segment_copies", "Segment copies into the store, by outcome.", ["outcome"],
                              registry=registry)
        self.bytes = Counter("edge_segment_copied_bytes", "Bytes copied into the segment store.", registry=registry)
        self.store_latency = Histogram(
            "edge_segment_store_seconds", "Latency of segment store operations.", ["operation"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.backlog = Gauge("edge_segment_copy_backlog", "Segment copies queued or running.", registry=registry)


class Copier:
    def __init__(
        self,
        store: SegmentStore,
        fetch: FetchSegment,
        metrics: CopierMetrics,
        *,
        concurrency: int = 8,
        max_backlog: int = 256,
        attempts: int = 3,
        retry_delay: float = 0.25,
    ) -> None:
        self.store = store
        self.fetch = fetch
        self.metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)
        self.max_backlog = max_backlog
        self.attempts = attempts
        self.retry_delay = retry_delay
        self._stored: OrderedDict[str, None] = OrderedDict()
        self._wanted_since: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, set[Callable[[], None]]] = {}  # key -> who to wake when its copy is done
        self._shed_logged = 0.0

    def want(self, wanted: Mapping[str, Sequence[tuple[str, str]]], now: float,
             wake: Callable[[], None] | None = None) -> None:
        """Start copying what is not stored nor being copied. Cheap; never waits. `wake` is called
        when a copy of these under way is done (stored or given up), so that a round that stopped
        waiting for it runs again then, not up to a poll later."""
        for key, sources in wanted.items():
            if key in self._stored:
                continue
            if key in self._tasks:
                if wake is not None:
                    self._waiters.setdefault(key, set()).add(wake)
                continue
            self._wanted_since.setdefault(key, now)
            if len(self._tasks) >= self.max_backlog:
                self.metrics.copies.labels("shed").inc()
                if now - self._shed_logged > 10:
                    self._shed_logged = now
                    log.warning("segment copies shed: the store is slower than the streams (backlog %d)",
                                len(self._tasks))
                continue
            task = asyncio.create_task(self._copy(key, list(sources)), name=f"copy-{key}")
            self._tasks[key] = task
            if wake is not None:
                self._waiters.setdefault(key, set()).add(wake)
            task.add_done_callback(lambda _, key=key: self._done(key))
        self.metrics.backlog.set(len(self._tasks))
        if len(self._wanted_since) > 4 * self.max_backlog:
            self._wanted_since = {k: t for k, t in self._wanted_since.items() if now - t < FORGET_WANTS_AFTER_S}

    async def settle(self, keys: Iterable[str], timeout: float) -> None:
        """Wait up to `timeout` for the copies of these keys that are under way."""
        tasks = [t for k in keys if (t := self._tasks.get(k)) is not None]
        if tasks and timeout > 0:
            await asyncio.wait(tasks, timeout=timeout)

    def copies(self, keys: Iterable[str]) -> Copies:
        """What the round needs to know of these keys."""
        keys = list(keys)
        return Copies(
            stored=frozenset(k for k in keys if k in self._stored),
            wanted_since={k: self._wanted_since[k] for k in keys if k in self._wanted_since},
        )

    def is_stored(self, key: str) -> bool:
        return key in self._stored

    def forget(self, prefix: str) -> None:
        for key in [k for k in self._stored if k.startswith(prefix)]:
            del self._stored[key]
        for key, task in list(self._tasks.items()):
            if key.startswith(prefix):
                task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, key: str) -> None:
        self._tasks.pop(key, None)
        for wake in self._waiters.pop(key, ()):
            wake()

    def _mark(self, key: str) -> None:
        self._stored[key] = None
        self._wanted_since.pop(key, None)
        while len(self._stored) > REMEMBERED:
            self._stored.popitem(last=False)

    async def _copy(self, key: str, sources: list[tuple[str, str]]) -> None:
        async with self._slots:
            try:
                # A node that took the stream over may find copies its predecessor made.
                if await self._timed("exists", self.store.exists(key)):
                    self._mark(key)
                    self.metrics.copies.labels("found").inc()
                    return
                for attempt in range(self.attempts):
                    for broadcaster, url in sources:
                        data = await self.fetch(broadcaster, url)
                        if data is None:
                            continue
                        await self._timed("put", self.store.put(key, data))
                        self._mark(key)
                        self.metrics.copies.labels("copied").inc()
                        self.metrics.bytes.inc(len(data))
                        return
                    await asyncio.sleep(self.retry_delay * (2**attempt))
                self.metrics.copies.labels("unavailable").inc()
                log.info("segment %s: no carrier had it; not stored", key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store failed: the number goes out direct after the wait
                self.metrics.copies.labels("store_error").inc()
                log.warning("segment %s: store failed (%s)", key, type(exc).__name__)

    async def _timed(self, operation: str, work: Awaitable[object]) -> object:
        started = time.perf_counter()
        try:
            return await work
        finally:
            self.metrics.store_latency.labels(operation).observe(time.perf_counter() - started)
