"""The broadcasters that can be among the best few for a located client, found without scoring the
whole fleet: the ranking stays ranking.py's, this only decides what it is given.

Ranking costs (see ranking.py) are "km beyond the nearest eligible candidate + a load penalty", and
a load penalty is never below the broadcaster's current load without reservations (its floor). So a
candidate whose distance beyond the nearest plus its floor exceeds the K-th best cost found so far
(plus the tie margin) can be neither among the first K nor among the tied leaders, and once the
distance alone exceeds it nobody farther can be either. Candidates are visited nearest first from a
per-cell list sorted by distance from the cell's centre; for a client at distance r from that centre
the triangle inequality bounds every true distance within +-r, which keeps the cut exact:
`rank(shortlist)[:K] == rank(everyone)[:K]`, with the same random choice among the leaders.

The per-cell lists depend only on the broadcasters' names and coordinates, which rarely change, so
they survive heartbeats (which change loads, not places); the index is rebuilt when places change.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cachetools import LRUCache

from broadcaster_registry.liveness import can_take_new_streams
from broadcaster_registry.model import Broadcaster
from broadcaster_registry.ranking import (
    RankingPolicy,
    load_penalty_floor_km,
    load_report_fresh,
    scores,
)
from broadcaster_registry.reservations import Reservations
from geo.distance import EARTH_RADIUS_KM, distance_km
from geo.location import Location

# Cells of 4 x 4 degrees: a client is at most ~320 km from its cell's centre, which widens the scan
# by that much (a few more candidates looked at), and a cell, built for the first client of its area
# by sorting the fleet (~0.2 ms for 1,000), serves a wide area: 2,000 random client addresses fall
# into ~240 of them (~380 at 2 degrees).
CELL_DEGREES = 4.0
MAX_CELLS = 2048  # each holds one float and one index per located broadcaster (~10 KB per 1,000)
# Rounding in the distance computations must never cut a candidate that belongs in the answer.
SLACK_KM = 1.0

@dataclass(frozen=True, slots=True)
class _Cell:
    centre: tuple[float, float]
    distances: array  # km from the centre, ascending
    names: tuple[str, ...]  # the broadcaster at the same position
    order: tuple[int, ...]  # its position in the index's own lists


class NearbyIndex:
    """Located broadcasters in distance order from any cell of the globe, built lazily per cell."""

    def __init__(
        self, broadcasters: Sequence[Broadcaster], *, cell_degrees: float = CELL_DEGREES, max_cells: int = MAX_CELLS
    ) -> None:
        """Only names and coordinates are kept: the index stays valid until someone moves."""
        located = [b for b in broadcasters if b.point is not None]
        self._names = tuple(b.name for b in located)
        self._vectors = [_unit_vector(*b.point) for b in located if b.point is not None]
        self._unlocated = tuple(b.name for b in broadcasters if b.point is None)
        self._cell_degrees = cell_degrees
        self._cells: LRUCache[tuple[int, int], _Cell] = LRUCache(maxsize=max_cells)
        # name -> (the value, whether its report was fresh, its load penalty floor), for one policy.
        self._floors: dict[str, tuple[Broadcaster, bool, float]] = {}
        self._floor_policy: RankingPolicy | None = None
        # What `scores` makes of each broadcaster before reservations, as of the last `judge_all` and
        # `judge`: its load penalty floor, or infinity when it cannot take new streams; located
        # ones by their position in the index's own lists, unlocated ones by theirs.
        self._slots = {name: k for k, name in enumerate(self._names)}
        self._unlocated_slots = {name: k for k, name in enumerate(self._unlocated)}
        self._judged = array("d", [math.inf]) * len(self._names)
        self._judged_unlocated = array("d", [math.inf]) * len(self._unlocated)

    def shortlist(
        self,
        by_name: Mapping[str, Broadcaster],
        client: Location,
        now: float,
        limit: int,
        policy: RankingPolicy,
        reservations: Reservations,
    ) -> list[Broadcaster]:
        """Every eligible broadcaster that `rank` could put among its first `limit` for `client`.

        `by_name` holds the current values of the broadcasters this index was built from.
        """
        def eligible(b: Broadcaster) -> bool:
            return can_take_new_streams(b, now, policy.liveness)

        unlocated = [b for b in (by_name[name] for name in self._unlocated) if eligible(b)]
        cell = self._cell(client)
        r = distance_km(client.point, cell.centre) + SLACK_KM
        distances, names = cell.distances, cell.names
        count = len(names)

        # 1. The first `limit` eligible ones, going on until nobody unvisited can be nearer than the
        #    nearest found: then the distance penalties ranking computes are the true ones.
        first: list[Broadcaster] = []
        nearest: Broadcaster | None = None
        nearest_km = math.inf
        i = 0
        while i < count and (len(first) < limit or distances[i] - r <= nearest_km):
            b = by_name[names[i]]
            i += 1
            if eligible(b):
                first.append(b)
                assert b.point is not None
                km = distance_km(client.point, b.point)
                if km < nearest_km:
                    nearest, nearest_km = b, km

        # 2. Anyone unvisited costs at least (distance - nearest). Keep the `limit` lowest costs
        #    seen; once the next one's least possible cost exceeds the highest of them by more than
        #    the margin within which leaders are tied, neither it nor anyone farther can be answered.
        scored = _scored(first + unlocated, client, now, policy, reservations)
        best = _Lowest(limit, [cost for cost, _ in scored])
        batch: list[Broadcaster] = []
        # Nobody's load penalty is below its floor (its load now, before reservations): most far
        # candidates are passed without being scored. A floor changes only with a new report or
        # when the report goes stale, so it is kept per value and freshness.
        if policy is not self._floor_policy:
            self._floors, self._floor_policy = {}, policy
        floors = self._floors
        margin = policy.tie_epsilon_km + SLACK_KM
        bound = best.highest + margin + nearest_km  # compared with (distance from the centre - r)
        while i < count:
            least_km = distances[i] - r  # the least distance from the client this one can be
            if least_km > bound:
                break
            b = by_name[names[i]]
            i += 1
            fresh = load_report_fresh(b, now, policy)
            known = floors.get(b.name)
            if known is None or known[0] is not b or known[1] is not fresh:
                known = floors[b.name] = (b, fresh, load_penalty_floor_km(b, now, policy))
            if least_km + known[2] <= bound:
                batch.append(b)  # scores() leaves out the ineligible
                if len(batch) == _BATCH:
                    # Scored with the nearest beside them, so that their distance penalties are true.
                    more = _scored(batch, client, now, policy, reservations, besides=nearest)
                    scored += more
                    best.add([cost for cost, _ in more])
                    bound = best.highest + margin + nearest_km
                    batch = []
        if batch:  # the scan stopped before the batch was full
            scored += _scored(batch, client, now, policy, reservations, besides=nearest)

        # 3. What can be answered, and the nearest (it fixes every distance penalty; when it costs
        #    more than the cut, at least `limit` others rank before it anyway).
        cut = best.highest + policy.tie_epsilon_km + SLACK_KM
        pool = [b for cost, b in scored if cost <= cut]
        if nearest is not None and all(b is not nearest for b in pool):
            pool.append(nearest)
        return pool

    def _cell(self, client: Location) -> _Cell:
        size = self._cell_degrees
        key = (math.floor(client.latitude / size), math.floor(client.longitude / size))
        cell = self._cells.get(key)
        if cell is None:
            centre = (min(90.0, (key[0] + 0.5) * size), min(180.0, (key[1] + 0.5) * size))
            # Sorted by the cosine of the angle to the centre (three products each, no trigonometry:
            # a cell is built for every new place a client comes from).
            cx, cy, cz = _unit_vector(*centre)
            cosines = [x * cx + y * cy + z * cz for x, y, z in self._vectors]
            order = sorted(range(len(cosines)), key=cosines.__getitem__, reverse=True)
            ordered = list(map(cosines.__getitem__, order))
            # Rounding can put a cosine just past +-1, only at the ends of the order.
            i = 0
            while i < len(ordered) and ordered[i] > 1.0:
                ordered[i], i = 1.0, i + 1
            i = len(ordered) - 1
            while i >= 0 and ordered[i] < -1.0:
                ordered[i], i = -1.0, i - 1
            distances = array("d", map(EARTH_RADIUS_KM.__mul__, map(math.acos, ordered)))
            cell = _Cell(centre, distances, tuple(map(self._names.__getitem__, order)), tuple(order))
            self._cells[key] = cell
        return cell

    def judge_all(self, by_name: Mapping[str, Broadcaster], now: float, policy: RankingPolicy) -> bool:
        """Judge every broadcaster of the index afresh at `now` (`by_name`: their current values), for
        `ranked_at`: after anything that only time changes (scoring_stable_until). Whether any
        judgment changed."""
        judged = array("d", (_judged(by_name[name], now, policy) for name in self._names))
        judged_unlocated = array("d", (_judged(by_name[name], now, policy) for name in self._unlocated))
        changed = judged != self._judged or judged_unlocated != self._judged_unlocated
        self._judged, self._judged_unlocated = judged, judged_unlocated
        return changed

    def judge(self, b: Broadcaster, now: float, policy: RankingPolicy) -> None:
        """Judge `b` afresh at `now`: a new value of a broadcaster in the index, in the same place."""
        k = self._slots.get(b.name)
        if k is not None:
            self._judged[k] = _judged(b, now, policy)
        elif (k := self._unlocated_slots.get(b.name)) is not None:
            self._judged_unlocated[k] = _judged(b, now, policy)

    def judged(self, name: str) -> float:
        """`name`'s load penalty floor as last judged; infinity when it cannot take new streams (or
        is not in the index)."""
        k = self._slots.get(name)
        if k is not None:
            return self._judged[k]
        k = self._unlocated_slots.get(name)
        return math.inf if k is None else self._judged_unlocated[k]

    def km_from(self, centre: Location) -> Callable[[str], float | None]:
        """A name's km from `centre` measured as `ranked_at` measures it (by unit vectors); None when
        it is not located (or not in the index)."""
        cx, cy, cz = _unit_vector(*centre.point)
        slots, vectors = self._slots, self._vectors

        def km(name: str) -> float | None:
            k = slots.get(name)
            if k is None:
                return None
            x, y, z = vectors[k]
            return EARTH_RADIUS_KM * math.acos(_clamped(x * cx + y * cy + z * cz))

        return km

    def ranked_at(
        self, by_name: Mapping[str, Broadcaster], centre: Location, limit: int, policy: RankingPolicy
    ) -> Ranked:
        """What `scores(everyone, centre, now, policy)` gives, without reservations, for every eligible
        broadcaster among its first `limit` or within tie_epsilon_km of the `limit`-th: (cost,
        distance penalty, load penalty, broadcaster), by cost then name; all of them if fewer are
        eligible. With the distance from the centre to the nearest eligible located one. `now` is the time of the last `judge_all`, provided every broadcaster with a new
        value since was given to `judge` and nothing that only time changes is due.

        As `shortlist`, scanning nearest first, but without scoring: each broadcaster's eligibility
        and load penalty floor (its whole load penalty without reservations) are the ones judged,
        and only those that can be answered or be the nearest are measured, by unit vectors (within
        a metre of the haversine `scores` uses: nothing next to the tie margin, nor to the ~8 km by
        which a client is away from the centre a cell is ranked at).
        """
        inf = math.inf
        unlocated = [(floor, by_name[name]) for name, floor in zip(self._unlocated, self._judged_unlocated)
                     if floor != inf]
        cell = self._cell(centre)
        r = distance_km(centre.point, cell.centre) + SLACK_KM
        cx, cy, cz = _unit_vector(*centre.point)
        distances, order, vectors, judged = cell.distances, cell.order, self._vectors, self._judged
        acos = math.acos
        # Located ones measured: (km from the centre by unit vectors, floor, position in the index).
        visited: list[tuple[float, float, int]] = []
        heap: list[float] = []  # the `limit` lowest km + floor of located ones, negated
        bound = inf  # the highest of them plus the tie margin, once there are `limit`
        nearest_km = inf
        margin = policy.tie_epsilon_km + SLACK_KM
        for distance, k in zip(distances, order):
            # Anyone from here on is at least this far: once that exceeds the `limit`-th lowest
            # cost (absolute: before subtracting the nearest, which is common to all) by more than
            # the tie margin, nobody farther can be answered nor be nearer than the nearest found.
            least_km = distance - r
            if least_km > bound:
                break
            floor = judged[k]
            if floor == inf or (least_km > nearest_km and least_km + floor > bound):
                continue  # cannot take new streams, or neither answered nor the nearest: not measured
            x, y, z = vectors[k]
            cosine = x * cx + y * cy + z * cz
            if cosine > 1.0:  # rounding, at the very ends
                cosine = 1.0
            elif cosine < -1.0:
                cosine = -1.0
            km = EARTH_RADIUS_KM * acos(cosine)
            if km < nearest_km:
                nearest_km = km
            cost = km + floor
            visited.append((km, floor, k))
            if len(heap) < limit:
                heapq.heappush(heap, -cost)
                if len(heap) == limit:
                    bound = margin - heap[0]
            elif cost < bound - margin:
                heapq.heapreplace(heap, -cost)
                bound = margin - heap[0]
        names = self._names
        costed: list[tuple[float, float, float, Broadcaster]] = [
            (km - nearest_km + floor, km - nearest_km, floor, by_name[names[k]]) for km, floor, k in visited
        ]
        costed += [(policy.unlocated_penalty_km + floor, policy.unlocated_penalty_km, floor, b)
                   for floor, b in unlocated]
        if len(costed) > limit:
            keep = sorted([t[0] for t in costed])[limit - 1] + policy.tie_epsilon_km
            costed = [t for t in costed if t[0] <= keep]
        costed.sort(key=lambda t: (t[0], t[3].name))
        return Ranked(costed, nearest_km)


class Ranked(NamedTuple):
    costed: list[tuple[float, float, float, Broadcaster]]
    nearest_km: float  # infinity when no eligible broadcaster is located


def _judged(b: Broadcaster, now: float, policy: RankingPolicy) -> float:
    """`b`'s load penalty floor at `now`, or infinity when it cannot take new streams."""
    return load_penalty_floor_km(b, now, policy) if can_take_new_streams(b, now, policy.liveness) else math.inf


def _clamped(cosine: float) -> float:
    """A cosine that rounding put just past +-1 (at the very ends), back on it."""
    return 1.0 if cosine > 1.0 else -1.0 if cosine < -1.0 else cosine


def _unit_vector(latitude: float, longitude: float) -> tuple[float, float, float]:
    lat, lon = math.radians(latitude), math.radians(longitude)
    return (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))


# Costs are computed a few candidates at a time: the bound tightens as better ones are found, and a
# call to scores() has a fixed overhead.
_BATCH = 8


def _scored(
    batch: list[Broadcaster],
    client: Location,
    now: float,
    policy: RankingPolicy,
    reservations: Reservations,
    besides: Broadcaster | None = None,
) -> list[tuple[float, Broadcaster]]:
    together = batch if besides is None else [*batch, besides]
    return [
        (s.cost_km, s.broadcaster)
        for s in scores(together, client, now, policy, reservations)
        if s.broadcaster is not besides
    ]


class _Lowest:
    """The `size` lowest costs seen (a max-heap of negated costs)."""

    def __init__(self, size: int, costs: list[float]) -> None:
        self._size = size
        self._heap: list[float] = []
        self.add(costs)

    def add(self, costs: list[float]) -> None:
        for cost in costs:
            if len(self._heap) < self._size:
                heapq.heappush(self._heap, -cost)
            elif cost < -self._heap[0]:
                heapq.heapreplace(self._heap, -cost)

    @property
    def highest(self) -> float:
        return -self._heap[0] if len(self._heap) == self._size else math.inf
