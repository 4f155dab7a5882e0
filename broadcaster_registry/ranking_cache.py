"""Rankings remembered per place: the ranking of a small cell of the globe, computed once at the
cell's centre for one version of the registry, answers every client located in that cell until
the version changes. A load change is applied to it (`updated`: a candidate that reported a new load
takes its new place, someone else who got idle enough to rank among them joins) instead of ranking
the cell again: one across a step of `load_step_km` at the cell's next answer, one within a step
(drift) once the entry is `max_age_s` old. A quiet fleet, whose heartbeats repeat their loads,
keeps its entries as they are.

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

import heapq
import math
import operator
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from broadcaster_registry.model import Broadcaster
from broadcaster_registry.ranking import (
    RankingPolicy,
    leader_count,
    load_model,
    load_penalty_of,
    load_report_fresh,
    scores,
)
from broadcaster_registry.reservations import NO_RESERVATIONS, Reservations, outstanding
from geo.location import Location

Cell = tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    cell_degrees: float = 0.1
    # An entry this old is checked against the load changes within a step reported since (then
    # again this long after): the bound on how long load drift below `load_step_km` goes unseen.
    max_age_s: float = 5.0
    # A load report is checked against every entry at once only when the load penalty it implies
    # crosses a step of this many km (a heartbeat repeating the same figures never is).
    load_step_km: float = 25.0
    # Candidates kept beyond the answer, room for reservations to reorder it.
    spare: int = 10
    max_cells: int = 8192
    # Share of cached answers also ranked exactly, to count mismatches; at most one such check per
    # `shadow_interval_s` (one costs ~1 ms with 1,000 broadcasters: at 16,000 answers a second the
    # share alone would spend 1.5% of a core on them).
    shadow_fraction: float = 0.001
    shadow_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.cell_degrees <= 10:
            raise ValueError("cell_degrees: must be above 0 and at most 10")
        if not self.max_age_s > 0:
            raise ValueError("max_age_s: must be a positive number of seconds")
        if not self.load_step_km >= 0:
            raise ValueError("load_step_km: must be 0 or more")
        if not 0 <= self.shadow_fraction <= 1:
            raise ValueError("shadow_fraction: must be between 0 and 1")
        if not self.shadow_interval_s >= 0:
            raise ValueError("shadow_interval_s: must be 0 or more seconds")


class Costed(NamedTuple):  # a tuple: built ~20 times for every cell ranked, twice as fast as a dataclass
    cost_km: float  # without reservations: distance_penalty_km + load_penalty_km, added in that order
    distance_penalty_km: float
    load_penalty_km: float  # without reservations (its floor)
    broadcaster: Broadcaster


@dataclass(frozen=True, slots=True)
class Entry:
    version: int
    computed_at: float
    ordered: tuple[Costed, ...]
    cut: float  # every eligible broadcaster not in `ordered` costs more than this at the centre
    # The distance from the centre to the nearest eligible located broadcaster, from which every
    # distance penalty counts (infinity: none). A load change cannot move it.
    nearest_km: float = math.inf
    # Derived from `ordered` once, for answers (never changed in place): columns that an answer maps
    # over in C.
    broadcasters: list[Broadcaster] = field(init=False, compare=False)
    names: list[str] = field(init=False, compare=False)
    costs: list[float] = field(init=False, compare=False)
    distance_penalties: list[float] = field(init=False, compare=False)
    floors: list[float] = field(init=False, compare=False)
    members: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        columns = list(zip(*self.ordered)) or [(), (), (), ()]
        object.__setattr__(self, "costs", list(columns[0]))
        object.__setattr__(self, "distance_penalties", list(columns[1]))
        object.__setattr__(self, "floors", list(columns[2]))
        object.__setattr__(self, "broadcasters", list(columns[3]))
        object.__setattr__(self, "names", [b.name for b in self.broadcasters])
        object.__setattr__(self, "members", frozenset(self.names))


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
    nearest_km = min((s.distance_km for s in scored if s.distance_km is not None), default=math.inf)
    return entry_of([(s.cost_km, s.distance_penalty_km, s.load_penalty_km, s.broadcaster) for s in scored],
                    now, policy, kept, version, nearest_km)


def entry_of(
    costed: Sequence[tuple[float, float, float, Broadcaster]], now: float, policy: RankingPolicy, kept: int,
    version: int, nearest_km: float = math.inf,
) -> Entry:
    """The entry from (cost, distance penalty, load penalty, broadcaster) before reservations, by cost
    then name, as `scores` gives them at the centre: every eligible broadcaster among the first `kept`
    or tied with the `kept`-th, or all of them (NearbyIndex.ranked_at gives that); `nearest_km`: the
    distance from the centre to the nearest eligible located broadcaster (infinity: none or unknown)."""
    ordered = tuple(map(Costed._make, costed))
    # Anyone left out costs more than the kept-th best plus the tie margin (see nearby.py).
    cut = ordered[kept - 1].cost_km + policy.tie_epsilon_km if len(ordered) >= kept else math.inf
    return Entry(version, now, ordered, cut, nearest_km)


def updated(entry: Entry, loads: Mapping[str, tuple[Broadcaster, float]],
            km_from_centre: Callable[[str], float | None], policy: RankingPolicy) -> Entry | None:
    """`entry` after each broadcaster of `loads` (by name: its value now and its load penalty floor
    now) reported a new load, each of them able to take new streams before and now, from the same
    place: its candidates at their new costs, and anyone else who now costs no more than the cut
    among them, in order. `km_from_centre`: a name's km from the cell's centre, measured as ranking
    measures it (None: not located). The cut stays (everyone else still costs more); None when a
    candidate would need the nearest distance the entry does not have."""
    position = {name: i for i, name in enumerate(entry.names)}
    ordered = list(entry.ordered)
    changed = False
    for name, (b, floor) in loads.items():
        i = position.get(name)
        if i is not None:
            was = ordered[i]
            if was.load_penalty_km != floor or was.broadcaster is not b:
                ordered[i] = Costed(was.distance_penalty_km + floor, was.distance_penalty_km, floor, b)
                changed = True
            continue
        if floor > entry.cut:
            continue  # too busy to join, however near (a distance penalty is never below 0)
        km = km_from_centre(name)
        if km is None:
            penalty = policy.unlocated_penalty_km
        elif entry.nearest_km == math.inf:
            return None
        else:
            penalty = km - entry.nearest_km
        if penalty + floor <= entry.cut:  # as NearbyIndex.ranked_at keeps them
            ordered.append(Costed(penalty + floor, penalty, floor, b))
            changed = True
    if not changed:
        return entry
    ordered.sort(key=_cost_then_name)
    return Entry(entry.version, entry.computed_at, tuple(ordered), entry.cut, entry.nearest_km)


def _cost_then_name(c: Costed) -> tuple[float, str]:
    return c.cost_km, c.broadcaster.name


def answers_exactly(entry: Entry, limit: int, policy: RankingPolicy) -> bool:
    """Whether `entry` holds, before reservations, the first `limit` exact ranking gives at its
    centre and all tied with them (as `answer` judges it with reservations)."""
    costs = entry.costs
    return entry.cut == math.inf or (len(costs) >= limit and costs[limit - 1] + policy.tie_epsilon_km <= entry.cut)


def reserved_penalty(
    b: Broadcaster, reservations: Reservations, now: float, policy: RankingPolicy,
    model: Callable[[Broadcaster, bool, RankingPolicy], tuple[float, float, bool]] = load_model,
) -> tuple[float | None, float]:
    """`b`'s load penalty at `now` with its outstanding reservations (None: it has none), and until
    when that holds: while the reservation is counted (until it ages out) and `b`'s report believed
    (until it goes stale); once either is over it stays over as time goes on. Only a new value of
    `b` or of its reservation changes it otherwise. `model`: ranking.load_model, or one that
    remembers it."""
    n = outstanding(reservations, b, now, policy.reservation_max_age_s)
    if n == 0:
        return None, math.inf
    until = reservations.by_name[b.name].since + policy.reservation_max_age_s
    fresh = load_report_fresh(b, now, policy)
    if fresh:
        until = min(until, b.last_heartbeat + policy.metrics_max_age_s)
    base, share, _ = model(b, fresh, policy)
    return load_penalty_of(base + n * share, policy), until


class ReservedPenalties:
    """name -> `reserved_penalty` at the time last given, for every name with outstanding
    reservations: kept up to date by its owner at each hand-out and each new value of a broadcaster
    (`update`), and as time passes (`due` names the ones that may have changed), so that an answer
    reads the reserved candidates of an entry with one map in C instead of working each one out."""

    def __init__(self, policy: RankingPolicy) -> None:
        self.policy = policy
        self.values: dict[str, float] = {}  # read-only to others
        self._until: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # (until, name), stale items skipped
        self._latest = -math.inf
        # name -> (value, whether its report was believed, its load_model): every hand-out works out
        # its broadcaster's penalty again, from a value that changes at its heartbeats.
        self._models: dict[str, tuple[Broadcaster, bool, tuple[float, float, bool]]] = {}

    def _model(self, b: Broadcaster, fresh: bool, policy: RankingPolicy) -> tuple[float, float, bool]:
        held = self._models.get(b.name)
        if held is not None and held[0] is b and held[1] is fresh:
            return held[2]
        model = load_model(b, fresh, policy)
        self._models[b.name] = (b, fresh, model)
        return model

    def update(self, b: Broadcaster, reservations: Reservations, now: float) -> None:
        """`b`'s penalty from its value and its reservation at `now`."""
        penalty, until = reserved_penalty(b, reservations, now, self.policy, self._model)
        name = b.name
        if penalty is None:
            self.forget(name)
            return
        self.values[name] = penalty
        if self._until.get(name) != until:
            self._until[name] = until
            if until != math.inf:
                heapq.heappush(self._heap, (until, name))
                self._compact()
        self._latest = max(self._latest, now)

    def _compact(self) -> None:
        """Drop the heap's replaced items once they are most of it."""
        if len(self._heap) > 4 * len(self._until) + 64:
            self._heap = [(at, name) for name, at in self._until.items() if at != math.inf]
            heapq.heapify(self._heap)

    def forget(self, name: str) -> None:
        """No reservation on `name` any more (settled, or it left the registry)."""
        self.values.pop(name, None)
        self._until.pop(name, None)
        self._models.pop(name, None)

    def due(self, now: float, reserved: Iterable[str]) -> list[str]:
        """The names whose penalty may be otherwise at `now` than when it was given, each to be
        updated (or forgotten) by the owner: all the `reserved` ones (the names with a reservation,
        counted or not) when time went back."""
        if now < self._latest:
            self._latest = now
            return list(reserved)
        self._latest = now
        heap, until, names = self._heap, self._until, []
        while heap and heap[0][0] <= now:  # at `until` itself too: working one out again is always safe
            at, name = heapq.heappop(heap)
            if until.get(name) == at:  # not replaced since
                del until[name]
                names.append(name)
        self._compact()
        return names


def reserved_order(entry: Entry, penalties: Mapping[str, float]) -> tuple[list[Broadcaster], list[float]]:
    """The entry's broadcasters and their costs with the reserved load `penalties` (name -> load
    penalty, for the names with reservations) in place of their floors, by cost then name (the
    entry's own lists when no reservation moves anyone: not to be changed)."""
    costs = list(map(operator.add, entry.distance_penalties, map(penalties.get, entry.names, entry.floors)))
    if costs == entry.costs:  # only reservations can differ, and they only add
        return entry.broadcasters, entry.costs
    if len(set(costs)) == len(costs):
        # No two costs equal, so no name is needed to break a tie: positions sorted by cost alone
        # (floats compared in C) cost half the (cost, name, broadcaster) tuples below.
        order = sorted(range(len(costs)), key=costs.__getitem__)
        return list(map(entry.broadcasters.__getitem__, order)), list(map(costs.__getitem__, order))
    keyed = sorted(zip(costs, entry.names, entry.broadcasters))  # names differ: broadcasters never compared
    return list(map(_third, keyed)), list(map(_first, keyed))


_first, _third = operator.itemgetter(0), operator.itemgetter(2)


class Answer(NamedTuple):  # a tuple: one is made for every request
    ranked: list[Broadcaster]  # the first `limit`, leaders shuffled
    leaders: list[Broadcaster]  # the tied leaders, in cost order
    # Whether the entry holds the answer exact ranking at the centre gives: False when reservations
    # pushed the entry's own candidates so far up that one left out could now rank among them.
    exact: bool


def answer(
    entry: Entry, policy: RankingPolicy, rng: random.Random, penalties: Mapping[str, float], limit: int
) -> Answer:
    """The entry's candidates ranked with the reserved load `penalties` (ReservedPenalties.values at
    the time of the answer), the first `limit` of them."""
    ordered, costs = reserved_order(entry, penalties)
    cut = entry.cut
    exact = cut == math.inf or (len(costs) >= limit and costs[limit - 1] + policy.tie_epsilon_km <= cut)
    tied = leader_count(costs, policy)
    leaders = ordered[:tied]
    if tied < 2:  # nothing to draw (shuffle_leaders would draw nothing either)
        return Answer(ordered[:limit], leaders, exact)
    drawn = leaders[:]
    rng.shuffle(drawn)
    return Answer(drawn[:limit] + ordered[tied:limit], leaders, exact)


def same_leaders(a: Sequence[Broadcaster], b: Sequence[Broadcaster]) -> bool:
    """Do two answers have the same tied leaders (the ones the random choice is made among)?"""
    return {x.name for x in a} == {x.name for x in b}


@dataclass(slots=True)
class Held:
    """A cell's entry and how far it is known to hold (see `holds_after`): the positions in the
    caller's logs of load changes, across a step and within one, it was last checked at, and when
    it was last checked against the latter. The caller moves them on as checks pass."""

    entry: Entry
    loads_seen: int
    drifts_seen: int
    drifts_checked_at: float


class RankingCache:
    """Entries by cell, each with how far it is known to hold (`Held`); the oldest dropped beyond
    `max_cells`."""

    def __init__(self, policy: CachePolicy = CachePolicy()) -> None:
        self.policy = policy
        self._entries: dict[Cell, Held] = {}

    def cell(self, client: Location) -> Cell:
        return cell_of(client, self.policy.cell_degrees)

    def centre(self, cell: Cell) -> Location:
        return centre_of(cell, self.policy.cell_degrees)

    def get(self, cell: Cell, version: int) -> Held | None:
        """The entry for `cell` if it was computed for `version`."""
        held = self._entries.get(cell)
        if held is None or held.entry.version != version:
            return None
        return held

    def put(self, cell: Cell, entry: Entry, loads_seen: int, drifts_seen: int) -> Held:
        """Keep `entry` for `cell`, known to hold at these log positions when it was computed."""
        entries = self._entries
        if cell in entries:
            del entries[cell]  # to the end: the oldest go first
        elif len(entries) >= self.policy.max_cells:
            del entries[next(iter(entries))]
        held = entries[cell] = Held(entry, loads_seen, drifts_seen, entry.computed_at)
        return held
