"""Choosing broadcasters for an ingest: ranking over the registry, with this node's reservations and
a last known list to answer from when the registry backend cannot be read.
"""

from __future__ import annotations

import logging
import random

from broadcaster_registry.model import Broadcaster
from broadcaster_registry.ranking import RankingPolicy, rank
from broadcaster_registry.reservations import NO_RESERVATIONS, Reservations, reserve, settle
from broadcaster_registry.storage import RegistryStore
from geo.location import Location

log = logging.getLogger("edge.selection")


class Selector:
    def __init__(self, registry: RegistryStore, policy: RankingPolicy, rng: random.Random) -> None:
        self.registry = registry
        self.policy = policy
        self.rng = rng
        self.reservations: Reservations = NO_RESERVATIONS
        self.last_known: list[Broadcaster] = []

    async def candidates(self) -> list[Broadcaster]:
        """Every broadcaster in the registry, or the last list read when the backend fails."""
        try:
            self.last_known = await self.registry.list_all()
        except Exception as exc:  # any backend failure: degrade, never fail the ingest
            log.warning("registry unreadable, answering from the last known list: %s", exc)
        return self.last_known

    async def choose(self, client: Location | None, now: float) -> list[Broadcaster]:
        """Eligible broadcasters, best first; the first one is reserved until its next heartbeat."""
        candidates = await self.candidates()
        self.reservations = settle(self.reservations, candidates, now, self.policy.reservation_max_age_s)
        ranked = rank(candidates, client, now, self.policy, self.rng, self.reservations)
        if ranked:
            self.reservations = reserve(self.reservations, ranked[0].name, now)
        return ranked
