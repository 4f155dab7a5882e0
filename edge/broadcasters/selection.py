"""Choosing broadcasters for an ingest: ranking over the registry, with this node's reservations and
a last known list to answer from when the registry backend cannot be read.

With a large fleet most broadcasters are too far from a located client to matter; NearbyIndex picks
the ones that can, so a request scores a few dozen instead of all of them (same answer, see there).
"""

from __future__ import annotations

import logging
import operator
import random
from collections.abc import Callable

from broadcaster_registry.model import Broadcaster
from broadcaster_registry.ranking import RankingPolicy, rank
from broadcaster_registry.reservations import NO_RESERVATIONS, Reservations, reserve, settle
from broadcaster_registry.nearby import NearbyIndex
from broadcaster_registry.storage import RegistryStore, RegistryUnavailable
from geo.location import Location

log = logging.getLogger("edge.selection")


class Selector:
    def __init__(
        self,
        registry: RegistryStore,
        policy: RankingPolicy,
        rng: random.Random,
        admits: Callable[[Broadcaster], bool] = lambda b: True,
    ) -> None:
        self.registry = registry
        self.admits = admits  # whether a broadcaster's address may be handed out at all
        self.policy = policy
        self.rng = rng
        self.reservations: Reservations = NO_RESERVATIONS
        self.last_known: list[Broadcaster] = []
        self._degraded = False
        self._none_eligible = False
        self._handouts_failing = False
        # Derived from the last list read, rebuilt only when it changes.
        self._seen: list[Broadcaster] = []
        self._by_name: dict[str, Broadcaster] = {}
        self._index = NearbyIndex([])

    async def candidates(self) -> list[Broadcaster]:
        """Every broadcaster in the registry, or the last list read when the backend fails."""
        try:
            self.last_known = await self.registry.list_all()
        except RegistryUnavailable as exc:  # degrade, never fail the ingest
            if not self._degraded:
                log.warning("registry unreadable, answering from the last known list: %s", exc)
            self._degraded = True
        else:
            if self._degraded:
                log.info("registry readable again")
            self._degraded = False
        return self.last_known

    async def choose(self, client: Location | None, now: float, limit: int | None = None) -> list[Broadcaster]:
        """Eligible broadcasters, best first (the first `limit` of them); the first one is reserved
        until its next heartbeat."""
        # Never hand out an address the edge may not reach itself (edge.upstream.AddressGuard).
        candidates = [b for b in await self.candidates() if self.admits(b)]
        self._refresh(candidates)
        # Only reserved names can keep a reservation, so only they need looking at.
        reserved = [self._by_name[name] for name in self.reservations.by_name if name in self._by_name]
        self.reservations = settle(self.reservations, reserved, now, self.policy.reservation_max_age_s)
        if client is not None and limit is not None:
            pool = self._index.shortlist(self._by_name, client, now, limit, self.policy, self.reservations)
        else:
            pool = candidates
        ranked = rank(pool, client, now, self.policy, self.rng, self.reservations)
        if limit is not None:
            ranked = ranked[:limit]
        if ranked:
            self.reservations = reserve(self.reservations, ranked[0].name, now)
        if bool(ranked) == self._none_eligible:  # said once when it happens, once when it ends
            self._none_eligible = not ranked
            if ranked:
                log.info("broadcasters can take new streams again")
            else:
                log.warning("no broadcaster can take a new stream (%d registered)", len(candidates))
        return ranked

    async def note_handout(self, stream_id: str, name: str, now: float) -> None:
        """Remember in the registry that `stream_id` was sent to `name`, a carrier hint the playlist
        merger reads; when the backend fails the ingest keeps its answer and the merger finds the stream by
        asking the fleet instead."""
        try:
            await self.registry.note_carrier(stream_id, name, now)
        except RegistryUnavailable as exc:  # degrade, never fail the ingest
            if not self._handouts_failing:
                log.warning("registry not writable, hand-outs not recorded (first: %s to %s): %s",
                            stream_id, name, exc)
            self._handouts_failing = True
        else:
            if self._handouts_failing:
                log.info("hand-outs recorded again")
            self._handouts_failing = False

    def _refresh(self, candidates: list[Broadcaster]) -> None:
        # Stores hand back the same objects until something is written, and a write (a heartbeat)
        # usually changes one broadcaster's load, not who is where: only that is looked at again.
        seen = self._seen
        if len(candidates) == len(seen):
            if all(map(operator.is_, candidates, seen)):
                return
            changed = [(new, old) for new, old in zip(candidates, seen) if new is not old]
            if all(_same_place(new, old) for new, old in changed):
                self._seen = list(candidates)
                for new, _ in changed:
                    self._by_name[new.name] = new
                return
        self._seen = list(candidates)
        self._by_name = {b.name: b for b in candidates}
        self._index = NearbyIndex(candidates)


def _same_place(a: Broadcaster, b: Broadcaster) -> bool:
    return a.name == b.name and a.latitude == b.latitude and a.longitude == b.longitude
