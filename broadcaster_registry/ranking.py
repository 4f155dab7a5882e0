"""Which broadcaster should an ingest use? A pure ranking of candidates for a client location.

Every candidate gets one cost in kilometres, so it can be read and compared in one unit:

    cost = distance penalty + load penalty
    distance penalty = km beyond the nearest candidate (catalyst-api: relative to the nearest, so
                       a client far from everything is not penalised for where it is)
    load penalty     = load_weight_km x u / (1 - u), u = predicted utilisation incl. reservations

u / (1 - u) is smooth where catalyst-api has steps, and lands on its thresholds: a node at 50 %
("fair") weighs as much as 1500 km of extra distance (catalyst's first band), one at 85 % ("bad")
as 8500 km (past its second band, +7500 km): a busy node loses to an idle one nearby, and only a
nearly full one sends a client to another continent. Past a knee (95 %) the curve goes on as a
straight line, so overloaded nodes are still ordered by how overloaded they are instead of
dividing by zero.

Candidates whose costs are within `tie_epsilon_km` of the best are shuffled with the given rng
(catalyst-api picks among its top 3), so equal nodes share a burst even before reservations
(MistServer-style, see reservations.py) make the chosen one look busier.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from broadcaster_registry.liveness import (
    DEFAULT_LIVENESS,
    LivenessPolicy,
    can_take_new_streams,
    health_stable_until,
)
from broadcaster_registry.model import Broadcaster, Load
from broadcaster_registry.reservations import NO_RESERVATIONS, Reservations, outstanding
from geo.distance import distance_km
from geo.location import Location


@dataclass(frozen=True, slots=True, kw_only=True)
class RankingPolicy:
    liveness: LivenessPolicy = DEFAULT_LIVENESS
    # Load penalty at 50 % utilisation; the scale that trades load against distance.
    load_weight_km: float = 1500.0
    # Above this utilisation the penalty grows linearly (with the curve's slope at the knee).
    utilisation_knee: float = 0.95
    # A report older than this is ignored (catalyst-api drops stale nodes; a static node that
    # never reports would then never be chosen, so here only its numbers are dropped).
    metrics_max_age_s: float = 30.0
    # Utilisation assumed without a usable report: "fair", so a node known to be idle wins and
    # a node known to be busy loses against one we know nothing about.
    unknown_utilisation: float = 0.5
    # Utilisation one more stream adds when neither capacity nor cpu per stream is known.
    stream_share_if_unknown: float = 0.05
    # A reservation no heartbeat has covered after this long is dropped (the ingest went elsewhere,
    # or the node is static and never heartbeats).
    reservation_max_age_s: float = 30.0
    # Distance penalty of a candidate without coordinates when the client has a location:
    # usable, but behind any located node within this distance.
    unlocated_penalty_km: float = 7500.0
    # Client without a location: candidates in this region go first (no default: load only).
    default_region: str | None = None
    outside_default_region_km: float = 7500.0
    # Costs this close to the best are treated as equal and picked at random.
    tie_epsilon_km: float = 250.0


DEFAULT_RANKING = RankingPolicy()
# A report of more than this many times a node's capacity says no more than "overloaded": each ratio
# is capped, so that every valid report gives a finite cost (1e306 bit/s against a capacity of
# 1 bit/s made it infinite, which the ranking cache's index read as "takes no new streams" while
# exact ranking still ranked the node last).
MAX_UTILISATION = 100.0


@dataclass(frozen=True, slots=True)
class Score:
    """A candidate's cost and how it was reached, for logs and the ops API."""

    broadcaster: Broadcaster
    distance_km: float | None  # to the client; None if either has no location
    distance_penalty_km: float
    utilisation: float  # predicted: reported (or assumed) plus reservations
    load_reported: bool  # False: unknown_utilisation was assumed
    reserved: int
    load_penalty_km: float

    @property
    def cost_km(self) -> float:
        return self.distance_penalty_km + self.load_penalty_km

    def explain(self) -> str:
        """One line, e.g.
        "fra: 635 km away (+0 km), load 50% reported incl. 0 reserved (+1500 km) = 1500 km"."""
        where = (
            "distance unknown" if self.distance_km is None else f"{self.distance_km:.0f} km away"
        )
        load = "reported" if self.load_reported else "assumed"
        return (
            f"{self.broadcaster.name}: {where} (+{self.distance_penalty_km:.0f} km), "
            f"load {self.utilisation:.0%} {load} incl. {self.reserved} reserved "
            f"(+{self.load_penalty_km:.0f} km) = {self.cost_km:.0f} km"
        )


def rank(
    candidates: Iterable[Broadcaster],
    client: Location | None,
    now: float,
    policy: RankingPolicy,
    rng: random.Random,
    reservations: Reservations = NO_RESERVATIONS,
) -> list[Broadcaster]:
    """The candidates that can take new streams now, best first."""
    return [
        s.broadcaster for s in ranked_scores(candidates, client, now, policy, rng, reservations)
    ]


def ranked_scores(
    candidates: Iterable[Broadcaster],
    client: Location | None,
    now: float,
    policy: RankingPolicy,
    rng: random.Random,
    reservations: Reservations = NO_RESERVATIONS,
) -> list[Score]:
    """As `rank`, with each candidate's Score: the leaders (within tie_epsilon_km of the best)
    in random order, then the others by cost."""
    ordered = scores(candidates, client, now, policy, reservations)
    return shuffle_leaders(ordered, [s.cost_km for s in ordered], policy, rng)


T = TypeVar("T")


def leader_count(costs: Sequence[float], policy: RankingPolicy) -> int:
    """How many of `costs` (ascending) are tied with the best: within tie_epsilon_km of it."""
    if not costs:
        return 0
    return bisect.bisect_right(costs, costs[0] + policy.tie_epsilon_km)


def shuffle_leaders(ordered: list[T], costs: Sequence[float], policy: RankingPolicy, rng: random.Random) -> list[T]:
    """`ordered` (by ascending `costs`) with its leaders in random order, the others as they were."""
    tied = leader_count(costs, policy)
    leaders = ordered[:tied]
    rng.shuffle(leaders)
    return leaders + ordered[tied:]


def scores(
    candidates: Iterable[Broadcaster],
    client: Location | None,
    now: float,
    policy: RankingPolicy,
    reservations: Reservations = NO_RESERVATIONS,
) -> list[Score]:
    """Every candidate that can take new streams, scored, by cost then name (deterministic)."""
    eligible = [b for b in candidates if can_take_new_streams(b, now, policy.liveness)]
    distances = _distances(eligible, client, policy)
    scored = []
    for b, (km, distance_penalty) in zip(eligible, distances, strict=True):
        reserved = outstanding(reservations, b, now, policy.reservation_max_age_s)
        u, reported = _utilisation(b, reserved, now, policy)
        scored.append(
            Score(
                broadcaster=b,
                distance_km=km,
                distance_penalty_km=distance_penalty,
                utilisation=u,
                load_reported=reported,
                reserved=reserved,
                load_penalty_km=load_penalty_of(u, policy),
            )
        )
    scored.sort(key=lambda s: (s.cost_km, s.broadcaster.name))
    return scored


def load_report_fresh(b: Broadcaster, now: float, policy: RankingPolicy) -> bool:
    """Is `b`'s last load report recent enough to be believed at `now`?"""
    return now - b.last_heartbeat <= policy.metrics_max_age_s


def load_penalty_floor_km(b: Broadcaster, now: float, policy: RankingPolicy) -> float:
    """The load penalty `scores` gives `b` at `now` before any reservation (they only add to it):
    a lower bound that lets a caller skip candidates that cannot win. It changes only with a new
    report or when load_report_fresh(b, now, policy) does."""
    return load_penalty_km(b, 0, now, policy)


def load_penalty_km(b: Broadcaster, reserved: int, now: float, policy: RankingPolicy) -> float:
    """The load penalty `scores` gives `b` at `now` with `reserved` streams reserved on it."""
    u, _ = _utilisation(b, reserved, now, policy)
    return load_penalty_of(u, policy)


def scoring_stable_until(b: Broadcaster, now: float, policy: RankingPolicy) -> float:
    """The earliest time after `now` at which `scores` may judge `b` otherwise without anything
    being written about it (its heartbeat or load report going stale, an ejection ending);
    infinity when nothing is due. Reservations aside: they are the caller's."""
    stale = b.last_heartbeat + policy.metrics_max_age_s
    due = health_stable_until(b, now, policy.liveness)
    return min(due, stale) if stale >= now else due


def _distances(
    eligible: list[Broadcaster], client: Location | None, policy: RankingPolicy
) -> list[tuple[float | None, float]]:
    """(km to the client or None, distance penalty) per candidate."""
    if client is None:
        region = policy.default_region
        return [
            (
                None,
                0.0 if region is None or b.region == region else policy.outside_default_region_km,
            )
            for b in eligible
        ]
    km = [None if b.point is None else distance_km(client.point, b.point) for b in eligible]
    nearest = min((d for d in km if d is not None), default=0.0)
    return [(d, policy.unlocated_penalty_km if d is None else d - nearest) for d in km]


def _utilisation(
    b: Broadcaster, reserved: int, now: float, policy: RankingPolicy
) -> tuple[float, bool]:
    """(predicted utilisation, whether it rests on a fresh report)."""
    base, share, reported = load_model(b, load_report_fresh(b, now, policy), policy)
    return base + reserved * share, reported


def load_model(b: Broadcaster, fresh: bool, policy: RankingPolicy) -> tuple[float, float, bool]:
    """(`b`'s utilisation before reservations, the utilisation each reserved stream adds, whether
    the first rests on a report), its report believed or not (`fresh`, load_report_fresh): the
    predicted utilisation with n reserved is `base + n * share`, which only a new value of `b` or
    the report going stale changes.

    The busiest resource decides: streams against capacity, cpu, bandwidth against its capacity.
    """
    load = b.load if fresh else Load()
    ratios = []
    if load.active_streams is not None and b.capacity:
        ratios.append(load.active_streams / b.capacity)
    if load.cpu is not None:
        ratios.append(load.cpu)
    if load.bandwidth_bps is not None and load.bandwidth_capacity_bps:
        ratios.append(load.bandwidth_bps / load.bandwidth_capacity_bps)
    base = min(max(ratios, default=policy.unknown_utilisation), MAX_UTILISATION)
    return base, _stream_share(b, load, policy), bool(ratios)


def load_penalty_of(u: float, policy: RankingPolicy) -> float:
    """The load penalty of a predicted utilisation `u` (load_model)."""
    return policy.load_weight_km * _load_curve(u, policy.utilisation_knee)


def _stream_share(b: Broadcaster, load: Load, policy: RankingPolicy) -> float:
    """The utilisation one more stream is predicted to add on `b`."""
    if b.capacity:
        return 1 / b.capacity
    if load.cpu is not None and load.active_streams:
        return load.cpu / load.active_streams
    return policy.stream_share_if_unknown


def _load_curve(u: float, knee: float) -> float:
    """u / (1 - u) up to the knee, then the tangent line at the knee: continuous, increasing."""
    if u <= knee:
        return u / (1 - u)
    return knee / (1 - knee) + (u - knee) / (1 - knee) ** 2
