"""One round of a watched stream as a pure decision: from the stored state of every rendition, what
was fetched this round, the time and the policy, to the new state of every rendition, what to
persist, what players will see change, the health verdicts of the broadcasters asked and the metric
deltas. `Feed` (feed.py) only schedules, fetches, stores and serves around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence, TypeVar

from broadcaster_registry.liveness import answered
from edge.playlists.merge import (
    FetchedPlaylist,
    MergeCounts,
    Policy,
    PublishedState,
    choose_target_duration,
    merge_stream,
)
from edge.segments.policy import Copies, SegmentPolicy, assign_uris, hold_back

# The target duration can never change once published, so it leaves room for encoders whose
# keyframes (and so segment ends) drift: any later segment up to this many seconds longer than the
# longest of the first ones still fits. Compared as RFC 8216 rounds EXTINF, 2.0 s segments get a
# target of 2 (players hold back 3 targets: 6 s, not 9 s), 2.3 s ones a target of 3.
TARGET_HEADROOM_S = 0.25
# Broadcasters a backstop discovery round asks (a stream on time): one, in turn.
DISCOVERY_SAMPLE = 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamPolicy:
    """How one stream is merged: the deployment's policy with the stream's own choices applied."""

    merge: Policy
    fixed_target_duration: int = 0  # 0: chosen from the first segments seen
    # Per rendition, the renditions whose copies stand in for a missing one, best first.
    substitutes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    segments: SegmentPolicy = SegmentPolicy()  # which URIs published numbers get (direct, redirect, mirror)


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    states: Mapping[str, PublishedState]  # every rendition's state after the round
    changed: Mapping[str, PublishedState]  # the states to persist (a subset of `states`)
    visible: frozenset[str]  # renditions whose served playlist changes
    health: Mapping[str, bool]  # broadcaster name -> it answered this round
    events: Mapping[str, int]  # merge events to count (holes passed, substitutes shown, ...)
    final: bool  # nothing will ever change again: ended and closed, or ended before any publish
    fell_back: frozenset[str] = frozenset()  # mirror mode: segments published direct, not stored in time


def decide(
    states: Mapping[str, PublishedState],
    fetched: Mapping[str, Sequence[FetchedPlaylist]],
    now: float,
    policy: StreamPolicy,
    *,
    ended_at: float | None = None,
    copies: Copies = Copies(),
    seen: Mapping[int, float] | None = None,
) -> Round:
    """The round's outcome. `fetched` has one entry per rendition of the stream (what each carrier
    answered for it); `ended_at` is when the stream was ended (seconds), None while it is live;
    `copies`: which segments the store holds (mirror mode publishes a number once stored);
    `seen`: when each number was first seen listed (merge_stream: waits count from then)."""
    health = _health(fetched)
    fetched = hold_back(states, fetched, now, policy.segments, copies)
    target = next((s.target_duration for s in states.values()), None)
    if target is None:
        target = _choose_target(fetched, policy.merge.max_target_duration)
        if target is not None and policy.fixed_target_duration:
            target = policy.fixed_target_duration
    closing = ended_at is not None and now - ended_at >= policy.merge.longest_wait
    if target is None:  # nothing published anywhere yet, and nothing offered to start with
        return Round(states=states, changed={}, visible=frozenset(), health=health, events={}, final=closing)
    merged = merge_stream(
        {r: states.get(r) for r in fetched}, fetched, now, policy.merge, target,
        substitutes=policy.substitutes, ended=closing, seen=seen,
    )
    assigned = assign_uris(states, merged, policy.segments, copies)
    after = assigned.states
    changed = {r: s for r, s in after.items() if s is not states.get(r)}
    visible = frozenset(r for r, s in changed.items() if r not in states or _visible(states[r]) != _visible(s))
    return Round(
        states={**states, **after},
        changed=changed,
        visible=visible,
        health=health,
        events=_events(states, after),
        final=all(s.ended for s in after.values()),
        fell_back=assigned.fell_back,
    )


def _visible(state: PublishedState) -> tuple[object, ...]:
    return (state.media_sequence, state.discontinuity_sequence, state.segments, state.ended)


def _health(fetched: Mapping[str, Sequence[FetchedPlaylist]]) -> dict[str, bool]:
    """One verdict per broadcaster per round: alive if any of its fetches was answered."""
    verdicts: dict[str, bool] = {}
    for items in fetched.values():
        for item in items:
            name = item.broadcaster.name
            verdicts[name] = verdicts.get(name, False) or answered(item.status)
    return verdicts


def _choose_target(fetched: Mapping[str, Sequence[FetchedPlaylist]], maximum: int) -> int | None:
    """Decided once per stream, from the first segments seen in any rendition; None before any."""
    durations = [
        segment.duration
        for items in fetched.values()
        for item in items
        if item.playlist is not None
        for segment in item.playlist.segments
    ]
    if not durations:
        return None
    return choose_target_duration(durations, minimum=1, maximum=maximum, headroom=TARGET_HEADROOM_S)


def _events(before: Mapping[str, PublishedState], after: Mapping[str, PublishedState]) -> dict[str, int]:
    """What the merge counted this round. Stream-wide events are the same in every rendition and
    counted once; substitutes are counted per rendition."""
    events: dict[str, int] = {}
    for rendition, state in after.items():
        earlier = before.get(rendition)
        delta = state.counts.since(earlier.counts if earlier is not None else MergeCounts())
        for f in fields(MergeCounts):
            value = getattr(delta, f.name)
            if value <= 0:
                continue
            if f.name == "substituted":
                events[f.name] = events.get(f.name, 0) + value
            else:
                events[f.name] = max(events.get(f.name, 0), value)
    return events


def substitutes_by_bitrate(bitrates: Mapping[str, int]) -> dict[str, tuple[str, ...]]:
    """For each rendition, the others by closeness of bitrate (as a ratio), nearer first and, at
    equal distance, the lower first: the stand-in a player on that variant can best afford."""
    order: dict[str, tuple[str, ...]] = {}
    for name, rate in bitrates.items():
        others = [o for o in bitrates if o != name]
        order[name] = tuple(
            sorted(others, key=lambda o: (abs(math.log(max(bitrates[o], 1) / max(rate, 1))), bitrates[o], o))
        )
    return order


def discovery_due(
    now: float,
    last_discovery: float,
    last_progress: float,
    target_duration: float,
    poll_interval: float,
    discovery_interval: float,
) -> bool:
    """Whether to ask the broadcasters not known to carry the stream if they have it.

    Every `discovery_interval`; and sooner once the stream is late, with no new segment for more
    than 1.5 target durations (a new one is due within that, RFC 8216 §6.2.1's freshness): then
    every poll for as long as players ride it out on what they hold back (3 target durations), so
    an ingest that moved to a broadcaster nobody reported is found within a poll of its first
    segment there, even when the segments around the move were lost or late (the chaos soak stalled
    players for 3.6 s so with seed 7, when the pace had already slowed); then slower and slower as
    the stall grows, so that a paused stream costs fewer and fewer asks."""
    late = lateness(now, last_progress, target_duration)
    if late < 0:
        return now - last_discovery >= discovery_interval
    if late < 3 * target_duration:
        return now - last_discovery >= poll_interval
    gap = min(discovery_interval, max(poll_interval, (late - 3 * target_duration) / 2))
    return now - last_discovery >= gap


def lateness(now: float, last_progress: float, target_duration: float) -> float:
    """Seconds the stream is past the 1.5 target durations within which a new segment is due
    (negative: on time)."""
    return now - last_progress - 1.5 * target_duration


# While a stream it follows is late, a node that does not hold its lease looks at the lease this
# often (seconds), instead of every poll.
LEASE_WATCH_S = 0.05


def lease_watch_due(now: float, last_progress: float, target_duration: float, poll_interval: float) -> float:
    """When a node following a stream (another holds its lease, on a shared store) runs its next
    round: every poll, and every LEASE_WATCH_S while the stream is late, for as long as players ride
    it out on what they hold back (3 target durations): the holder may have died, and its lease is
    then taken the moment it lapses rather than up to a poll later (a node SIGKILLed as a segment
    was listed stalled the chaos soak's players for a little over 3 target durations)."""
    late = lateness(now, last_progress, target_duration)
    if 0 <= late < 3 * target_duration:
        return now + min(LEASE_WATCH_S, poll_interval)
    return now + poll_interval


def discovery_asks(others: Sequence[T], late: bool, carriers_known: bool, turn: int,
                   sample: int = DISCOVERY_SAMPLE) -> list[T]:
    """Which of the broadcasters not known to carry the stream a discovery round asks.

    Every one of them when the ingest may be anywhere: the stream is late, no carrier is known, or
    this is the feed's first discovery (`turn` 0). Otherwise discovery is only a backstop (the
    stream progresses on carriers it knows, and hand-outs, the hook and heartbeats name new ones):
    `sample` of them in turn, so that its cost per stream stays the same however large the fleet,
    and each one is still asked within ceil(len(others) / sample) rounds."""
    if late or not carriers_known or turn == 0 or len(others) <= sample:
        return list(others)
    start = (turn * sample) % len(others)
    return [others[(start + i) % len(others)] for i in range(sample)]


def with_dvr_window(policy: Policy, asked: float | None) -> Policy:
    """The deployment's policy, with a stream's own DVR window when it asked for a longer one."""
    if asked is None or asked <= policy.window_seconds:
        return policy
    return replace(policy, window_seconds=float(asked))


def waits_end(states: Mapping[str, PublishedState], policy: Policy, now: float) -> float:
    """The soonest time after `now` at which a wait under way in the merge may run out (a hole or a
    rendition waited for, a restart watched), so that the decision can change with time alone:
    the feed runs a round then rather than up to a poll later. math.inf when nothing waits."""
    ends = []
    for state in states.values():
        if state.waiting_since is not None:
            ends += [state.waiting_since + policy.hole_wait_seconds, state.waiting_since + policy.rendition_wait]
        if state.restart_watch is not None:
            ends.append(state.restart_watch.since + policy.hole_wait_seconds)
    return min((end for end in ends if end > now), default=math.inf)


def quiet(
    states: Mapping[str, PublishedState], fetched: Mapping[str, Sequence[FetchedPlaylist]], ended_at: float | None,
    restart_margin: int,
) -> bool:
    """Whether `decide` would change nothing however much time passed: in every rendition each
    carrier lists up to the newest published number and only published numbers, none of them so
    far below it that the merge would watch them as an ingest restart (`restart_margin`, see
    merge.RestartWatch), nothing is waited for (a hole, a restart being confirmed) and the stream is
    not ended. A round that asked nothing new can then skip the decision."""
    if ended_at is not None or not fetched:
        return False
    for rendition, items in fetched.items():
        state = states.get(rendition)
        if state is None or state.waiting_since is not None or state.restart_watch is not None:
            return False
        if state.stale_numbers is not None or state.ended:
            return False
        published = {segment.number for segment in state.segments if segment.substitute is None}  # own copies
        offered = [item.playlist.segments for item in items if item.playlist is not None and item.playlist.segments]
        if not offered:  # a rendition with nothing on offer is on its way to stand-ins: not quiet
            return False
        # Every carrier lists up to the newest published number (older lists may read as a restart).
        if any(segments[-1].number != (state.next_number or 0) - 1 for segments in offered):
            return False
        if any(s.number not in published for segments in offered for s in segments):
            return False
        if any(segments[0].number < (state.next_number or 0) - restart_margin for segments in offered):
            return False
    return True
