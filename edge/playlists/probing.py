"""Learning what each rendition carries, once: the feed's leader fetches a few of the first
published segments of a rendition from the broadcasters that offered them (the upstream fetcher's
rules: registered broadcasters only, at the layout's segment path, a size cap and a timeout), the
pure probe (edge/media/ts.py) names the codecs and picture size, the sizes give the bit rates, and
the result is stored with the stream, where every node's master playlist finds it.

Deciding what to probe and what the samples say are pure functions (`candidates`, `measure`); the
`Prober` only fetches, stores and retries.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from prometheus_client import Counter

from edge.media.ts import Probed, probe
from edge.playlists.merge import PublishedState
from edge.store.base import StreamStore
from edge.streams.model import RenditionMedia, Stream
from edge.tasks import cancel, log_failure
from edge.upstream import UpstreamFetcher

log = logging.getLogger("edge.probing")

PROBE_SEGMENTS = 3  # measured per rendition: the bit rates of one segment are a poor peak
PROBE_MAX_BYTES = 8 << 20  # a whole segment up to 8 MiB (32 Mbit/s at 2 s); larger ones are not probed
PROBE_TIMEOUT_S = 10.0
RETRY_AFTER_S = 30.0  # after a probe that learnt nothing (nothing fetched, or media unknown)
MAX_ATTEMPTS = 3  # per rendition and feed: a rendition that cannot be named keeps the declaration

# (rendition, ingest number) -> copies on offer this round, best first: (broadcaster, URL)
Offers = Mapping[tuple[str, int], Sequence[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A published segment of a rendition to probe, and where it may be fetched."""

    number: int
    duration: float
    copies: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """What one fetched segment gave: its duration as published, its size if it was read whole,
    and what the probe found in it (None: nothing nameable)."""

    duration: float
    size: int | None
    probed: Probed | None


def candidates(rendition: str, state: PublishedState, offers: Offers, count: int = PROBE_SEGMENTS) -> list[Candidate]:
    """The rendition's own published segments that were on offer this round, oldest first, at
    most `count`; stand-ins from another rendition are not this rendition's media."""
    chosen = []
    for segment in state.segments:
        copies = offers.get((rendition, segment.number))
        if segment.substitute is None and copies:
            chosen.append(Candidate(segment.number, segment.duration, tuple(copies)))
    return chosen[-count:]


def measure(rendition: str, samples: Sequence[Sample]) -> RenditionMedia | None:
    """The rendition's media from its samples: codecs and size from the first one probed, all of
    them agreeing (a rendition whose segments disagree is not named), and the bit rates from those
    read whole (peak and average). None when nothing could be named."""
    named = [s.probed for s in samples if s.probed is not None]
    if not named or any(p != named[0] for p in named[1:]):
        return None
    first = named[0]
    whole = [s for s in samples if s.size is not None and s.duration > 0]
    peak = max((round(s.size * 8 / s.duration) for s in whole if s.size), default=0)
    total = sum(s.duration for s in whole)
    average = round(sum(s.size or 0 for s in whole) * 8 / total) if total else 0
    return RenditionMedia(
        rendition=rendition, codecs=first.codecs, width=first.width, height=first.height,
        bandwidth=peak or None, average_bandwidth=average or None,
    )


class Prober:
    """Probes a stream's renditions in the background, each once (a few attempts if they fail)."""

    def __init__(self, fetcher: UpstreamFetcher, streams: StreamStore, clock: Callable[[], float],
                 on_stored: Callable[[Stream], None], outcomes: Counter) -> None:
        self.fetcher = fetcher
        self.outcomes = outcomes  # named, unknown (fetched, not nameable), unfetched, error
        self.streams = streams
        self.clock = clock
        self.on_stored = on_stored
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._attempts: dict[str, tuple[int, float]] = {}  # rendition -> (attempts, last at)

    def consider(self, stream: Stream, states: Mapping[str, PublishedState], offers: Offers) -> None:
        """Start probing the renditions not known yet that have published segments on offer."""
        now = self.clock()
        for rendition, state in states.items():
            if stream.media_of(rendition) is not None or rendition in self._tasks:
                continue
            attempts, last = self._attempts.get(rendition, (0, float("-inf")))
            if attempts >= MAX_ATTEMPTS or now - last < RETRY_AFTER_S:
                continue
            chosen = candidates(rendition, state, offers)
            if len(chosen) < PROBE_SEGMENTS:
                continue  # a few seconds more: one segment's bit rate is a poor peak
            self._attempts[rendition] = (attempts + 1, now)
            task = asyncio.create_task(self._probe(stream.id, rendition, chosen), name=f"probe-{stream.id}-{rendition}")
            self._tasks[rendition] = task
            task.add_done_callback(lambda _t, r=rendition: self._tasks.pop(r, None))

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            await cancel(task)
        self._tasks.clear()

    async def _probe(self, stream_id: str, rendition: str, chosen: Sequence[Candidate]) -> None:
        try:
            samples = [s for s in await asyncio.gather(*(self._sample(c) for c in chosen)) if s is not None]
            media = measure(rendition, samples)
            if media is None:
                self.outcomes.labels("unknown" if samples else "unfetched").inc()
                log.info("feed %s: could not name the media of %s (attempt %d of %d)",
                         stream_id, rendition, self._attempts[rendition][0], MAX_ATTEMPTS)
                return
            stored = await self.streams.update(stream_id, lambda s: s.with_media(media))
            self.outcomes.labels("named").inc()
            if stored is not None:
                log.info("feed %s: %s carries %s %s", stream_id, rendition, ",".join(media.codecs),
                         f"{media.width}x{media.height}" if media.width else "(no video)")
                self.on_stored(stored)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a store outage, a bug: the rendition keeps its declaration, retried later
            self.outcomes.labels("error").inc()
            log_failure(log, exc, "feed %s: probing %s failed", stream_id, rendition)

    async def _sample(self, candidate: Candidate) -> Sample | None:
        """The first copy that answers, read whole up to the cap and probed in a thread."""
        for broadcaster, url in candidate.copies:
            result = await self.fetcher.fetch(broadcaster, url, timeout_s=PROBE_TIMEOUT_S, max_bytes=PROBE_MAX_BYTES)
            if result.ok:
                found = await asyncio.to_thread(probe, result.body)
                return Sample(candidate.duration, len(result.body), found)
        return None
