"""One watched stream: a task that, each round, fetches the renditions whose next segment is due
(cadence.py) from the broadcasters carrying it, lets the pure round (round.py) decide, persists what
changed, and renders what players are served. Everything that shapes the next decision is in the stored states, so another node can
take over between any two rounds and continue exactly.

Players never wait on upstream: they read `Feed.rendered`, replaced whole after each change. Upstream
load is about one fetch per (carrier, rendition) per segment, however many players there are; a
round runs at least every poll interval (lease, discovery, hole waits) and asks only what is due.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from broadcaster_registry.liveness import LivenessPolicy, is_ejected, is_serving
from broadcaster_registry.model import Broadcaster
from edge.fleet import GRACE_ROUNDS, Membership, Seat, take_turn, want_key
from edge.tasks import cancel, log_failure, wait_for_event
from edge.playlists.cadence import (
    NEVER, Cadence, Streams, Watch, due_now, failed, next_due, next_round_at, observe, poke, renewal_due, wake_idle,
    watched,
)
from edge.playlists.codec import dump_state, load_state
from edge.playlists.history import StreamHistory
from edge.playlists.layout import Layout
from edge.playlists.master import renditions as announced_variants
from edge.playlists.pacing import Gate
from edge.playlists.merge import BroadcasterRef, FetchedPlaylist, Policy, PublishedState
from edge.playlists.probing import Prober
from edge.playlists.render import encoded, render_media, skippable
from edge.playlists.round import (
    StreamPolicy, decide, discovery_asks, discovery_due, lateness, lease_watch_due, quiet, substitutes_by_bitrate,
    waits_end, with_dvr_window,
)
from edge.playlists.served import Served
from edge.playlists.upstream_parse import ParseLimits, UpstreamPlaylist, UpstreamSegment, parse_upstream
from edge.segments.copier import Copier
from edge.segments.policy import Copies, SegmentDefaults, SegmentMode, SegmentPolicy, waiting_copies, wanted
from edge.store.base import Store, StoreUnavailable
from edge.streams.model import SOURCE, Stream
from edge.upstream import FetchResult, UpstreamFetcher, Validators

log = logging.getLogger("edge.feed")
T = TypeVar("T")

# Among carriers, whose copy of a number is preferred (BroadcasterRef.rank): one that already
# supplied what players see, then one the ingest was sent to (a hand-out, the hook) or found carrying
# it, and last one that merely claims the stream in its heartbeats.
RANK_SUPPLIER, RANK_CARRIER, RANK_CLAIMER = 0, 1, 2
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
    next_msn: int = 0  # one past the last segment's MSN: what a blocking reload waits for
    delta: bytes | None = None  # the Playlist Delta Update, when the window is long enough to skip any

    @classmethod
    def of(cls, state: PublishedState, now: float, vod: bool = False) -> "Rendered":
        body = render_media(state, vod=vod)
        gzipped, etag = encoded(body)
        return cls(
            body=body,
            gzipped=gzipped,
            etag=etag,
            target_duration=state.target_duration,
            ended=state.ended,
            changed_at=now,
            has_segments=bool(state.segments),
            next_msn=state.next_msn,
            delta=render_media(state, delta=True) if skippable(state) else None,
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
        self.probes = Counter(
            "edge_media_probes", "Renditions probed for their codecs and size, by outcome (probing.py).",
            ["outcome"], registry=registry,
        )
        self.publish_lag = Histogram(
            "edge_playlist_publish_lag_seconds",
            "From the first fetch that listed a segment (any carrier, any rendition) to its publication.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8), registry=registry,
        )
        self.fallbacks = Counter(
            "edge_segment_direct_fallbacks", "Segments published direct in mirror mode: not stored in time.",
            registry=registry,
        )
        self.round_errors = Counter(
            "edge_feed_round_errors", "Feed rounds that failed, by error (StoreUnavailable: the store).",
            ["error"], registry=registry,
        )
        self.lease_changes = Counter(
            "edge_stream_lease_changes", "Stream leases this node took (acquired) or lost (lost).",
            ["change"], registry=registry,
        )
        self.ejections = Counter(
            "edge_broadcaster_ejections", "Broadcasters ejected after failed fetches by this node.",
            ["broadcaster"], registry=registry,
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
    layout: Layout = Layout()  # where broadcasters keep playlists and segments
    tiebreak_key: bytes = b""  # secret of the deployment: orders equally trusted carriers
    segments: SegmentDefaults = SegmentDefaults()  # segment modes, recordings
    copier: Copier | None = None  # fills the segment store (mirror mode, recordings)
    fleet: Membership | None = None  # the nodes sharing the store; None: take leases as they come
    gate: Gate = field(default_factory=Gate)  # players first: a bounded batch of round steps per loop turn


# Past this many segments, rendering and serialising take milliseconds: done in a thread so that the
# event loop keeps answering players meanwhile (zlib releases the GIL; the rest shares it fairly).
LARGE_WINDOW = 300


async def _off_loop_if_large(states: Iterable[PublishedState], work: Callable[[], T]) -> T:
    if any(len(state.segments) > LARGE_WINDOW for state in states):
        return await asyncio.to_thread(work)
    return work()


class Feed:
    def __init__(self, stream: Stream, ctx: FeedContext) -> None:
        self.stream = stream
        self.ctx = ctx
        self.states: dict[str, PublishedState] = {}
        self.rendered: Served[Rendered] = Served()  # wakes blocking reloads on every new version
        self.revision = 0  # of the stored states these are
        self.leader = False  # holds the stream's lease: polls the broadcasters and publishes
        self._sync_lock = asyncio.Lock()
        self.last_request = ctx.clock()
        self.first_round = asyncio.Event()
        self.finished = False  # ended and final, or deleted: no more polling
        self._wake = asyncio.Event()
        self._last_discovery = float("-inf")
        self._discoveries = 0  # discovery rounds so far (the first asks everyone)
        self._last_recheck = ctx.clock()
        self._task: asyncio.Task[None] | None = None
        self._errors_logged: set[str] = set()
        self._lease_until = float("-inf")  # on ctx.clock: until when our lease surely holds
        self._seat = Seat()  # what this node knows of the lease between rounds (edge.fleet)
        # This node held the lease when the shared store became unreachable: nobody can publish
        # until it is back, so its states are the newest. Cleared once the store answers again.
        self.published_last = False
        self._claim = (float("-inf"), 0)  # see newest_here
        self._last_progress = ctx.clock()  # when players last got a new segment
        # Renditions whose state here is newer than the stored one (the store lost writes, say a
        # Redis restarted from a slightly old file): saved again with the next publish.
        self._ahead: set[str] = set()
        # Last round's copies on offer, (rendition, number) -> (broadcaster, URL), best first: where
        # the segment route redirects when the chosen broadcaster is down.
        self.offers: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self.answered: dict[str, bool] = {}  # last round (as leader): which broadcasters answered
        self.history = StreamHistory()  # what this node saw of the stream lately, for operators
        self._policy = self._stream_policy(stream)
        # Per (broadcaster, rendition): what it listed and when (cadence.py), and its last answer,
        # which stands for it in the rounds that do not ask it (nothing can have changed it).
        self._watches: dict[tuple[str, str], Watch] = {}
        # Per rendition: the newest number any carrier listed, and when (cadence.watched): the
        # stream's own pace, which carriers waiting for the ingest to come back follow.
        self._streams: dict[str, Watch] = {}
        self._answers: dict[tuple[str, str], _Answer] = {}
        self._poked_at = float("-inf")
        self._next_round = float("inf")  # on ctx.clock: when the next ask is due (leader only)
        self._settled = False  # the last decision stands until the next ask (round.quiet)
        self._copies_end = NEVER  # when a copy waited for runs out of mirror_wait (leader only)
        # The ingest epoch (restarts) of the states, and when this node first saw it: listings from
        # before are another epoch's numbers, not this one's (merge_stream's `seen`).
        self._epoch: int | None = None
        self._epoch_since = -math.inf
        # The carriers as last read, and when: re-read on a poke and at least every poll interval (a
        # carrier that stopped serving); the rounds in between, when asks come due, reuse them.
        self._carriers: tuple[list[Broadcaster], frozenset[str]] | None = None
        self._carriers_at = float("-inf")
        self.prober = Prober(ctx.fetcher, ctx.store.streams, ctx.clock, self._took, ctx.metrics.probes)

    def _took(self, stream: Stream) -> None:
        """Take the stream as stored anew (its probed media, say): the master playlist follows."""
        self.stream = stream
        self._policy = self._stream_policy(stream)

    def _stream_policy(self, stream: Stream) -> StreamPolicy:
        # The bandwidths the master playlist announces: one estimate of the source's, not two.
        bitrates = {variant.name: variant.bandwidth for variant in announced_variants(stream)}
        ctx, defaults = self.ctx, self.ctx.segments
        mode = SegmentMode(stream.segment_mode) if stream.segment_mode else defaults.mode
        window = stream.dvr_window_seconds
        if stream.record:  # the whole recording stays listed, up to the longest recording kept
            window = max(window or 0, defaults.max_recording)
        return StreamPolicy(
            merge=with_dvr_window(ctx.policy, window),
            fixed_target_duration=ctx.fixed_target_duration,
            substitutes=substitutes_by_bitrate({r: bitrates.get(r, 0) for r in stream.rendition_names}),
            segments=SegmentPolicy(
                mode=mode, stream_id=stream.id, public_base=defaults.public_base, mirror_wait=defaults.mirror_wait,
                copy=ctx.copier is not None and (mode is SegmentMode.MIRROR or stream.record),
            ),
        )

    @property
    def expired(self) -> bool:
        """An ended recording past its retention: no longer served."""
        ended_at = self.stream.ended_at
        return (self.stream.record and ended_at is not None
                and self.ctx.clock() - ended_at / 1000 > self.ctx.segments.recording_retention)

    @property
    def watches(self) -> Mapping[tuple[str, str], Watch]:
        """Per (broadcaster, rendition), as lease holder: what it listed and when it was last asked,
        and whether it answered (cadence.Watch); `cadence.due` says when it is asked next."""
        return self._watches

    @property
    def segment_mode(self) -> SegmentMode:
        return self._policy.segments.mode

    def _renders(self, changed: dict[str, PublishedState], now: float) -> dict[str, Rendered]:
        """New renderings of these states (pure: may run in a thread). A recording's ended
        playlists are VOD: players may then seek anywhere in it."""
        vod = self.stream.record
        return {rendition: Rendered.of(state, now, vod=vod and state.ended) for rendition, state in changed.items()}

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
        await self.prober.stop()
        await self._resign()

    @property
    def lease_key(self) -> str:
        return lease_key(self.stream.id)

    async def _resign(self) -> None:
        seat, self._seat = self._seat, Seat()
        if self.leader or seat.asking:
            self.leader = False
            self._lease_until = float("-inf")
            try:
                await self.ctx.store.leases.release(self.lease_key, self.ctx.node_id)
                if seat.asking:
                    await self.ctx.store.leases.release(want_key(self.lease_key), self.ctx.node_id)
            except Exception:  # the lease expires by itself
                log.warning("feed %s: could not release its lease", self.stream.id)

    def poke(self) -> None:
        """Refresh now, asking every carrier (the stream was ended or a carrier appeared)."""
        self._poked_at = self.ctx.clock()
        self._wake.set()

    @property
    def publishes_alone(self) -> bool:
        """This node holds the stream's lease and it has not lapsed: no other node can publish, so
        its own states are the newest and players need no revision check."""
        return self.leader and self.ctx.clock() < self._lease_until

    @property
    def newest_here(self) -> bool:
        """Whether this node's playlist is surely the newest while the shared store cannot be read:
        it held the lease when the store went down (`published_last`) and nobody can have taken the
        lease since. Once that lease has lapsed, a store that answered this node again, however
        briefly and for whatever call, may have let another node take it and publish newer (a
        Redis that came back for a second between two outages: a player alternating between the
        nodes went from MEDIA-SEQUENCE 54 back to 53)."""
        lapses, answered = self._claim
        return self.published_last and (self.ctx.store.answered == answered or self.ctx.clock() < lapses)

    @property
    def last_progress(self) -> float:
        """When players here last got a new segment (on ctx.clock)."""
        return self._last_progress

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
                    self._errors_logged.discard(StoreUnavailable.__name__)  # the next outage is news again
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug or a store outage: log once per kind, keep serving
                    kind = type(exc).__name__
                    self.ctx.metrics.round_errors.labels(kind).inc()
                    if kind not in self._errors_logged:
                        self._errors_logged.add(kind)
                        log_failure(log, exc, "feed %s: refresh failed", self.stream.id)
                finally:
                    self.first_round.set()
                if self.finished:
                    break
                self._wake.clear()
                # When an ask is due, and at least every poll interval unless the last decision
                # stands until then (cadence.next_round_at). 5 ms at least: due times are never
                # rounds apart.
                now = self.ctx.clock()
                if self.leader or not self.ctx.store.shared:
                    wait_ends = min(waits_end(self.states, self._policy.merge, now),
                                    self._copies_end) if self.leader else NEVER
                    next_round = next_round_at(now, self._next_round, self._settled, self._deadlines(),
                                               self.ctx.poll_interval, wait_ends)
                else:  # following another node's publishing
                    target = next((s.target_duration for s in self.states.values()), 0)
                    next_round = lease_watch_due(now, self._last_progress, target, self.ctx.poll_interval)
                wait = max(0.005, next_round - now)
                await wait_for_event(self._wake, wait)
        finally:
            self.first_round.set()
            await self._resign()

    def _deadlines(self) -> list[float]:
        """What a settled lease holder must wake for besides its asks (see cadence.next_round_at):
        renewing its lease (cadence.renewal_due), the next discovery, and the moment its stream
        turns late (discovery then comes sooner)."""
        ctx = self.ctx
        target = next((s.target_duration for s in self.states.values()), 0)
        return [
            renewal_due(self._lease_until, ctx.lease_ttl, ctx.poll_interval, ctx.store.shared),
            self._last_discovery + ctx.discovery_interval,
            self._last_progress + 1.5 * target,
        ]

    async def _load(self) -> None:
        """Continue from the stored states: numbering goes on unbroken across restarts and nodes."""
        await self.sync()
        self.finished = self.finished or self._is_final()

    async def sync(self, known_revision: int | None = None) -> None:
        """Take the stored states if they are newer than ours (another node published them).

        Concurrent callers (players at a follower, the feed itself) share one load."""
        # A revision other than ours, even a lower one (a store that lost writes), is looked at: what
        # is adopted is decided per rendition below, and never goes back.
        if known_revision is not None and known_revision == self.revision:
            return
        async with self._sync_lock:
            if known_revision is not None and known_revision == self.revision:
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
                # Versions only grow, and every node continues from the stored ones: an older stored
                # state means the store lost writes that players were already served. Never go back.
                if current is None or state.version > current.version:
                    adopted[rendition] = state
                    self._ahead.discard(rendition)
                elif state.version < current.version:
                    self._ahead.add(rendition)
            self._ahead.update(r for r in self.states if r not in stored.states)
            await self._adopt(adopted, now)
            self.revision = stored.revision

    async def _adopt(self, states: dict[str, PublishedState], now: float, visible: Iterable[str] | None = None) -> None:
        """Take these states as ours, and re-render those whose served playlist changes (all of them
        unless `visible` says which). Long windows are rendered in a thread, and only then adopted,
        so that this node never serves an older version than the states it holds."""
        shown = set(states) if visible is None else set(visible)
        changed = {r: states[r] for r in shown if r in states}
        rendered = await _off_loop_if_large(changed.values(), lambda: self._renders(changed, now)) if changed else {}
        self.states.update(states)
        self.rendered.update(rendered)
        for entry in self.history.adopted(states, now):  # the lag is known where it was listed
            if entry.lag is not None:
                self.ctx.metrics.publish_lag.observe(entry.lag)
        if any(s.segments for s in changed.values()):
            self._last_progress = now

    # --- one round ---

    async def refresh(self) -> None:
        """One round: as the lease holder, poll, decide and publish; otherwise follow the store."""
        ctx = self.ctx
        now = ctx.clock()
        self._copies_end = NEVER  # until this round's copies say otherwise (a round that fails early: none)
        await self._recheck_stream(now)
        if self.finished:
            return
        self._next_round = float("inf")
        self._settled = False  # until this round's decision says it stands
        # Renewed less than a poll ago, the lease holds beyond the next renewal (lease_ttl > 2 polls):
        # rounds that come between, when asks are due, need not write it again.
        renewed = self.publishes_alone and self._lease_until - now > ctx.lease_ttl - ctx.poll_interval
        if not renewed and not await self._hold_lease(now):
            self._carriers = None
            await self.sync(await ctx.store.playlists.revision(self.stream.id))
            return
        carriers, handed = await self._carriers_now(now)
        target = next((s.target_duration for s in self.states.values()), 0)
        if discovery_due(now, self._last_discovery, self._last_progress, target, ctx.poll_interval, ctx.discovery_interval):
            self._last_discovery = now
            self._watches = wake_idle(self._watches, now, self._cadence())
            late = lateness(now, self._last_progress, target) >= 0
            found = await self._discover(carriers, now, late)
            carriers += found
            handed |= {b.name for b in found}
            if found:
                self._carriers = None  # read again next round, with what was found
        refs = self._refs(carriers, handed)
        await ctx.gate.turn()
        fetched, asked = await self._poll(carriers, refs, now)
        ended_at = self.stream.ended_at / 1000 if self.stream.ended_at is not None else None
        margin = self._policy.merge.restart_margin
        if not asked and quiet(self.states, fetched, ended_at, margin):
            self._settled = True
            return  # nothing new was asked and nothing waits on time: the decision is the last one
        self.offers = _offers(fetched)
        self.history.listed(fetched, now)
        copies = await self._copy(fetched, now)
        await ctx.gate.turn()
        lowest = min((s.next_number for s in self.states.values() if s.next_number is not None), default=None)
        restarts = max((s.counts.restarts for s in self.states.values()), default=0)
        if restarts != self._epoch:  # an ingest restart renumbers from 0: earlier listings are the old epoch's
            self._epoch, self._epoch_since = restarts, now
        seen = {n: at for n, at in self.history.first_listed(fetched, None if lowest is None else lowest - 1).items()
                if at >= self._epoch_since}
        outcome = decide(self.states, fetched, now, self._policy, ended_at=ended_at, copies=copies, seen=seen)
        await self._record_health({name: alive for name, alive in outcome.health.items() if name in asked}, now)
        self.answered = dict(outcome.health)
        if outcome.fell_back:
            ctx.metrics.fallbacks.inc(len(outcome.fell_back))
            log.warning("feed %s: %d segment(s) not stored within %g s, published direct",
                        self.stream.id, len(outcome.fell_back), ctx.segments.mirror_wait)
        for event, count in outcome.events.items():
            ctx.metrics.merge_events.labels(event).inc(count)
        if outcome.changed:
            # Stored before it is served: what a player saw is never lost by a crash. The save is
            # fenced by the revision: if another node published meanwhile, this round is dropped.
            changed = {**{r: self.states[r] for r in self._ahead if r in self.states}, **outcome.changed}
            blobs = await _off_loop_if_large(changed.values(), lambda: {r: dump_state(st) for r, st in changed.items()})
            revision = await ctx.store.playlists.save(self.stream.id, blobs, self.revision)
            if revision is None:
                log.info("feed %s: another node published first; following it", self.stream.id)
                await self.sync()
                return
            self.revision = revision
            self._ahead.clear()
            await self._adopt(changed, now, outcome.visible)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("feed %s: published %s; events %s", self.stream.id, ", ".join(
                    f"{r}<={st.segments[-1].number if st.segments else None}" for r, st in outcome.changed.items()),
                    dict(outcome.events))
            if outcome.visible:
                ctx.metrics.published.inc(len(outcome.visible))
        self.prober.consider(self.stream, self.states, self.offers)  # each rendition's media, once
        self._settled = quiet(self.states, fetched, ended_at, margin)
        self.finished = self.finished or outcome.final or (
            not self.states and ended_at is not None and now - ended_at >= self._policy.merge.longest_wait
        )

    async def _copy(self, fetched: Mapping[str, Sequence[FetchedPlaylist]], now: float) -> Copies:
        """Ask for copies of what may be published next, and give them part of a poll to land, so
        that a number is usually published in the round that first saw it."""
        copier, policy = self.ctx.copier, self._policy.segments
        if copier is None or not policy.copy:
            return Copies()
        want = wanted(self.states, fetched, policy)
        mirror = policy.mode is SegmentMode.MIRROR
        # In mirror mode a copy landing later runs a round at once (its number waits for it).
        copier.want(want, now, self._wake.set if mirror else None)
        if mirror:
            # Only for the copies still waited for, and not past the first wait to run out: that
            # number goes out direct at the next round, which runs then.
            waiting = waiting_copies(copier.copies(want), want, policy, now)
            if waiting:
                await copier.settle(waiting, min(self.ctx.poll_interval / 2, min(waiting.values()) - now))
        else:
            await copier.settle(want, self.ctx.poll_interval / 2)
        copies = copier.copies(want)
        self._copies_end = min(waiting_copies(copies, want, policy, now).values(), default=NEVER)
        return copies

    async def _hold_lease(self, now: float) -> bool:
        """Take or renew the stream's lease. A node that just took it over first reads the newest
        stored states, so it continues from exactly where the previous holder left off."""
        ctx = self.ctx
        was_leader, held = self.publishes_alone, self.leader
        try:
            if ctx.fleet is None:
                self.leader = await ctx.store.leases.acquire(self.lease_key, ctx.node_id, ctx.lease_ttl)
            else:  # the stream's owner among the live nodes polls it (edge.fleet)
                self.leader = await take_turn(ctx.store.leases, self.lease_key, ctx.node_id, ctx.fleet.live,
                                              self._seat, now, ctx.lease_ttl, GRACE_ROUNDS * ctx.poll_interval)
        except StoreUnavailable:
            # The store may come back without our lease (a restarted Redis): until it is renewed,
            # players here are answered only after checking what the store holds.
            if was_leader and not self.published_last:
                # Until when nobody else can hold the lease, and what the store had answered then.
                self._claim = (self._lease_until, ctx.store.answered)
            self.published_last = self.published_last or was_leader
            self._lease_until = float("-inf")
            raise
        self.published_last = False
        if self.leader != held:
            self.ctx.metrics.lease_changes.labels("acquired" if self.leader else "lost").inc()
            log.info("feed %s: %s its lease", self.stream.id, "took" if self.leader else "lost")
        if not self.leader:
            self._lease_until = float("-inf")
            return False
        if ctx.store.shared and not was_leader:  # just became leader: another node published before
            # Until the newest stored states are ours, this node serves players as a follower does:
            # a sync that fails (the store going down again right after the lease was taken) must
            # not leave it serving its own older playlist as the publisher's.
            self._lease_until = float("-inf")
            # What this node learnt of the carriers is from before another node held the lease: a
            # carrier it had left alone may have the ingest now. Every carrier is asked at once:
            # forgotten as the lease is taken (before the sync, which may fail), or when the sync
            # finds that another node published meanwhile. A renewal that merely failed once (a
            # store blip, nobody published since) keeps what it learnt: forgetting it made every
            # stream's next segments late.
            if not held:
                self._watches, self._streams = {}, {}
            ours = self.revision
            await self.sync(await ctx.store.playlists.revision(self.stream.id))
            if self.revision != ours:
                self._watches, self._streams = {}, {}
        self._lease_until = now + ctx.lease_ttl
        return True

    def _is_final(self) -> bool:
        """Ended, and every rendition's playlist closed with ENDLIST: nothing will change again."""
        names = self.stream.rendition_names
        return self.stream.ended and all(r in self.states and self.states[r].ended for r in names)

    @property
    def gone(self) -> bool:
        """The stream was deleted (or ended before anything was published): nothing to serve."""
        return self.finished and not self.rendered

    async def _recheck_stream(self, now: float) -> None:
        if now - self._last_recheck < STREAM_RECHECK_S and not self._wake.is_set():
            return
        self._last_recheck = now
        stream = await self.ctx.store.streams.get(self.stream.id)
        if stream is None:
            self.finished = True  # deleted; the service drops this feed
            self.rendered.clear()
        elif stream != self.stream:
            self._took(stream)

    def _refs(self, carriers: Sequence[Broadcaster], handed: frozenset[str]) -> dict[str, BroadcasterRef]:
        """How much each carrier's copies are trusted (see RANK_*), and a tiebreak it cannot choose."""
        suppliers = {s.broadcaster for state in self.states.values() for s in state.segments}
        refs = {}
        for b in carriers:
            if b.name in suppliers:
                rank = RANK_SUPPLIER
            elif b.name not in handed:
                rank = RANK_CLAIMER
            else:
                rank = RANK_CARRIER
            tiebreak = hashlib.blake2b(
                f"{self.stream.id}\n{b.name}".encode(), key=self.ctx.tiebreak_key[:64], digest_size=16
            ).hexdigest()
            refs[b.name] = BroadcasterRef(
                name=b.name, origin=b.address, rank=rank, tiebreak=tiebreak, provisional=rank == RANK_CLAIMER
            )
        return refs

    async def _poll(
        self, carriers: Sequence[Broadcaster], refs: dict[str, BroadcasterRef], now: float
    ) -> tuple[dict[str, list[FetchedPlaylist]], set[str]]:
        """Every rendition's playlist from every carrier: asked if due (cadence.py), otherwise its
        last answer. Also which broadcasters were asked."""
        renditions = self.stream.rendition_names
        cadence = self._cadence()
        keys = [(b.name, r) for r in renditions for b in carriers]
        for gone in self._watches.keys() - set(keys):  # no longer a carrier (or a rendition)
            del self._watches[gone]
            self._answers.pop(gone, None)
        watches = {}
        for key in keys:
            watch = self._watches.get(key, Watch())
            watches[key] = poke(watch, self._poked_at) if self._poked_at > watch.poked_at else watch
        # The carrier of each rendition's newest segment is never left alone (a paused stream).
        suppliers = {(state.segments[-1].broadcaster, r) for r, state in self.states.items() if state.segments}
        streams = Streams(self._streams, _rendition)
        ask = due_now(watches, now, cadence, suppliers, streams)
        by_name = {b.name: b for b in carriers}
        asked = [key for key in keys if key in ask]
        answers = await asyncio.gather(*(self._ask(by_name[name], rendition, now) for name, rendition in asked))
        listed: dict[str, set[int]] = {}  # per rendition: the numbers above its stream's newest
        for key, answer in zip(asked, answers):
            self._answers[key] = answer
            playlist = answer.fetched.playlist
            if playlist is None:
                watches[key] = failed(watches[key], now)
            elif playlist.segments:
                newest, watch, stream = playlist.segments[-1], watches[key], self._streams.get(key[1])
                numbers = _numbers_above(playlist.segments, min(_newest(watch), _newest(stream)))
                watches[key] = observe(watch, now, newest.number, newest.duration,
                                       sum(n > _newest(watch) for n in numbers))
                listed.setdefault(key[1], set()).update(n for n in numbers if n > _newest(stream))
            else:
                watches[key] = observe(watches[key], now, None, 0.0)
        self._watches = watches
        for rendition in {r for _, r in asked}:
            self._streams[rendition] = watched(self._streams.get(rendition, Watch()), now,
                                               (w for (_, r), w in watches.items() if r == rendition),
                                               len(listed.get(rendition, ())))
        self._next_round = next_due(watches, cadence, suppliers, streams)
        if asked and log.isEnabledFor(logging.DEBUG):  # for taking a stall apart: who was asked, what each listed
            log.debug("feed %s: asked %s; next ask in %.3f s", self.stream.id, ", ".join(
                f"{name}/{rendition}={_newest_text(watches[(name, rendition)])}" for name, rendition in asked),
                self._next_round - now)
        fetched: dict[str, list[FetchedPlaylist]] = {r: [] for r in renditions}
        for name, rendition in keys:
            answer = self._answers.get((name, rendition))
            if answer is not None:
                ref = refs.get(name) or answer.fetched.broadcaster
                item = answer.fetched
                fetched[rendition].append(item if item.broadcaster == ref else replace(item, broadcaster=ref))
        return fetched, {name for name, _ in asked}

    async def _carriers_now(self, now: float) -> tuple[list[Broadcaster], frozenset[str]]:
        """The serving carriers and those handed out or found, read again when poked or a poll
        interval after the last read: what changes them in between pokes the feed."""
        ctx = self.ctx
        if self._carriers is None or self._poked_at >= self._carriers_at or now - self._carriers_at >= ctx.poll_interval:
            self._carriers_at = now
            carriers = [b for b in await ctx.store.registry.carrying(self.stream.id) if is_serving(b, now, ctx.liveness)]
            self._carriers = (carriers, frozenset(await ctx.store.registry.carrier_hints(self.stream.id)))
        carriers, handed = self._carriers
        return list(carriers), handed

    def _cadence(self) -> Cadence:
        return Cadence(retry=self.ctx.poll_interval, window=self._policy.merge.window_seconds)

    async def _ask(self, b: Broadcaster, rendition: str, now: float) -> _Answer:
        """One carrier's playlist of one rendition: conditionally when it gave validators, and not
        parsed again when it is the same as last time."""
        previous = self._answers.get((b.name, rendition))
        url = self.ctx.layout.playlist_url(b.address, self.stream.id, rendition)
        result = await self.ctx.fetcher.fetch(
            b.name, url, validators=previous.validators if previous is not None else None,
        )
        ref = BroadcasterRef(name=b.name, origin=b.address, rank=RANK_CARRIER)
        if result.outcome == "unchanged" and previous is not None:
            return replace(previous, fetched=replace(previous.fetched, status=result.status))
        if not result.ok:
            return _Answer(FetchedPlaylist(broadcaster=ref, error=result.outcome, status=result.status), b"", None)
        digest = hashlib.blake2b(result.body, digest_size=16).digest()
        if previous is not None and previous.digest == digest and previous.fetched.playlist is not None:
            return replace(previous, validators=result.validators, fetched=replace(previous.fetched, status=result.status))
        playlist = self._parse(result, b, rendition)
        return _Answer(FetchedPlaylist(broadcaster=ref, playlist=playlist, status=result.status), digest, result.validators)

    async def _fetch(
        self, rendition: str, carriers: Sequence[Broadcaster], refs: dict[str, BroadcasterRef]
    ) -> list[FetchedPlaylist]:
        layout = self.ctx.layout
        results = await asyncio.gather(
            *(self.ctx.fetcher.fetch(b.name, layout.playlist_url(b.address, self.stream.id, rendition)) for b in carriers)
        )
        fetched = []
        for b, result in zip(carriers, results):
            ref = refs.get(b.name) or BroadcasterRef(name=b.name, origin=b.address, rank=RANK_CARRIER)
            playlist = self._parse(result, b, rendition) if result.ok else None
            fetched.append(FetchedPlaylist(
                broadcaster=ref, playlist=playlist, error=None if result.ok else result.outcome, status=result.status,
            ))
        return fetched

    def _parse(self, result: FetchResult, b: Broadcaster, rendition: str) -> UpstreamPlaylist:
        place = self.ctx.layout.segment_place(self.stream.id, rendition)
        playlist = parse_upstream(result.body, result.url, b.address, place, self.ctx.limits)
        for reason, count in playlist.rejected.items():
            self.ctx.metrics.rejected.labels(str(reason)).inc(count)
        return playlist

    async def _discover(self, carriers: Sequence[Broadcaster], now: float, late: bool) -> list[Broadcaster]:
        """Ask the serving broadcasters not known to carry the stream (all of them, or one in turn
        while the stream is on time: `discovery_asks`); adopt those that do. What is found is
        stored (as a hand-out), so a node taking the stream over knows it too."""
        known = {b.name for b in carriers}
        serving = sorted(
            (b for b in await self.ctx.store.registry.list_all()
             if b.name not in known and is_serving(b, now, self.ctx.liveness)),
            key=lambda b: b.name,
        )
        others = discovery_asks(serving, late, bool(carriers), self._discoveries)
        self._discoveries += 1
        if not others:
            return []
        fetched = await self._fetch(SOURCE, others, {})
        found = [b for b, f in zip(others, fetched) if f.playlist is not None and f.playlist.segments]
        for b in found:
            await self.ctx.store.registry.note_carrier(self.stream.id, b.name, now)
        return found

    async def _record_health(self, verdicts: Mapping[str, bool], now: float) -> None:
        """Passive health: the round's verdict per broadcaster, written only when it changes something."""
        for name, alive in verdicts.items():  # the store writes only what changes something
            updated = await self.ctx.store.registry.record_fetch(name, alive, now, self.ctx.liveness)
            # The carriers polled were serving at the round's start, so an ejected one is news.
            if not alive and updated is not None and is_ejected(updated, now):
                self.ctx.metrics.ejections.labels(name).inc()


@dataclass(frozen=True, slots=True)
class _Answer:
    """A carrier's last answer for one rendition: what the round sees, and what tells a repeat."""

    fetched: FetchedPlaylist
    digest: bytes  # of the body parsed
    validators: Validators | None


def lease_key(stream_id: str) -> str:
    """The lease whose holder polls the stream and publishes its playlists."""
    return f"feed:{stream_id}"


def _offers(fetched: Mapping[str, Sequence[FetchedPlaylist]]) -> dict[tuple[str, int], list[tuple[str, str]]]:
    out: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for rendition, items in fetched.items():
        for item in sorted(items, key=lambda i: (i.broadcaster.rank, i.broadcaster.tiebreak, i.broadcaster.name)):
            if item.playlist is not None:
                for segment in item.playlist.segments:
                    out.setdefault((rendition, segment.number), []).append((item.broadcaster.name, segment.uri))
    return out


def _newest_text(watch: Watch) -> str:
    return "failed" if not watch.answered else str(watch.newest)


def _newest(watch: Watch | None) -> float:
    return -math.inf if watch is None or watch.newest is None else watch.newest


def _numbers_above(segments: Sequence[UpstreamSegment], above: float) -> list[int]:
    """The numbers of a playlist's last segments above `above` (the newest are last)."""
    numbers = []
    for segment in reversed(segments):
        if segment.number <= above:
            break
        numbers.append(segment.number)
    return numbers


def _rendition(key: tuple[str, str]) -> str:
    """The rendition of a (carrier, rendition) watch: the stream whose pace carriers waiting for the
    ingest follow (cadence.due)."""
    return key[1]
