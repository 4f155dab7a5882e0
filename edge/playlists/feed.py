"""One watched stream: a task that refreshes every rendition from the broadcasters carrying it,
merges (pure, merge.py), persists the published state, and renders what players are served.

Players never wait on upstream: they read `Feed.rendered`, replaced whole after each change. Upstream
load is one fetch per (carrier, rendition) per poll interval, however many players there are.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import time
from dataclasses import dataclass, fields, replace
from typing import Callable, Iterable, Sequence, TypeVar

from prometheus_client import CollectorRegistry, Counter

from broadcaster_registry.liveness import LivenessPolicy, is_serving, record_fetch
from broadcaster_registry.model import Broadcaster
from edge.tasks import cancel
from edge.playlists.codec import dump_state, load_state
from edge.playlists.merge import (
    BroadcasterRef,
    FetchedPlaylist,
    MergeCounts,
    Policy,
    PublishedState,
    choose_target_duration,
    merge,
    renditions_agree,
)
from edge.playlists.render import render_media
from edge.playlists.upstream import ParseLimits, UpstreamPlaylist, parse_upstream
from edge.store.base import Store
from edge.streams.model import SOURCE, Stream
from edge.upstream import FetchResult, UpstreamFetcher, playlist_url

log = logging.getLogger("edge.feed")
T = TypeVar("T")

# The target duration can never change once published, so it leaves room for encoders whose
# keyframes (and so segment ends) drift: 2.0 s segments get a target of 3, not 2.
TARGET_HEADROOM = 1.25
STREAM_RECHECK_S = 2.0  # how often a feed re-reads its stream (ended or deleted on another node)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)  # identity: each version its own object
class Rendered:
    """One version of a media playlist, ready to send: both encodings and the validators."""

    body: bytes
    gzipped: bytes
    etag: str
    target_duration: int
    ended: bool
    changed_at: float
    has_segments: bool

    @classmethod
    def of(cls, state: PublishedState, now: float) -> "Rendered":
        body = render_media(state)
        return cls(
            body=body,
            gzipped=gzip.compress(body, compresslevel=6, mtime=0),
            etag='"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"',
            target_duration=state.target_duration,
            ended=state.ended,
            changed_at=now,
            has_segments=bool(state.segments),
        )


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "edge_upstream_segments_rejected", "Upstream playlist lines or segments refused, by reason.",
            ["reason"], registry=registry,
        )
        self.merge_events = Counter(
            "edge_playlist_merge_events", "Holes passed, numbers skipped, restarts seen by the merge.",
            ["event"], registry=registry,
        )
        self.published = Counter(
            "edge_playlist_versions", "New versions of merged media playlists.", registry=registry,
        )
        self.misaligned = Counter(
            "edge_playlist_renditions_misaligned",
            "Streams whose renditions stopped agreeing on which segment an MSN is (RFC 8216 §6.2.4).",
            registry=registry,
        )


@dataclass(frozen=True)
class FeedContext:
    """What every feed needs, shared by all of them."""

    store: Store
    fetcher: UpstreamFetcher
    clock: Callable[[], float]
    policy: Policy
    liveness: LivenessPolicy
    limits: ParseLimits
    metrics: FeedMetrics
    poll_interval: float
    discovery_interval: float
    idle_timeout: float
    fixed_target_duration: int  # 0: chosen from the first segments
    node_id: str  # this edge node, as a lease owner
    lease_ttl: float  # a dead lease holder is replaced within this many seconds


# Past this many segments, rendering and serialising take milliseconds: done in a thread so that the
# event loop keeps answering players meanwhile (zlib releases the GIL; the rest shares it fairly).
LARGE_WINDOW = 300


async def _off_loop_if_large(states: Iterable[PublishedState], work: Callable[[], T]) -> T:
    if any(len(state.segments) > LARGE_WINDOW for state in states):
        return await asyncio.to_thread(work)
    return work()


def _visible(state: PublishedState) -> tuple[object, ...]:
    return (state.media_sequence, state.discontinuity_sequence, state.segments, state.ended)


def _is_health_failure(result: FetchResult) -> bool:
    """A broadcaster that answers, even 404 (not carrying this rendition), is alive."""
    if result.ok:
        return False
    return not (result.outcome == "http_error" and result.status is not None and result.status < 500)


class Feed:
    def __init__(self, stream: Stream, ctx: FeedContext) -> None:
        self.stream = stream
        self.ctx = ctx
        self.states: dict[str, PublishedState] = {}
        self.rendered: dict[str, Rendered] = {}
        self.target_duration: int | None = None
        self.revision = 0  # of the stored states these are
        self.leader = False  # holds the stream's lease: polls the broadcasters and publishes
        self._sync_lock = asyncio.Lock()
        self.last_request = ctx.clock()
        self.first_round = asyncio.Event()
        self.finished = False  # ended and final, or deleted: no more polling
        self._wake = asyncio.Event()
        self._last_discovery = float("-inf")
        self._last_recheck = ctx.clock()
        self._task: asyncio.Task[None] | None = None
        self._errors_logged: set[str] = set()
        self._misaligned = False
        self._unsaved: set[str] = set()
        self._lease_until = 0.0  # renditions whose newer bookkeeping is not stored yet

    def _renders(self, changed: dict[str, PublishedState], now: float) -> dict[str, Rendered]:
        """New renderings for the states whose visible content changed (pure: may run in a thread)."""
        return {
            rendition: Rendered.of(state, now)
            for rendition, state in changed.items()
            if rendition not in self.rendered
            or rendition not in self.states
            or _visible(self.states[rendition]) != _visible(state)
        }

    def _adopt(self, states: dict[str, PublishedState], rendered: dict[str, Rendered]) -> None:
        self.states.update(states)
        self.rendered.update(rendered)

    # --- lifecycle ---

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-{self.stream.id}")

    def ensure_running(self) -> None:
        """Restart polling for a player who arrived after the feed went idle."""
        if not self.finished and (self._task is None or self._task.done()):
            self.start()

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._resign()

    @property
    def lease_key(self) -> str:
        return f"feed:{self.stream.id}"

    async def _resign(self) -> None:
        if self.leader:
            self.leader = False
            try:
                await self.ctx.store.leases.release(self.lease_key, self.ctx.node_id)
            except Exception:  # the lease expires by itself
                log.warning("feed %s: could not release its lease", self.stream.id)

    def poke(self) -> None:
        """Refresh now (the stream was ended or a carrier appeared)."""
        self._wake.set()

    @property
    def publishes_alone(self) -> bool:
        """This node holds the stream's lease and it has not lapsed: no other node can publish, so
        its own states are the newest and players need no revision check."""
        return self.leader and time.monotonic() < self._lease_until

    @property
    def idle(self) -> bool:
        return self.ctx.clock() - self.last_request > self.ctx.idle_timeout

    async def _run(self) -> None:
        loaded = False
        try:
            while not self.finished and not self.idle:
                try:
                    if not loaded:  # a store outage at start is retried like any other round
                        await self._load()
                        loaded = True
                    await self.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug or a store outage: log once per kind, keep serving
                    kind = type(exc).__name__
                    if kind not in self._errors_logged:
                        self._errors_logged.add(kind)
                        log.exception("feed %s: refresh failed", self.stream.id)
                finally:
                    self.first_round.set()
                if self.finished:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.ctx.poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.first_round.set()
            await self._resign()

    async def _load(self) -> None:
        """Continue from the stored states: numbering goes on unbroken across restarts and nodes."""
        await self.sync()
        self.finished = self.finished or self._is_final()

    async def sync(self, known_revision: int | None = None) -> None:
        """Take the stored states if they are newer than ours (another node published them).

        Concurrent callers (players at a follower, the feed itself) share one load."""
        if known_revision is not None and known_revision <= self.revision:
            return
        async with self._sync_lock:
            if known_revision is not None and known_revision <= self.revision:
                return  # loaded by whoever held the lock before us
            stored = await self.ctx.store.playlists.load(self.stream.id)
            if stored.revision == self.revision and self.states:
                return
            now = self.ctx.clock()
            adopted: dict[str, PublishedState] = {}
            for rendition, blob in stored.states.items():
                if rendition not in self.stream.rendition_names:
                    continue
                try:
                    state = load_state(blob)
                except ValueError as exc:  # damaged or from an incompatible version: start it afresh
                    log.warning("feed %s: stored %s state unreadable (%s); ignored", self.stream.id, rendition, exc)
                    continue
                current = self.states.get(rendition)
                if current is None or current.version != state.version:
                    adopted[rendition] = state
                self.target_duration = state.target_duration
            self._adopt(adopted, await _off_loop_if_large(adopted.values(), lambda: self._renders(adopted, now)))
            self._unsaved.difference_update(adopted)
            self.revision = stored.revision

    # --- one round ---

    async def refresh(self) -> None:
        """One round: as the lease holder, poll, merge and publish; otherwise follow the store."""
        ctx = self.ctx
        now = ctx.clock()
        await self._recheck_stream(now)
        if self.finished:
            return
        self.leader = await ctx.store.leases.acquire(self.lease_key, ctx.node_id, ctx.lease_ttl)
        if self.leader:
            self._lease_until = time.monotonic() + ctx.lease_ttl
        if not self.leader:
            await self.sync(await ctx.store.playlists.revision(self.stream.id))
            return
        if ctx.store.shared:  # just became leader, or another node published meanwhile
            await self.sync(await ctx.store.playlists.revision(self.stream.id))
        carriers = [b for b in await ctx.store.registry.carrying(self.stream.id) if is_serving(b, now, ctx.liveness)]
        if now - self._last_discovery >= ctx.discovery_interval:
            self._last_discovery = now
            carriers += await self._discover(carriers, now)
        renditions = self.stream.rendition_names
        rounds = await asyncio.gather(*(self._fetch(rendition, carriers) for rendition in renditions))
        fetched_by_rendition = dict(zip(renditions, (fetched for fetched, _ in rounds)))
        await self._record_health([result for _, results in rounds for result in results], carriers, now)

        if self.target_duration is None:
            self.target_duration = self._choose_target(fetched_by_rendition.values())
            if self.target_duration is None:
                self.finished = self._closing(now, self._policy())  # ended before anything was published
                return  # nothing published anywhere yet
        policy = self._policy()
        ended = self._closing(now, policy)
        changed: dict[str, PublishedState] = {}
        for rendition, fetched in fetched_by_rendition.items():
            before = self.states.get(rendition)
            after = merge(before, fetched, now, policy, self.target_duration, ended=ended)
            if after is not before:
                changed[rendition] = after
                self._count_merge(before.counts if before else MergeCounts(), after.counts)
        if changed and all(r in self.states and _visible(self.states[r]) == _visible(st) for r, st in changed.items()):
            # Only the merge's own bookkeeping moved (say, it began waiting for a hole): keep it here
            # and store it with the next change players can see, instead of a write per poll.
            self.states.update(changed)
            self._unsaved.update(changed)
            return
        if changed:
            changed = {**{r: self.states[r] for r in self._unsaved}, **changed}
            # Stored before it is served: what a player saw is never lost by a crash. The save is
            # fenced by the revision: if another node published meanwhile, this round is dropped.
            blobs = await _off_loop_if_large(changed.values(), lambda: {r: dump_state(st) for r, st in changed.items()})
            revision = await ctx.store.playlists.save(self.stream.id, blobs, self.revision)
            if revision is None:
                log.info("feed %s: another node published first; following it", self.stream.id)
                await self.sync(self.revision + 1)
                return
            self.revision = revision
            self._unsaved.clear()
            self._adopt(changed, await _off_loop_if_large(changed.values(), lambda: self._renders(changed, now)))
            ctx.metrics.published.inc(len(changed))
            self._check_alignment()
        self.finished = self.finished or self._is_final()

    def _is_final(self) -> bool:
        """Ended, and every rendition's playlist closed with ENDLIST: nothing will change again."""
        names = self.stream.rendition_names
        return self.stream.ended and all(r in self.states and self.states[r].ended for r in names)

    @property
    def gone(self) -> bool:
        """The stream was deleted (or ended before anything was published): nothing to serve."""
        return self.finished and not self.rendered

    def _check_alignment(self) -> None:
        """Renditions are merged one by one, so a number missing in one rendition only makes them
        disagree on what an MSN is; players switching renditions then skip or repeat a segment.
        Counted and logged once per stream (a known limit: see the README)."""
        if not self._misaligned and not renditions_agree(self.states.values()):
            self._misaligned = True
            self.ctx.metrics.misaligned.inc()
            log.warning("feed %s: renditions no longer agree on their segments", self.stream.id)

    def _closing(self, now: float, policy: Policy) -> bool:
        """Close the playlists (ENDLIST) once the stream has ended and the last segments, which the
        broadcasters may still be transcoding, had a hole wait's time to appear."""
        ended_at = self.stream.ended_at
        return ended_at is not None and now - ended_at / 1000 >= policy.hole_wait_seconds

    def _policy(self) -> Policy:
        """The edge's policy, with the stream's own DVR window when it asked for a longer one."""
        asked = self.stream.dvr_window_seconds
        if asked is None or asked <= self.ctx.policy.window_seconds:
            return self.ctx.policy
        return replace(self.ctx.policy, window_seconds=float(asked))

    async def _recheck_stream(self, now: float) -> None:
        if now - self._last_recheck < STREAM_RECHECK_S and not self._wake.is_set():
            return
        self._last_recheck = now
        stream = await self.ctx.store.streams.get(self.stream.id)
        if stream is None:
            self.finished = True  # deleted; the service drops this feed
            self.rendered = {}
        else:
            self.stream = stream

    async def _fetch(
        self, rendition: str, carriers: Sequence[Broadcaster]
    ) -> tuple[list[FetchedPlaylist], list[FetchResult]]:
        results = await asyncio.gather(
            *(self.ctx.fetcher.fetch(b.name, playlist_url(b.address, self.stream.id, rendition)) for b in carriers)
        )
        fetched = []
        for b, result in zip(carriers, results):
            ref = BroadcasterRef(name=b.name, origin=b.address)
            if result.ok:
                fetched.append(FetchedPlaylist(broadcaster=ref, playlist=self._parse(result, b)))
            else:
                fetched.append(FetchedPlaylist(broadcaster=ref, error=result.outcome))
        return fetched, list(results)

    def _parse(self, result: FetchResult, b: Broadcaster) -> UpstreamPlaylist:
        playlist = parse_upstream(result.body, result.url, b.address, self.ctx.limits)
        for reason, count in playlist.rejected.items():
            self.ctx.metrics.rejected.labels(str(reason)).inc(count)
        return playlist

    async def _discover(self, carriers: Sequence[Broadcaster], now: float) -> list[Broadcaster]:
        """Ask the serving broadcasters not known to carry the stream; adopt those that do."""
        known = {b.name for b in carriers}
        others = [
            b for b in await self.ctx.store.registry.list_all()
            if b.name not in known and is_serving(b, now, self.ctx.liveness)
        ]
        if not others:
            return []
        fetched, _ = await self._fetch(SOURCE, others)
        found = [b for b, f in zip(others, fetched) if f.playlist is not None and f.playlist.segments]
        for b in found:
            await self.ctx.store.registry.note_handout(self.stream.id, b.name, now)
        return found

    async def _record_health(self, results: list[FetchResult], carriers: Sequence[Broadcaster], now: float) -> None:
        """Passive health: one verdict per broadcaster per round (failed if every fetch failed)."""
        verdicts: dict[str, bool] = {}
        for result in results:
            failed = _is_health_failure(result)
            verdicts[result.broadcaster] = verdicts.get(result.broadcaster, True) and failed
        by_name = {b.name: b for b in carriers}
        for name, failed in verdicts.items():
            b = by_name.get(name)
            if not failed and b is not None and record_fetch(b, True, now, self.ctx.liveness, ()) == b:
                continue  # a success that changes nothing: no store write (on Redis, a transaction)
            await self.ctx.store.registry.record_fetch(name, not failed, now, self.ctx.liveness)

    def _choose_target(self, rounds: Iterable[list[FetchedPlaylist]]) -> int | None:
        if self.ctx.fixed_target_duration:
            return self.ctx.fixed_target_duration
        durations = [
            segment.duration * TARGET_HEADROOM
            for fetched in rounds
            for f in fetched
            if f.playlist is not None
            for segment in f.playlist.segments
        ]
        if not durations:
            return None
        return choose_target_duration(durations, minimum=1, maximum=self.ctx.policy.max_target_duration)

    def _count_merge(self, before: MergeCounts, after: MergeCounts) -> None:
        for field in fields(MergeCounts):
            delta = getattr(after, field.name) - getattr(before, field.name)
            if delta > 0:
                self.ctx.metrics.merge_events.labels(field.name).inc(delta)
