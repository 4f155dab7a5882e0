"""Rankings remembered per place: the ranking of a small cell of the globe, computed once at the
cell's centre for one version of the registry, answers every client located in that cell until
the version changes or the entry is `max_age_s` old.

What is kept is the costs before reservations, so each answer still applies the reservations of
that moment (they only add to a candidate's cost) and still draws its own random order among the
tied leaders. An entry keeps `spare` more candidates than an answer needs, and `cut`, a cost that
every candidate left out exceeds. While the reservations keep the answer's last one below the cut
(less the tie margin) the answer is exact ranking's at the centre. Past that (a burst of hand-outs
heavy enough to fill the nearby nodes' predicted capacity before their next heartbeats) the answer
stays among the entry's candidates, the least reserved first, where exact ranking would go on
to farther nodes; such answers are counted (`Answer.exact` is False). Ranking exactly then means
scoring the whole fleet on every request, since every node's predicted load then matters.

The one approximation is the client's position: everyone in a cell is ranked from its centre
(cells of 0.1 degrees: at most ~8 km away, against the 250 km within which leaders are tied).
Callers shadow a fraction of requests with the exact ranking and count where they differ.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from cachetools import LRUCache

from broadcaster_registry.model import Broadcaster
from broadcaster_registry.ranking import (
    RankingPolicy,
    leader_count,
    load_penalty_km,
    load_report_fresh,
    scores,
    shuffle_leaders,
)
from broadcaster_registry.reservations import NO_RESERVATIONS, Reservation, Reservations, outstanding
from geo.location import Location

Cell = tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    cell_degrees: float = 0.1
    # An entry is recomputed after this long even when no version change asked for it: the bound on
    # how long load drift below `load_step_km` goes unseen.
    max_age_s: float = 5.0
    # A load report moves the version only when the load penalty it implies crosses a step of this
    # many km (a heartbeat repeating the same figures never does).
    load_step_km: float = 25.0
    # Candidates kept beyond the answer, room for reservations to reorder it.
    spare: int = 10
    max_cells: int = 8192
    # Share of cached answers also ranked exactly, to count mismatches.
    shadow_fraction: float = 0.001

    def __post_init__(self) -> None:
        if not 0 < self.cell_degrees <= 10:
            raise ValueError("cell_degrees: must be above 0 and at most 10")
        if not self.max_age_s > 0:
            raise ValueError("max_age_s: must be a positive number of seconds")
        if not self.load_step_km >= 0:
            raise ValueError("load_step_km: must be 0 or more")
        if not 0 <= self.shadow_fraction <= 1:
            raise ValueError("shadow_fraction: must be between 0 and 1")


class Costed(NamedTuple):  # a tuple: built ~20 times for every cell ranked, twice as fast as a dataclass
    cost_km: float  # without reservations
    distance_penalty_km: float
    broadcaster: Broadcaster


@dataclass(frozen=True, slots=True)
class Entry:
    version: int
    computed_at: float
    ordered: tuple[Costed, ...]
    cut: float  # every eligible broadcaster not in `ordered` costs more than this at the centre
    # Derived from `ordered` once, for answers (never changed in place).
    broadcasters: list[Broadcaster] = field(init=False, compare=False)
    costs: list[float] = field(init=False, compare=False)
    position: dict[str, int] = field(init=False, compare=False)
    keyed: list[tuple[float, str, Broadcaster]] = field(init=False, compare=False)  # (cost, name, broadcaster)

    def __post_init__(self) -> None:
        object.__setattr__(self, "broadcasters", [c.broadcaster for c in self.ordered])
        object.__setattr__(self, "costs", [c.cost_km for c in self.ordered])
        object.__setattr__(self, "position", {c.broadcaster.name: i for i, c in enumerate(self.ordered)})
        object.__setattr__(self, "keyed", [(c.cost_km, c.broadcaster.name, c.broadcaster) for c in self.ordered])


def cell_of(client: Location, cell_degrees: float) -> Cell:
    return (math.floor(client.latitude / cell_degrees), math.floor(client.longitude / cell_degrees))


def centre_of(cell: Cell, cell_degrees: float) -> Location:
    return Location(min(90.0, (cell[0] + 0.5) * cell_degrees), min(180.0, (cell[1] + 0.5) * cell_degrees))


def build_entry(
    pool: Sequence[Broadcaster], centre: Location, now: float, policy: RankingPolicy, kept: int, version: int
) -> Entry:
    """The entry for a cell from `pool`: a set that holds, at `centre` and before reservations,
    every eligible broadcaster ranked among the first `kept` or tied with the best
    (NearbyIndex.shortlist with no reservations gives one), or the whole fleet."""
    scored = scores(pool, centre, now, policy, NO_RESERVATIONS)
    return entry_of([(s.cost_km, s.distance_penalty_km, s.broadcaster) for s in scored], now, policy, kept, version)


def entry_of(
    costed: Sequence[tuple[float, float, Broadcaster]], now: float, policy: RankingPolicy, kept: int, version: int
) -> Entry:
    """The entry from (cost, distance penalty, broadcaster) before reservations, by cost then name, as
    `scores` gives them at the centre: every eligible broadcaster among the first `kept` or tied with
    the `kept`-th, or all of them (NearbyIndex.ranked_at gives that)."""
    ordered = tuple(map(Costed._make, costed))
    # Anyone left out costs more than the kept-th best plus the tie margin (see nearby.py).
    cut = ordered[kept - 1].cost_km + policy.tie_epsilon_km if len(ordered) >= kept else math.inf
    return Entry(version, now, ordered, cut)


# name -> (the value and the reservation it was computed for, from when, until when, the reserved
# load penalty or None: nothing outstanding), kept across calls: between two heartbeats a name's
# reservation object changes only with a hand-out on it.
Penalties = dict[str, tuple[Broadcaster, Reservation, float, float, float | None]]
_PENALTIES_MAX = 65536


def reserved_order(
    entry: Entry, now: float, policy: RankingPolicy, reservations: Reservations, penalties: Penalties | None = None
) -> tuple[list[Broadcaster], list[float]]:
    """The entry's broadcasters and their costs with `reservations` applied, by cost then name (the
    entry's own lists when no reservation moves anyone: not to be changed). `penalties` remembers
    reserved load penalties across calls."""
    by_name = reservations.by_name
    reserved = entry.position.keys() & by_name.keys()
    if not reserved:  # only the entry's reserved candidates can move: usually none or a few
        return entry.broadcasters, entry.costs
    known: Penalties = {} if penalties is None else penalties
    keyed = None
    for name in reserved:
        i = entry.position[name]
        c = entry.ordered[i]
        b = c.broadcaster
        r = by_name[name]
        hit = known.get(name)
        if hit is None or hit[0] is not b or hit[1] is not r or not hit[2] <= now <= hit[3]:
            hit = known[name] = _reserved_penalty(b, r, reservations, now, policy)
            if len(known) >= _PENALTIES_MAX:
                known.clear()
        if hit[4] is None:
            continue
        if keyed is None:
            keyed = entry.keyed.copy()
        keyed[i] = (c.distance_penalty_km + hit[4], name, b)
    if keyed is None:
        return entry.broadcasters, entry.costs
    keyed.sort()  # by cost, then name (names differ: broadcasters are never compared)
    return [t[2] for t in keyed], [t[0] for t in keyed]


def _reserved_penalty(
    b: Broadcaster, r: Reservation, reservations: Reservations, now: float, policy: RankingPolicy
) -> tuple[Broadcaster, Reservation, float, float, float | None]:
    """`b`'s load penalty with reservation `r` at `now`, and until when it holds: while `r` is
    counted (until it ages out) and `b`'s report believed (until it goes stale); once either is
    over it stays over as time goes on."""
    n = outstanding(reservations, b, now, policy.reservation_max_age_s)
    if n == 0:
        return (b, r, now, math.inf, None)
    fresh = load_report_fresh(b, now, policy)
    until = r.since + policy.reservation_max_age_s
    if fresh:
        until = min(until, b.last_heartbeat + policy.metrics_max_age_s)
    return (b, r, now, until, load_penalty_km(b, n, now, policy))


@dataclass(frozen=True, slots=True)
class Answer:
    ranked: list[Broadcaster]  # the first `limit`, leaders shuffled
    leaders: list[Broadcaster]  # the tied leaders, in cost order
    # Whether the entry holds the answer exact ranking at the centre gives: False when reservations
    # pushed the entry's own candidates so far up that one left out could now rank among them.
    exact: bool


def answer(
    entry: Entry,
    now: float,
    policy: RankingPolicy,
    rng: random.Random,
    reservations: Reservations,
    limit: int,
    penalties: Penalties | None = None,
) -> Answer:
    """The entry's candidates ranked with `reservations`, the first `limit` of them."""
    ordered, costs = reserved_order(entry, now, policy, reservations, penalties)
    exact = entry.cut == math.inf or (
        len(costs) >= limit and costs[limit - 1] + policy.tie_epsilon_km <= entry.cut
    )
    leaders = ordered[: leader_count(costs, policy)]
    return Answer(shuffle_leaders(ordered, costs, policy, rng)[:limit], leaders, exact)


def same_leaders(a: Sequence[Broadcaster], b: Sequence[Broadcaster]) -> bool:
    """Do two answers have the same tied leaders (the ones the random choice is made among)?"""
    return {x.name for x in a} == {x.name for x in b}


class RankingCache:
    """Entries by cell, the least recently used dropped beyond `max_cells`."""

    def __init__(self, policy: CachePolicy = CachePolicy()) -> None:
        self.policy = policy
        self._entries: LRUCache[Cell, Entry] = LRUCache(maxsize=policy.max_cells)
        self.penalties: Penalties = {}

    def cell(self, client: Location) -> Cell:
        return cell_of(client, self.policy.cell_degrees)

    def centre(self, cell: Cell) -> Location:
        return centre_of(cell, self.policy.cell_degrees)

    def get(self, cell: Cell, version: int, now: float) -> Entry | None:
        """The entry for `cell` if it was computed for `version` less than max_age_s ago."""
        entry = self._entries.get(cell)
        if entry is None or entry.version != version or not 0 <= now - entry.computed_at < self.policy.max_age_s:
            return None
        return entry

    def put(self, cell: Cell, entry: Entry) -> None:
        self._entries[cell] = entry
