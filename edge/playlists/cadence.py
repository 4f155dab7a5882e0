"""When to ask a carrier for one rendition's playlist again, as a pure function of what it listed and
when: a stream's segments arrive at its segment cadence, so a carrier is asked when its next segment
is due, re-asked at short intervals while that segment is late, and no longer asked once everything
it listed has left the window (it lost the ingest) until something says it carries again (a poke:
a hook call, a hand-out, discovery). `Feed` (feed.py) keeps one `Watch` per (carrier, rendition)
and fetches only the due ones; the others keep their last parse, which nothing could have changed.

How the due time is found: a segment becomes listed when it is complete, so the next one appears
about one segment duration after the newest one did. When the newest was first seen is known only
up to the gap between two fetches (`unseen_at`, `seen_at`]: a short gap (a re-ask that found it) is
taken by its middle; a long one (found by the first ask at the due time) by `seen_at` less half a
re-ask step, so that the estimate creeps earlier while asks keep finding the segment waiting and is
re-anchored by the next re-ask; each further time in a row the segment is found waiting, twice as
much earlier. Asks per segment stay near one, and a segment waits for at most one re-ask step (1/8
of its duration) beyond the jitter of its arrival. A segment that is late is re-asked a step after
it was due, then at intervals of half its lateness, at least every `retry`; and since lost
segments keep the ingest's phase, also when the one after them would be due (up to LOST_IN_A_ROW
lost in a row) and a step later (`_awaited`). A carrier's pace is its segments' durations unless
it lists several new segments at once (catching up): then the spacing they came at (`observe`).

The stream itself is watched the same way (`Feed` keeps one `Watch` per rendition of the newest
number any carrier listed, observed at every round that asked one): an ingest that moves without
telling anyone moves at the stream's pace, so its new carrier lists the next segment about when the
old one would have. A carrier behind the stream (its newest is older than the stream's: it is
waiting for the ingest to come back) is asked once the stream's next segment is late (a step after
it was due, then as a late segment is re-asked), and otherwise only every `idle` (or
every other segment, if longer): a stream that keeps its carrier costs the others almost nothing,
and one that moves is found within a few steps of the move. A carrier listing the stream's newest,
and the supplier, are asked by their own estimate or the stream's, whichever comes first (the one
that took the ingest over was first asked after its first segment appeared: its own is late).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Collection, Generic, Hashable, Iterable, Iterator, Mapping, TypeVar

NEVER = math.inf
K = TypeVar("K", bound=Hashable)
# New segments a carrier is watched at the `retry` pace before its own pace is trusted: enough to
# tell a carrier listing at the pace of its durations (live) from one listing faster (catching up).
LEARNING = 3
# Lost segments in a row (failed uploads, an ingest failing over) after which the next one is still
# awaited on the ingest's phase; a longer gap is a stall, re-asked at intervals that grow.
LOST_IN_A_ROW = 3
_EPSILON = 1e-6  # seconds: a due time reached by float arithmetic counts as reached


@dataclass(frozen=True, slots=True, kw_only=True)
class Cadence:
    """The knobs, one per deployment (from settings)."""

    retry: float = 1.0  # seconds between asks while a carrier's cadence is unknown or it fails
    window: float = 24.0  # a carrier whose newest segment was first seen this long ago is left alone
    step: float = 0.125  # re-ask step while a due segment is late, as a fraction of its duration
    min_step: float = 0.05  # seconds: the shortest re-ask step, whatever the segment duration
    # How much earlier than the ask that found it waiting a segment is taken to have appeared, as a
    # fraction of the step: smaller means fewer re-asks, larger a faster catch-up on a drift.
    creep: float = 0.125
    # Seconds between asks of a carrier waiting for the ingest to come back while the stream is on
    # time (every other segment, when that is longer).
    idle: float = 5.0

    def __post_init__(self) -> None:
        if not (self.retry > 0 and self.window > 0 and 0 < self.step <= 1 and self.min_step > 0 and self.idle > 0):
            raise ValueError("cadence: retry, window, step, min_step and idle must be > 0 (step <= 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """What is known of one carrier's playlist of one rendition."""

    asked_at: float = -math.inf  # the last ask (whatever its answer)
    answered: bool = False  # the last ask gave a playlist
    newest: int | None = None  # the newest number it listed
    duration: float = 0.0  # that segment's duration (seconds)
    seen_at: float = -math.inf  # the first ask that listed `newest`
    unseen_at: float = -math.inf  # the last ask before that, which did not
    poked_at: float = -math.inf  # something said it carries the stream (hook, hand-out, discovery)
    found_waiting: int = 0  # how many segments in a row were already listed at the first ask
    # Seconds between new segments when they come clearly faster than their durations (a carrier
    # catching up, a test's compressed time); 0: at the pace of their durations, as live ingest does.
    interval: float = 0.0
    sightings: int = 0  # new newest numbers seen so far (up to LEARNING + 1)


def observe(watch: Watch, now: float, newest: int | None, duration: float, fresh: int | None = None) -> Watch:
    """The watch after an ask at `now` that listed up to `newest` (None: nothing, or no playlist:
    pass `newest=None` and see `failed`). `fresh`: how many segments it listed above the previous
    newest (None: every number in between)."""
    if newest is None:
        return replace(watch, asked_at=now, answered=True)
    if newest == watch.newest:
        return replace(watch, asked_at=now, answered=True)
    duration = max(duration, 0.0)
    interval = 0.0
    # While learning (asks at the `retry` pace) or when several new segments are listed at once, the
    # spacing of new segments tells their pace; later, single sightings only keep a faster pace
    # while it holds (their spacing says little: the asks that find them move around). Numbers
    # skipped are not segments listed: that is what a lost segment looks like (the next one a pace
    # later, its number two up), and taking it for a carrier listing at twice the pace cost 30
    # needless asks; a carrier that does list twice as fast lists both.
    count = newest - watch.newest if watch.newest is not None else 0
    listed = count if fresh is None else fresh
    learning = 0 < watch.sightings <= LEARNING
    if 0 < count < 1000 and (listed > 1 or learning or watch.interval):
        # The two segments appeared within their asks' bounds, (unseen_at, seen_at] each. A pace
        # that fits those bounds stands: the live one (their durations) first, else the one already
        # known. Taking the asks' own spacing instead, a sighting found late (by an ask that came
        # after a re-ask had just missed it) slowed the pace to the asks', which then fell further
        # behind at each segment (found by the property test: a carrier listing every 1.44 s
        # followed at 1.82 s, segments up to 1.7 s late).
        earliest = (watch.asked_at - watch.seen_at) / count
        latest = (now - watch.unseen_at) / count
        if watch.interval and earliest < watch.interval < latest and not earliest < duration < latest:
            interval = watch.interval
        else:
            spacing = (now - watch.seen_at) / count
            interval = spacing if spacing < 0.75 * duration else 0.0
    pace = interval or duration
    # Found by a re-ask (the last ask was less than half a segment ago): the phase is known closely.
    waiting = watch.found_waiting + 1 if now - watch.asked_at > pace / 2 else 0
    return replace(
        watch, asked_at=now, answered=True, newest=newest, duration=duration, interval=interval,
        seen_at=now, unseen_at=watch.asked_at, found_waiting=min(waiting, 16),
        sightings=min(watch.sightings + 1, LEARNING + 1),
    )


def failed(watch: Watch, now: float) -> Watch:
    """The watch after an ask at `now` that got no playlist (an error, a timeout, a refusal)."""
    return replace(watch, asked_at=now, answered=False)


def poke(watch: Watch, now: float) -> Watch:
    """Something said this carrier has the stream: ask it at once."""
    return replace(watch, poked_at=now)


def expected_at(watch: Watch, cadence: Cadence) -> float | None:
    """When the segment after the newest is expected to be listed; None while the cadence is unknown."""
    if watch.newest is None or watch.duration <= 0:
        return None
    step = _step(watch, cadence)
    if watch.seen_at - watch.unseen_at <= 2 * step:
        appeared = (watch.seen_at + watch.unseen_at) / 2
    else:
        # Found waiting again and again: the estimate is late by an unknown amount, so it moves
        # earlier faster each time (doubling), until a re-ask pins the phase down again.
        appeared = max(watch.unseen_at, watch.seen_at - cadence.creep * step * 2 ** max(0, watch.found_waiting - 2))
    return appeared + _pace(watch)


def due(watch: Watch, cadence: Cadence, supplier: bool = False, stream: Watch | None = None) -> float:
    """When to ask next (absolute, on the same clock as the observations); NEVER: not until poked.

    `supplier`: this carrier supplied the newest published segment. It is never left alone: when
    the whole stream pauses, the ingest most likely resumes where it was, with nobody telling the
    edge, so it is asked every `retry` for as long as the stream lives. `stream`: the stream's own
    watch (see the module's docstring); None: the carrier by itself."""
    if watch.poked_at > watch.asked_at or watch.asked_at == -math.inf:
        return watch.poked_at if watch.asked_at == -math.inf else max(watch.poked_at, watch.asked_at)
    if not watch.answered:
        return watch.asked_at + cadence.retry
    if watch.newest is not None and watch.asked_at - watch.seen_at >= cadence.window:
        # All it listed has left the window: it lost the ingest (or, its supplier, the stream paused).
        return watch.asked_at + cadence.retry if supplier else NEVER
    expected = expected_at(watch, cadence)
    if expected is None or watch.sightings <= LEARNING:
        return watch.asked_at + cadence.retry
    step = _step(watch, cadence)
    own = _awaited(watch.asked_at, expected, _pace(watch), step, cadence.retry)
    stream_expected = expected_at(stream, cadence) if stream is not None and stream.sightings > LEARNING else None
    if stream_expected is None:
        return own
    assert stream is not None and stream.newest is not None and watch.newest is not None

    def following(offset: float) -> float:
        """The stream's schedule: when its next segment is due (plus `offset`), then as `_awaited`
        re-asks while it is late."""
        return _awaited(watch.asked_at, stream_expected + offset, _pace(stream), step, cadence.retry)

    if supplier or watch.newest >= stream.newest:
        # It lists the stream's newest segment and may well list the next: asked by its own estimate
        # or the stream's, whichever comes first (it took the ingest over and was found late).
        return min(own, following(0.0))
    # Behind the stream, waiting for the ingest to come back: asked once the stream's next segment
    # is late, and otherwise every `idle` (or every other segment, if longer).
    return min(following(step), watch.asked_at + max(cadence.idle, 2 * _pace(watch)))


def _awaited(asked_at: float, due_at: float, pace: float, step: float, retry: float) -> float:
    """When to ask for a segment due at `due_at`, last asked at `asked_at`: at the due time, and
    while it is late, again a step later, then at intervals that grow with the lateness (half of
    it: a stalled carrier costs fewer and fewer asks), never more rarely than `retry`.

    Lost segments (failed uploads) do not move the ingest's phase: the one after them comes a
    whole number of paces after this one was due, on the same carrier or, if the ingest moved
    meanwhile, on another. So for up to `LOST_IN_A_ROW` lost in a row, each such moment and a step
    after it are asked too (measured: the chaos soak stalled a player when the segment after a lost
    one, on the carrier the ingest had moved to, was found a second late by intervals grown to the
    retry; two lost in a row left the next ones 0.7 s late with 1 s segments). A stall costs
    2 * LOST_IN_A_ROW asks more."""
    late = asked_at - due_at
    if late < 0:
        return due_at
    backing_off = asked_at + min(max(step, late / 2), max(retry, step))
    if pace > 0:
        lost = max(1, math.floor((late + _EPSILON) / pace))  # the slot the next ask may fall in
        for slot in (lost, lost + 1):
            if slot > LOST_IN_A_ROW:
                break
            for at in (due_at + slot * pace, due_at + slot * pace + step):
                if asked_at < at - _EPSILON:
                    return min(backing_off, at)
    return backing_off


def _pace(watch: Watch) -> float:
    return watch.interval or watch.duration


def _step(watch: Watch, cadence: Cadence) -> float:
    return max(cadence.min_step, cadence.step * _pace(watch))


def due_now(watches: Mapping[K, Watch], now: float, cadence: Cadence, suppliers: Collection[K] = (),
            streams: Streams[K] | None = None) -> set[K]:
    """The watches to ask in a round at `now`: those due by then. Never earlier: the due time
    converges on the moment a segment appears, and an ask even a few milliseconds early finds
    nothing and must be made again (measured: 2 ms early raised the asks per segment from 1.26 to
    1.49). `suppliers`: the keys whose carrier supplied the newest published segment (see `due`);
    `streams`: the streams' own watches, for carriers to follow (None: each carrier by itself)."""
    return {key for key, when in _dues(watches, cadence, suppliers, streams) if when <= now}


def next_due(watches: Mapping[K, Watch], cadence: Cadence, suppliers: Collection[K] = (),
             streams: Streams[K] | None = None) -> float:
    """When the first of these is due next (NEVER if none is)."""
    return min((when for _, when in _dues(watches, cadence, suppliers, streams)), default=NEVER)


@dataclass(frozen=True, slots=True)
class Streams(Generic[K]):
    """Each stream's (rendition's) own watch: the newest number any of its carriers listed, observed
    at every round that asked one of them (`watched`); `of`: which stream a carrier's key is of."""

    watches: Mapping[Hashable, Watch]
    of: Callable[[K], Hashable]


def watched(stream: Watch, now: float, carriers: Iterable[Watch], fresh: int | None = None) -> Watch:
    """A stream's watch after a round at `now` that asked some of its `carriers` (their watches
    after the round): its newest is the newest any of them listed. `fresh`: how many numbers above
    the stream's previous newest this round's answers listed between them (see `observe`)."""
    newest, duration = None, 0.0
    for watch in carriers:
        if watch.newest is not None and (newest is None or watch.newest > newest):
            newest, duration = watch.newest, watch.duration
    return observe(stream, now, newest, duration, fresh)


def _dues(watches: Mapping[K, Watch], cadence: Cadence, suppliers: Collection[K],
          streams: Streams[K] | None) -> Iterator[tuple[K, float]]:
    for key, watch in watches.items():
        stream = None if streams is None else streams.watches.get(streams.of(key))
        yield key, due(watch, cadence, key in suppliers, stream)


def wake_idle(watches: Mapping[K, Watch], now: float, cadence: Cadence) -> dict[K, Watch]:
    """The watches with those left alone (NEVER due) poked: when the feed looks for carriers anyway
    (discovery), a carrier that lost the ingest is asked too, in case it came back unannounced."""
    return {key: poke(watch, now) if due(watch, cadence) == NEVER else watch for key, watch in watches.items()}


def next_round_at(now: float, next_ask: float, settled: bool, deadlines: Iterable[float], poll_interval: float,
                  wait_ends: float = NEVER) -> float:
    """When a feed's next round runs: when its next ask is due, and otherwise at least every poll
    interval while the outcome may change with time alone (a hole or a rendition waited for, a
    restart watched, a follower reading the store), and when such a wait runs out (`wait_ends`,
    round.waits_end: a hole passed a poll late delays every player). A `settled` feed (its last decision would stand
    however much time passed, see round.quiet) wakes for nothing but its asks and its `deadlines`
    (renewing its lease, discovery, the point where its stream turns late); a deadline already
    past is met at the poll pace. At a thousand streams this halves the rounds: most polls came
    between two segments and found nothing due."""
    tick = now + poll_interval
    if not settled:
        return min(next_ask, tick, wait_ends)
    soonest = min(deadlines, default=NEVER)
    return min(next_ask, soonest if soonest > now else tick)


def renewal_due(lease_until: float, ttl: float, poll_interval: float, shared: bool) -> float:
    """When a settled feed must run a round to renew its stream's lease. On a store shared with
    other nodes or workers, once the lease is a poll old, as every round renews it: a lease left to
    its last moments lapses to another node at the first hiccup of this one's event loop, and the
    takeover costs its players a pause. Alone, nobody can take it: half a poll before it lapses is
    enough, and the asks of each segment renew it without a round of their own."""
    return lease_until - (ttl - poll_interval if shared else poll_interval / 2)
