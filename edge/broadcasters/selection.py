"""Choosing broadcasters for an ingest: ranking over the registry, with this node's reservations and
a last known list to answer from when the registry backend cannot be read.

With a large fleet most broadcasters are too far from a located client to matter; NearbyIndex picks
the ones that can, so a request scores a few dozen instead of all of them (same answer, see there).
With a RankingCache, a located client is answered from its cell's ranking for the current version
(see ranking_cache.py): `version` moves when the registry changes in a way ranking can see (someone
joins, leaves, moves, drains, is ejected, or a heartbeat or report goes stale), not at every
heartbeat; a heartbeat whose load crosses a step is logged instead, and each cell's entry is checked
against the loads logged since it was computed; a fraction of those answers is checked against the
exact ranking.
"""

from __future__ import annotations

import logging
import math
import operator
import random
from itertools import compress
from types import MappingProxyType
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from broadcaster_registry.model import Broadcaster
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from broadcaster_registry import ranking_cache
from broadcaster_registry.nearby import NearbyIndex
from broadcaster_registry.ranking import (
    RankingPolicy,
    leader_count,
    rank,
    scores,
    scoring_stable_until,
)
from broadcaster_registry.ranking_cache import RankingCache, ReservedPenalties
from broadcaster_registry.reservations import Reservation, Reservations, one_more, outstanding, settle
from broadcaster_registry.storage import RegistryStore, RegistryUnavailable
from geo.location import Location

log = logging.getLogger("edge.selection")

# A request's `now` earlier than the latest judgment by less than this is not the clock stepping
# back: requests take `now` before they wait on the registry, and another that read a heartbeat
# meanwhile judged it a little later. Judging the whole fleet again for that (at every heartbeat
# under load) cut GET /api/broadcaster to 0.41x the bare app.
CLOCK_STEP_BACK_S = 1.0


@dataclass
class CacheStats:
    """Counts of the cached path since start (exported as Prometheus counters)."""

    hits: int = 0  # answered from a cell's entry
    held: int = 0  # of those, from an entry the load changes reported since were applied to
    computed: int = 0  # an entry computed, then answered from
    stretched: int = 0  # of those, answers reservations moved beyond what the entry guarantees
    checks: int = 0  # cached answers also ranked exactly
    mismatches: int = 0  # of those, answers whose tied leaders differed


class CacheMetrics:
    """CacheStats as Prometheus counters, read when scraped (nothing is added to the request)."""

    def __init__(self, registry: CollectorRegistry, stats: CacheStats) -> None:
        self.stats = stats
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        answers = CounterMetricFamily(
            "edge_broadcaster_ranking_cache_answers", "GET /api/broadcaster answers of located clients from a cell's "
            "ranking: hit (cached), computed (computed first).", labels=["outcome"])
        answers.add_metric(["hit"], self.stats.hits)
        answers.add_metric(["computed"], self.stats.computed)
        yield answers
        yield CounterMetricFamily("edge_broadcaster_ranking_cache_held", "Of the hits, answers from a cell's ranking "
                                  "the load changes reported since it was computed were applied to (instead of "
                                  "ranking the cell again).", value=self.stats.held)
        yield CounterMetricFamily("edge_broadcaster_ranking_cache_stretched", "Of those, answers that reservations "
                                  "(a burst of hand-outs) moved beyond the candidates a cell's ranking guarantees "
                                  "exact.", value=self.stats.stretched)
        yield CounterMetricFamily("edge_broadcaster_ranking_cache_checks", "Cached answers also ranked exactly "
                                  "(a shadow comparison).", value=self.stats.checks)
        yield CounterMetricFamily("edge_broadcaster_ranking_cache_mismatches", "Of the shadow comparisons, the "
                                  "cached answers whose tied leaders (among which the first is drawn) differed "
                                  "from exact ranking's.", value=self.stats.mismatches)

    def describe(self) -> Iterator[Metric]:
        return iter(())


_STALE = object()
# An entry is checked against at most this many load changes; past that it is computed again (as
# costly as checking a few dozen).
_LOADS_CHECKED = 48
_LOADS_KEPT = 2048


class ChangeLog:
    """Names of broadcasters whose load changed, in order, each at a position counted since start;
    the oldest forgotten beyond twice `kept`."""

    def __init__(self, kept: int = _LOADS_KEPT) -> None:
        self.kept = kept
        self._names: list[str] = []
        self._base = 0  # the position of _names[0]

    @property
    def end(self) -> int:
        """The position the next change will take."""
        return self._base + len(self._names)

    def append(self, name: str) -> None:
        self._names.append(name)
        if len(self._names) > 2 * self.kept:  # entries checked before what is dropped are computed again
            del self._names[:self.kept]
            self._base += self.kept

    def since(self, position: int) -> set[str] | None:
        """The names that changed at `position` or after; None when those are forgotten or more than
        an entry is worth checking against."""
        if position < self._base or self.end - position > _LOADS_CHECKED:
            return None
        return set(self._names[position - self._base:])


class Selector:
    def __init__(
        self,
        registry: RegistryStore,
        policy: RankingPolicy,
        rng: random.Random,
        admits: Callable[[Broadcaster], bool] = lambda b: True,
        cache: RankingCache | None = None,
        shadow_rng: random.Random | None = None,
        admits_epoch: Callable[[], int] | None = None,
    ) -> None:
        self.registry = registry
        self.admits = admits  # whether a broadcaster's address may be handed out at all
        # A number that moves whenever `admits` may have turned False for someone it admitted: while
        # it stays where it was when everyone read was last judged, answers need not be judged again.
        self.admits_epoch = admits_epoch
        self._judged_epoch: int | None = None
        self.policy = policy
        self.rng = rng
        self.cache = cache
        self.shadow_rng = shadow_rng or random.Random()
        self._shadowed_at = -math.inf  # the last shadow check
        self.stats = CacheStats()
        # What ranking can see of the registry: moves when that changes (`_moved`), or at
        # `_stable_until`, when time alone may change how someone is judged.
        self.version = 0
        self._stable_until = -math.inf
        # The latest time anyone was judged at (everyone afresh, or one changed value read): a
        # clock stepping back more than CLOCK_STEP_BACK_S before it judges everyone again.
        self._judged_at = -math.inf
        self._moved = False
        # Names whose load changed what ranking sees, in order (nothing else about them did): they
        # are applied to a cell's entry at its next answer (ranking_cache.updated) instead of every
        # cell being ranked again at every such change anywhere in the fleet.
        self._loads = ChangeLog()
        # Names whose load changed within a step of the cache's load_step_km (drift): applied to an
        # entry once it is max_age_s old, not at every answer.
        self._drifts = ChangeLog()
        self._revision: object = _STALE
        # Changed in place at every hand-out (a copy per request would cost as much as the answer);
        # `reservations` is a read-only view of it.
        self._reserved: dict[str, Reservation] = {}
        self.reservations = Reservations(MappingProxyType(self._reserved))
        # The load penalties those reservations give, kept for cached answers.
        self._penalties = ReservedPenalties(policy)
        self.last_known: list[Broadcaster] = []
        self._degraded = False
        self._none_eligible = False
        self._handouts_failing = False
        # Derived from the last list read, rebuilt only when it changes.
        self._seen: list[Broadcaster] = []
        self._read: list[Broadcaster] = []  # the last list read, and whether each one was admitted
        self._verdicts: list[bool] = []
        self._settled_at = -math.inf  # every reservation last looked at
        self._by_name: dict[str, Broadcaster] = {}
        self._index = NearbyIndex([])

    async def candidates(self) -> list[Broadcaster]:
        """Every broadcaster in the registry, or the last list read when the backend fails."""
        try:
            read = await self.registry.list_all()
        except RegistryUnavailable as exc:  # degrade, never fail the ingest
            if not self._degraded:
                log.warning("registry unreadable, answering from the last known list: %s", exc)
            self._degraded = True
            return self.last_known
        return self._known(read)

    def _known(self, read: list[Broadcaster]) -> list[Broadcaster]:
        """`read`, the registry's answer, is the last known list."""
        self.last_known = read
        if self._degraded:
            log.info("registry readable again")
        self._degraded = False
        return read

    async def choose(self, client: Location | None, now: float, limit: int | None = None) -> list[Broadcaster]:
        """Eligible broadcasters, best first (the first `limit` of them); the first one is reserved
        until its next heartbeat."""
        ranked = self._answer(await self._current(now), client, now, limit)
        if not self._still_admitted() and not all(map(self.admits, ranked)):
            # Refused since the registry was last read (a fetch found its name resolving to a
            # refused address): read everything again.
            self._revision = _STALE
            ranked = self._answer(await self._current(now), client, now, limit)
        return self._handed_out(ranked, now)

    def choose_now(self, client: Location | None, now: float, limit: int | None = None) -> list[Broadcaster] | None:
        """What `choose` answers, when that needs no wait for the registry; None when it does."""
        seen = self._current_now(now)
        if seen is None:
            return None
        ranked = self._answer(seen, client, now, limit)
        if not self._still_admitted() and not all(map(self.admits, ranked)):
            return None
        return self._handed_out(ranked, now)

    def _handed_out(self, ranked: list[Broadcaster], now: float) -> list[Broadcaster]:
        """`ranked`, its first one reserved."""
        if ranked:
            first = self._by_name.get(ranked[0].name, ranked[0])
            self._reserved[first.name] = one_more(self.reservations, first, now, self.policy.reservation_max_age_s)
            if self.cache is not None:
                self._penalties.update(first, self.reservations, now)
        if bool(ranked) == self._none_eligible:  # said once when it happens, once when it ends
            self._none_eligible = not ranked
            if ranked:
                log.info("broadcasters can take new streams again")
            else:
                log.warning("no broadcaster can take a new stream (%d registered)", len(self._seen))
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

    def _still_admitted(self) -> bool:
        """Whether every broadcaster of the current list is known to be admitted still."""
        return self.admits_epoch is not None and self.admits_epoch() == self._judged_epoch

    def _read_due(self) -> bool:
        """Whether the registry must be read again: it says it changed, it cannot say, or someone
        may have been refused since everyone was last judged."""
        epoch = self.admits_epoch() if self.admits_epoch is not None else None
        if epoch != self._judged_epoch:
            return True
        revision = self.registry.revision()
        return revision is None or revision != self._revision

    async def _current(self, now: float) -> list[Broadcaster]:
        """The admitted broadcasters, read again only when the registry says it changed; the
        reservations its heartbeats covered are settled then."""
        if self._read_due():
            revision = self.registry.revision()
            read = await self.candidates()
            # Answering from the last known list: the registry as of `revision` is still to be read.
            self._take(read, _STALE if self._degraded else revision, now)
        self._judge_time(now)
        return self._seen

    def _current_now(self, now: float) -> list[Broadcaster] | None:
        """What `_current` gives, when the registry can be read without a wait if it must be
        (RegistryStore.list_now); None otherwise."""
        if self._read_due():
            revision = self.registry.revision()
            read = self.registry.list_now()
            if read is None:
                return None
            self._take(self._known(read), revision, now)
        self._judge_time(now)
        return self._seen

    def _take(self, read: list[Broadcaster], revision: object, now: float) -> None:
        """Take `read`, the registry as of `revision`: the admitted ones become the current list;
        the reservations its heartbeats covered are settled."""
        epoch = self.admits_epoch() if self.admits_epoch is not None else None
        # Someone may have been refused since everyone was judged: judge everyone again.
        everyone = self._revision is _STALE or epoch != self._judged_epoch
        candidates = self._admitted(read, everyone=everyone)
        if everyone:
            self._judged_epoch = epoch
        self._revision = revision
        changed = self._refresh(candidates, now)
        max_age = self.policy.reservation_max_age_s
        if changed is None or not self._settled_at <= now < self._settled_at + max_age:
            # Only reserved names can keep a reservation, so only they need looking at.
            reserved = [self._by_name[name] for name in self.reservations.by_name if name in self._by_name]
            self._reserved = dict(settle(self.reservations, reserved, now, max_age).by_name)
            self.reservations = Reservations(MappingProxyType(self._reserved))
            self._settled_at = now
            self._penalties = ReservedPenalties(self.policy)
            if self.cache is not None:
                for b in reserved:
                    self._penalties.update(b, self.reservations, now)
        else:
            # A heartbeat settles its own broadcaster's reservations; the others are looked at
            # once per reservation_max_age_s (ranking ignores aged-out ones meanwhile).
            for b in changed:
                if b.name in self._reserved:
                    if not outstanding(self.reservations, b, now, max_age):
                        del self._reserved[b.name]
                    if self.cache is not None:
                        self._penalties.update(b, self.reservations, now)

    def _judge_time(self, now: float) -> None:
        """Judge everyone again when time alone may have changed something, or went back; a new
        version if it did (a heartbeat or a report went stale, an ejection ended)."""
        went_back = now < self._judged_at - CLOCK_STEP_BACK_S
        if now >= self._stable_until or went_back:
            changed = self._index.judge_all(self._by_name, now, self.policy)
            if changed or went_back:
                self._moved = True
            self._judged_at = now
            self._stable_until = min(
                (scoring_stable_until(b, now, self.policy) for b in self._seen), default=math.inf
            )
        if self._moved:
            self.version += 1
            self._moved = False

    def _admitted(self, read: list[Broadcaster], everyone: bool) -> list[Broadcaster]:
        """Those of `read` the edge may hand out (edge.upstream.AddressGuard: never an address it
        may not reach itself), judging again only the values not in the previous list read, or
        `everyone` (after a refusal)."""
        verdicts = self._verdicts
        if everyone or len(read) != len(self._read):
            verdicts = list(map(self.admits, read))
        else:
            for i in compress(range(len(read)), map(operator.is_not, read, self._read)):
                verdicts[i] = self.admits(read[i])
        self._read, self._verdicts = read, verdicts
        return list(compress(read, verdicts))

    def _answer(self, candidates: list[Broadcaster], client: Location | None, now: float,
                limit: int | None) -> list[Broadcaster]:
        if self.cache is not None and client is not None and limit is not None:
            return self._cached(client, now, limit)
        return self._exact(candidates, client, now, limit)

    def _exact(self, candidates: list[Broadcaster], client: Location | None, now: float,
               limit: int | None) -> list[Broadcaster]:
        if client is not None and limit is not None:
            pool = self._index.shortlist(self._by_name, client, now, limit, self.policy, self.reservations)
        else:
            pool = candidates
        ranked = rank(pool, client, now, self.policy, self.rng, self.reservations)
        return ranked if limit is None else ranked[:limit]

    def _cached(self, client: Location, now: float, limit: int) -> list[Broadcaster]:
        """The answer from `client`'s cell's ranking."""
        cache = self.cache
        assert cache is not None
        cell = cache.cell(client)
        held = cache.get(cell, self.version)
        if held is not None and self._still_holds(held, cell, now, limit):
            entry = held.entry
            self.stats.hits += 1
        else:
            kept = limit + cache.policy.spare
            costed, nearest_km = self._index.ranked_at(self._by_name, cache.centre(cell), kept, self.policy)
            entry = ranking_cache.entry_of(costed, now, self.policy, kept, self.version, nearest_km)
            cache.put(cell, entry, self._loads.end, self._drifts.end)
            self.stats.computed += 1
        penalties = self._penalties
        for name in penalties.due(now, self._reserved):  # reservations that aged out, reports that went stale
            b = self._by_name.get(name)
            if b is None:
                penalties.forget(name)
            else:
                penalties.update(b, self.reservations, now)
        answered = ranking_cache.answer(entry, self.policy, self.rng, penalties.values, limit)
        if not answered.exact:
            self.stats.stretched += 1
        policy = cache.policy
        if policy.shadow_fraction and self.shadow_rng.random() < policy.shadow_fraction and (
                not 0 <= now - self._shadowed_at < policy.shadow_interval_s):
            self._shadowed_at = now
            self._shadow(answered.leaders, client, now, limit)
        return answered.ranked

    def _shadow(self, leaders: list[Broadcaster], client: Location, now: float, limit: int) -> None:
        """Rank `client` exactly too, and count whether the cached answer's leaders differ."""
        pool = self._index.shortlist(self._by_name, client, now, limit, self.policy, self.reservations)
        exact = scores(pool, client, now, self.policy, self.reservations)
        exact_leaders = [s.broadcaster for s in exact[: leader_count([s.cost_km for s in exact], self.policy)]]
        self.stats.checks += 1
        if not ranking_cache.same_leaders(leaders, exact_leaders):
            self.stats.mismatches += 1

    def _still_holds(self, held: ranking_cache.Held, cell: ranking_cache.Cell, now: float, limit: int) -> bool:
        """Whether a cell's entry for the current version answers as ranking at its centre: with the
        load changes across a step logged since applied to it, and, once max_age_s has passed since
        those within a step last were, those too (drift goes unseen that long at most). Each update
        is kept in `held`."""
        end = self._loads.end
        if held.loads_seen != end:
            if not self._update(held, cell, self._loads.since(held.loads_seen), limit):
                return False
            held.loads_seen = end
            self.stats.held += 1
        assert self.cache is not None
        if not 0 <= now - held.drifts_checked_at < self.cache.policy.max_age_s:
            end = self._drifts.end
            if held.drifts_seen != end:
                if not self._update(held, cell, self._drifts.since(held.drifts_seen), limit):
                    return False
                held.drifts_seen = end
            held.drifts_checked_at = now
        return True

    def _update(self, held: ranking_cache.Held, cell: ranking_cache.Cell, names: set[str] | None, limit: int) -> bool:
        """Apply the loads now of the broadcasters `names` to the cell's entry (ranking_cache.updated);
        False when it must be ranked again instead: too many names to apply (None), or the entry no
        longer holds the first `limit` and their ties."""
        if names is None:
            return False
        assert self.cache is not None
        centre = self.cache.centre(cell)
        loads = {name: (self._by_name[name], self._index.judged(name)) for name in names if name in self._by_name}
        entry = ranking_cache.updated(held.entry, loads, self._index.km_from(centre), self.policy)
        if entry is None or not ranking_cache.answers_exactly(entry, limit, self.policy):
            return False
        held.entry = entry
        return True

    def _step(self, floor: float) -> float:
        """`floor` in steps of the cache's load_step_km (itself without one)."""
        step = self.cache.policy.load_step_km if self.cache is not None else 0.0
        return floor // step if step else floor

    def _refresh(self, candidates: list[Broadcaster], now: float) -> list[Broadcaster] | None:
        """Take `candidates` as the current list; the new values of those that changed in place
        (none: the same list), or None when the list was taken afresh."""
        # Stores hand back the same objects until something is written, and a write (a heartbeat)
        # usually changes one broadcaster's load, not who is where: only that is looked at again.
        seen = self._seen
        if len(candidates) == len(seen):
            changed = [(candidates[i], seen[i])
                       for i in compress(range(len(seen)), map(operator.is_not, candidates, seen))]
            if not changed:
                return []
            if all(_same_place(new, old) for new, old in changed):
                self._seen = list(candidates)
                self._judged_at = max(self._judged_at, now)
                for new, old in changed:
                    self._by_name[new.name] = new
                    # As entries were ranked (time may have changed it since), and as it is now.
                    before = self._index.judged(new.name)
                    self._index.judge(new, now, self.policy)
                    after = self._index.judged(new.name)
                    self._stable_until = min(self._stable_until, scoring_stable_until(new, now, self.policy))
                    if (old.address, old.region) != (new.address, new.region) or (
                            math.isinf(before) != math.isinf(after)):
                        self._moved = True  # a new version at once
                    elif math.isinf(before):
                        pass  # it could not take new streams, and still cannot
                    elif self._step(before) != self._step(after):
                        self._loads.append(new.name)
                    elif before != after:
                        self._drifts.append(new.name)
                return [new for new, _ in changed]
        self._seen = list(candidates)
        self._by_name = {b.name: b for b in candidates}
        self._index = NearbyIndex(candidates)
        self._stable_until = -math.inf
        self._moved = True
        return None


def _same_place(a: Broadcaster, b: Broadcaster) -> bool:
    return a.name == b.name and a.latitude == b.latitude and a.longitude == b.longitude
