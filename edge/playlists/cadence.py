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
re-anchored by the next re-ask; each further time in a row the segment is found waiting, twice as much earlier. Asks per segment stay near one, and a segment waits for at most one
re-ask step (1/8 of its duration) beyond the jitter of its arrival.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Collection, Hashable, Iterable, Mapping, TypeVar

NEVER = math.inf
K = TypeVar("K", bound=Hashable)
# New segments a carrier is watched at the `retry` pace before its own pace is trusted: enough to
# tell a carrier listing at the pace of its durations (live) from one listing faster (catching up).
LEARNING = 3


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

    def __post_init__(self) -> None:
        if not (self.retry > 0 and self.window > 0 and 0 < self.step <= 1 and self.min_step > 0):
            raise ValueError("cadence: retry, window, step and min_step must be > 0 (step <= 1)")


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


def observe(watch: Watch, now: float, newest: int | None, duration: float) -> Watch:
    """The watch after an ask at `now` that listed up to `newest` (None: nothing, or no playlist:
    pass `newest=None` and see `failed`)."""
    if newest is None:
        return replace(watch, asked_at=now, answered=True)
    if newest == watch.newest:
        return replace(watch, asked_at=now, answered=True)
    duration = max(duration, 0.0)
    interval = 0.0
    # While learning (asks at the `retry` pace) or when several arrive at once, the spacing of new
    # segments tells their pace; later, single sightings only keep a faster pace while it holds
    # (their spacing says little: the asks that find them move around).
    count = newest - watch.newest if watch.newest is not None else 0
    learning = 0 < watch.sightings <= LEARNING
    if 0 < count < 1000 and (count > 1 or learning or watch.interval):
        spacing = (now - watch.seen_at) / (newest - watch.newest)
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


def due(watch: Watch, cadence: Cadence, supplier: bool = False) -> float:
    """When to ask next (absolute, on the same clock as the observations); NEVER: not until poked.

    `supplier`: this carrier supplied the newest published segment. It is never left alone: when
    the whole stream pauses, the ingest most likely resumes where it was, with nobody telling the
    edge, so it is asked every `retry` for as long as the stream lives."""
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
    if watch.asked_at < expected:
        return expected
    # Asked at or after the due time and it was not there yet: re-ask soon, then less and less
    # often as the lateness grows (a stalled carrier), never more rarely than `retry`.
    late = watch.asked_at - expected
    return watch.asked_at + min(max(_step(watch, cadence), late / 2), max(cadence.retry, _step(watch, cadence)))


def _pace(watch: Watch) -> float:
    return watch.interval or watch.duration


def _step(watch: Watch, cadence: Cadence) -> float:
    return max(cadence.min_step, cadence.step * _pace(watch))


def due_now(watches: Mapping[K, Watch], now: float, cadence: Cadence, suppliers: Collection[K] = ()) -> set[K]:
    """The watches to ask in a round at `now`: those due by then. Never earlier: the due time
    converges on the moment a segment appears, and an ask even a few milliseconds early finds
    nothing and must be made again (measured: 2 ms early raised the asks per segment from 1.26 to
    1.49). `suppliers`: the keys whose carrier supplied the newest published segment (see `due`)."""
    return {key for key, watch in watches.items() if due(watch, cadence, key in suppliers) <= now}


def next_due(watches: Mapping[K, Watch], cadence: Cadence, suppliers: Collection[K] = ()) -> float:
    """When the first of these is due next (NEVER if none is)."""
    return min((due(watch, cadence, key in suppliers) for key, watch in watches.items()), default=NEVER)


def wake_idle(watches: Mapping[K, Watch], now: float, cadence: Cadence) -> dict[K, Watch]:
    """The watches with those left alone (NEVER due) poked: when the feed looks for carriers anyway
    (discovery), a carrier that lost the ingest is asked too, in case it came back unannounced."""
    return {key: poke(watch, now) if due(watch, cadence) == NEVER else watch for key, watch in watches.items()}


def next_round_at(now: float, next_ask: float, settled: bool, deadlines: Iterable[float], poll_interval: float) -> float:
    """When a feed's next round runs: when its next ask is due, and otherwise at least every poll
    interval while the outcome may change with time alone (a hole or a rendition waited for, a
    restart watched, a follower reading the store). A `settled` feed (its last decision would stand
    however much time passed, see round.quiet) wakes for nothing but its asks and its `deadlines`
    (renewing its lease, discovery, the point where its stream turns late); a deadline already
    past is met at the poll pace. At a thousand streams this halves the rounds: most polls came
    between two segments and found nothing due."""
    tick = now + poll_interval
    if not settled:
        return min(next_ask, tick)
    soonest = min(deadlines, default=NEVER)
    return min(next_ask, soonest if soonest > now else tick)


def renewal_due(lease_until: float, ttl: float, poll_interval: float, shared: bool) -> float:
    """When a settled feed must run a round to renew its stream's lease. On a store shared with
    other nodes or workers, once the lease is a poll old, as every round renews it: a lease left to
    its last moments lapses to another node at the first hiccup of this one's event loop, and the
    takeover costs its players a pause. Alone, nobody can take it: half a poll before it lapses is
    enough, and the asks of each segment renew it without a round of their own."""
    return lease_until - (ttl - poll_interval if shared else poll_interval / 2)
