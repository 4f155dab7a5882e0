"""Gauges an operator alerts on, read when Prometheus scrapes: is the store reachable, how healthy is
the broadcaster registry, and how many watched streams have stalled.

The classifications are pure functions of their inputs (time included); `HealthGauges.refresh` is
the thin shell that reads the store and the feeds, once a scrape.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, Gauge

from broadcaster_registry.liveness import LivenessPolicy, health, is_ejected
from broadcaster_registry.model import Broadcaster, EjectionState
from broadcaster_registry.storage import RegistryUnavailable
from edge.playlists.service import PlaylistService
from edge.store.base import Store

STORE_READ_TIMEOUT_S = 2.0  # as /readyz: a scrape must not hang on a store that does not answer
BROADCASTER_STATES = ("healthy", "draining", "ejected", "down")
# A live playlist with no new segment for this many target durations has stalled: players give up
# on a live playlist that does not change for a few target durations (RFC 8216 §6.3.4 reload rules).
STALL_TARGET_DURATIONS = 3.0


def broadcaster_state(b: Broadcaster, now: float, policy: LivenessPolicy) -> str:
    """One of BROADCASTER_STATES: the registry's verdict (liveness.health) reduced to a label. An
    ejected broadcaster that is also gone (heartbeat expired, probed down) is "down", the worse."""
    verdict = health(b, now, policy)
    if verdict.healthy:
        return "healthy"
    if verdict.serving:
        return "draining"
    if is_ejected(b, now) and health(replace(b, ejection=EjectionState()), now, policy).serving:
        return "ejected"
    return "down"


def broadcaster_counts(fleet: Iterable[Broadcaster], now: float, policy: LivenessPolicy) -> dict[str, int]:
    counts = Tally(broadcaster_state(b, now, policy) for b in fleet)
    return {state: counts.get(state, 0) for state in BROADCASTER_STATES}


@dataclass(frozen=True, slots=True)
class FeedView:
    """What the stall rule needs of one watched stream."""

    ended: bool
    has_segments: bool
    target_duration: float
    last_progress: float


def stalled(feed: FeedView, now: float) -> bool:
    """A live stream players here watch, which had segments and got none for STALL_TARGET_DURATIONS."""
    if feed.ended or not feed.has_segments:
        return False
    return now - feed.last_progress > STALL_TARGET_DURATIONS * max(feed.target_duration, 1.0)


class HealthGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.store_up = Gauge(
            "edge_store_up", "1 when this node read the shared store at the last scrape, else 0.", registry=registry,
        )
        self.broadcasters = Gauge(
            "edge_broadcasters", "Registered broadcasters by health (healthy, draining, ejected, down).",
            ["state"], registry=registry,
        )
        self.streams_watched = Gauge(
            "edge_streams_watched", "Streams whose playlists this node serves now.", registry=registry,
        )
        self.streams_stalled = Gauge(
            "edge_streams_stalled",
            f"Watched live streams with no new segment for {STALL_TARGET_DURATIONS:g} target durations.",
            registry=registry,
        )
        for state in BROADCASTER_STATES:
            self.broadcasters.labels(state)

    async def refresh(self, store: Store, playlists: PlaylistService, now: float, policy: LivenessPolicy) -> None:
        feeds = [
            FeedView(
                ended=feed.stream.ended or feed.finished,
                has_segments=any(state.segments for state in feed.states.values()),
                target_duration=max((state.target_duration for state in feed.states.values()), default=0),
                last_progress=feed.last_progress,
            )
            for feed in list(playlists.feeds.values()) if not feed.idle
        ]
        self.streams_watched.set(len(feeds))
        self.streams_stalled.set(sum(stalled(feed, now) for feed in feeds))
        try:
            async with asyncio.timeout(STORE_READ_TIMEOUT_S):  # not wait_for: see edge.store.redis.RedisDatabase
                fleet = await store.registry.list_all()
        except (RegistryUnavailable, asyncio.TimeoutError):
            self.store_up.set(0)  # the broadcaster gauges keep their last values
            return
        self.store_up.set(1)
        for state, count in broadcaster_counts(fleet, now, policy).items():
            self.broadcasters.labels(state).set(count)
