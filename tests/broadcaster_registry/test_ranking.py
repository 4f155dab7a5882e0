"""Ranking: which broadcaster an ingest is sent to, as tables a reader can check against a map."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster_registry.liveness import can_take_new_streams, record_probe
from broadcaster_registry.model import Broadcaster, EjectionState, Load
from broadcaster_registry.ranking import RankingPolicy, rank, ranked_scores, scores
from broadcaster_registry.reservations import Reservations, reserve, settle
from geo.location import Location

from .builders import (
    AMSTERDAM,
    ASHBURN,
    FRANKFURT,
    LONDON,
    MELBOURNE,
    NOW,
    SAN_DIEGO,
    SINGAPORE,
    node,
)

POLICY = RankingPolicy()
FLEET = [
    node("fra", FRANKFURT, cpu=0.3),
    node("ash", ASHBURN, cpu=0.3),
    node("sin", SINGAPORE, cpu=0.3),
]


def _probed_down(b: Broadcaster) -> Broadcaster:
    for _ in range(3):
        b = record_probe(b, False, NOW - 5)
    return b


def _ejected(b: Broadcaster) -> Broadcaster:
    return dataclasses.replace(b, ejection=EjectionState(times_ejected=1, ejected_until=NOW + 10))


# (case, client, candidates, expected start of the ranking)
CASES = [
    ("London: Frankfurt, then Ashburn, then Singapore", LONDON, FLEET, ["fra", "ash", "sin"]),
    ("San Diego: Ashburn, then Frankfurt", SAN_DIEGO, FLEET, ["ash", "fra", "sin"]),
    # Frankfurt and Ashburn are 26 km apart as seen from Melbourne: a tie, either may be second.
    ("Melbourne: Singapore", MELBOURNE, FLEET, ["sin"]),
    (
        "overloaded nearest (Amsterdam 97%) loses to a near one with headroom",
        LONDON,
        [
            node("ams", AMSTERDAM, cpu=0.97),
            node("fra", FRANKFURT, cpu=0.2),
            node("ash", ASHBURN, cpu=0.0),
        ],
        ["fra", "ash", "ams"],
    ),
    (
        "a fair load (60%) does not send London across the Atlantic",
        LONDON,
        [node("fra", FRANKFURT, cpu=0.6), node("ash", ASHBURN, cpu=0.0)],
        ["fra", "ash"],
    ),
    (
        "a full node (97%) does",
        LONDON,
        [node("fra", FRANKFURT, cpu=0.97), node("ash", ASHBURN, cpu=0.0)],
        ["ash", "fra"],
    ),
    (
        "streams against capacity count as load (9 of 10)",
        LONDON,
        [
            node("ams", AMSTERDAM, active=9, capacity=10),
            node("fra", FRANKFURT, active=1, capacity=10),
        ],
        ["fra", "ams"],
    ),
    (
        "the busiest resource decides: few streams but cpu 95%",
        LONDON,
        [node("ams", AMSTERDAM, cpu=0.95, active=1, capacity=10), node("fra", FRANKFURT, cpu=0.3)],
        ["fra", "ams"],
    ),
    (
        "a draining node never appears, even the nearest",
        LONDON,
        [node("fra", FRANKFURT, state="draining"), node("ash", ASHBURN)],
        ["ash"],
    ),
    (
        "an expired node never appears (heartbeat 31 s ago, ttl 30 s)",
        LONDON,
        [node("fra", FRANKFURT, heartbeat_age=31), node("sin", SINGAPORE)],
        ["sin"],
    ),
    (
        "a static node is not expired by missing heartbeats",
        LONDON,
        [node("fra", FRANKFURT, source="static", heartbeat_age=86_400), node("sin", SINGAPORE)],
        ["fra", "sin"],
    ),
    (
        "probed down and ejected nodes never appear",
        LONDON,
        [
            _probed_down(node("fra", FRANKFURT)),
            _ejected(node("ams", AMSTERDAM)),
            node("sin", SINGAPORE),
        ],
        ["sin"],
    ),
    (
        "a node without coordinates goes behind located ones within 7500 km",
        LONDON,
        [
            node("nowhere", None, cpu=0.0),
            node("fra", FRANKFURT, cpu=0.3),
            node("sin", SINGAPORE, cpu=0.3),
        ],
        ["fra", "nowhere", "sin"],
    ),
    (
        "a known idle node beats one that reports nothing (assumed 50%)",
        LONDON,
        [node("ams", AMSTERDAM), node("fra", FRANKFURT, cpu=0.1)],
        ["fra", "ams"],
    ),
    ("no candidates, no answer", LONDON, [], []),
]


@pytest.mark.parametrize(
    "client, candidates, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_ranking(client: Location, candidates: list[Broadcaster], expected: list[str]) -> None:
    ranked = [b.name for b in rank(candidates, client, NOW, POLICY, random.Random(7))]
    assert ranked[: len(expected)] == expected


NO_LOCATION_FLEET = [
    node("fra", FRANKFURT, region="eu", cpu=0.4),
    node("ash", ASHBURN, region="us", cpu=0.1),
    node("sin", SINGAPORE, region="ap", cpu=0.2),
]

# (case, default region, expected ranking) for a client whose location is unknown
NO_LOCATION_CASES = [
    ("default region first, despite more load", "eu", ["fra", "ash", "sin"]),
    ("another default region", "ap", ["sin", "ash", "fra"]),
    ("no default region: load only", None, ["ash", "sin", "fra"]),
]


@pytest.mark.parametrize(
    "default_region, expected",
    [c[1:] for c in NO_LOCATION_CASES],
    ids=[c[0] for c in NO_LOCATION_CASES],
)
def test_client_without_location(default_region: str | None, expected: list[str]) -> None:
    policy = RankingPolicy(default_region=default_region)
    ranked = rank(NO_LOCATION_FLEET, None, NOW, policy, random.Random(7))
    assert [b.name for b in ranked] == expected


def test_stale_load_report_is_ignored() -> None:
    """A report older than metrics_max_age_s counts as unknown (50%), not as the 10% it said."""
    policy = RankingPolicy(metrics_max_age_s=10)
    stale_idle = node("ams", AMSTERDAM, cpu=0.1, heartbeat_age=20)
    fresh_busier = node("fra", FRANKFURT, cpu=0.3, heartbeat_age=1)
    assert [
        b.name for b in rank([stale_idle, fresh_busier], LONDON, NOW, policy, random.Random(1))
    ] == [
        "fra",
        "ams",
    ]


# Three equal nodes in one place; each takes 10 streams and carries 2.
EQUAL = [node(n, FRANKFURT, active=2, capacity=10) for n in ("fra-1", "fra-2", "fra-3")]


def _burst(
    candidates: list[Broadcaster], policy: RankingPolicy, seed: int, *, reserving: bool
) -> Counter[str]:
    rng = random.Random(seed)
    reservations = Reservations()
    chosen: Counter[str] = Counter()
    for i in range(10):
        now = NOW + i * 0.01  # a burst: no heartbeat in between
        best = rank(candidates, LONDON, now, policy, rng, reservations)[0]
        chosen[best.name] += 1
        if reserving:
            reservations = reserve(reservations, best.name, now)
    return chosen


@pytest.mark.parametrize("seed", range(5))
def test_a_burst_spreads_over_equal_nodes(seed: int) -> None:
    # Even with no random tie-break at all, reservations alone spread the burst evenly.
    for policy in (POLICY, RankingPolicy(tie_epsilon_km=0)):
        assert sorted(_burst(EQUAL, policy, seed, reserving=True).values()) == [3, 3, 4]


def test_tied_leaders_are_picked_at_random() -> None:
    firsts = {rank(EQUAL, LONDON, NOW, POLICY, random.Random(seed))[0].name for seed in range(20)}
    assert firsts == {"fra-1", "fra-2", "fra-3"}


def test_reservations_end_at_the_next_heartbeat() -> None:
    fra = node("fra", FRANKFURT, active=5, capacity=10, heartbeat_age=5)
    reservations = reserve(reserve(Reservations(), "fra", NOW - 2), "fra", NOW - 1)
    (before,) = scores([fra], LONDON, NOW, POLICY, reservations)
    assert before.reserved == 2
    assert before.utilisation == pytest.approx(0.7)

    heartbeated = dataclasses.replace(fra, last_heartbeat=NOW)  # its report now includes them
    (after,) = scores([heartbeated], LONDON, NOW, POLICY, reservations)
    assert after.reserved == 0
    assert after.utilisation == pytest.approx(0.5)
    assert settle(reservations, [heartbeated], NOW, POLICY.reservation_max_age_s) == Reservations()
    assert settle(reservations, [fra], NOW, POLICY.reservation_max_age_s) == reservations


def test_reservations_on_static_nodes_age_out() -> None:
    static = node("fra", FRANKFURT, source="static", heartbeat_age=3600)
    reservations = reserve(Reservations(), "fra", NOW)
    assert [s.reserved for s in scores([static], LONDON, NOW + 30, POLICY, reservations)] == [1]
    assert [s.reserved for s in scores([static], LONDON, NOW + 31, POLICY, reservations)] == [0]


def test_explain_names_every_term() -> None:
    (score,) = scores([node("fra", FRANKFURT, cpu=0.5)], LONDON, NOW, POLICY)
    assert score.explain() == (
        "fra: 635 km away (+0 km), load 50% reported incl. 0 reserved (+1500 km) = 1500 km"
    )


def test_overload_keeps_ordering_past_the_knee() -> None:
    more = node("a", FRANKFURT, cpu=1.0)
    less = node("b", FRANKFURT, cpu=0.97)
    ranked = ranked_scores([more, less], LONDON, NOW, POLICY, random.Random(1))
    assert [s.broadcaster.name for s in ranked] == ["b", "a"]
    assert ranked[0].cost_km < ranked[1].cost_km < float("inf")


def test_an_absurd_load_report_ranks_the_node_last_at_a_finite_cost() -> None:
    # Valid input (any finite number > 0): 1e306 bit/s against a capacity of 1 bit/s.
    absurd = dataclasses.replace(node("a", FRANKFURT), load=Load(bandwidth_bps=1e306, bandwidth_capacity_bps=1.0))
    busy = node("b", FRANKFURT, cpu=1.0)
    ranked = ranked_scores([absurd, busy], LONDON, NOW, POLICY, random.Random(1))
    assert [s.broadcaster.name for s in ranked] == ["b", "a"]
    assert math.isfinite(ranked[-1].cost_km)


# Property: whatever the fleet, the ranking is exactly the eligible candidates, each once.

points = st.one_of(
    st.none(),
    st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
)
fractions = st.one_of(st.none(), st.floats(0, 1))


@st.composite
def broadcasters(draw: st.DrawFn, name: str) -> Broadcaster:
    point = draw(points)
    return Broadcaster(
        name=name,
        address=f"https://{name}.example.net",
        region=draw(st.sampled_from([None, "eu", "us"])),
        latitude=None if point is None else point[0],
        longitude=None if point is None else point[1],
        capacity=draw(st.one_of(st.none(), st.integers(1, 100))),
        load=Load(
            active_streams=draw(st.one_of(st.none(), st.integers(0, 200))),
            cpu=draw(fractions),
            # Any valid report, absurd ones included (the API takes any finite number > 0).
            bandwidth_bps=draw(st.one_of(st.none(), st.floats(0, 1e10), st.floats(0, allow_infinity=False))),
            bandwidth_capacity_bps=draw(st.one_of(st.none(), st.floats(1, 1e10),
                                                  st.floats(0, allow_infinity=False, exclude_min=True))),
        ),
        state=draw(st.sampled_from(["active", "draining"])),
        source=draw(st.sampled_from(["self", "static"])),
        last_heartbeat=NOW - draw(st.floats(0, 60)),
        registered_at=NOW - 3600,
        ejection=EjectionState(ejected_until=draw(st.sampled_from([None, NOW - 1, NOW + 1]))),
    )


@st.composite
def fleets(draw: st.DrawFn) -> list[Broadcaster]:
    names = draw(st.lists(st.sampled_from([f"b{i}" for i in range(12)]), unique=True, max_size=12))
    return [draw(broadcasters(n)) for n in names]


clients = st.one_of(st.none(), st.builds(Location, st.floats(-90, 90), st.floats(-180, 180)))


@settings(max_examples=100, deadline=None)
@given(
    fleet=fleets(),
    client=clients,
    default_region=st.sampled_from([None, "eu"]),
    seed=st.integers(0, 2**32 - 1),
    handed=st.lists(st.sampled_from([f"b{i}" for i in range(12)]), max_size=20),
)
def test_rank_is_a_permutation_of_the_eligible(
    fleet: list[Broadcaster],
    client: Location | None,
    default_region: str | None,
    seed: int,
    handed: list[str],
) -> None:
    policy = RankingPolicy(default_region=default_region)
    reservations = Reservations()
    for name in handed:
        reservations = reserve(reservations, name, NOW - 1)
    ranked = ranked_scores(fleet, client, NOW, policy, random.Random(seed), reservations)

    eligible = sorted(b.name for b in fleet if can_take_new_streams(b, NOW, policy.liveness))
    assert sorted(s.broadcaster.name for s in ranked) == eligible
    assert all(math.isfinite(s.cost_km) for s in ranked)  # every eligible node is ranked, by a real cost
    if ranked:
        # The first is always one of the best, within the tie margin.
        assert ranked[0].cost_km <= min(s.cost_km for s in ranked) + policy.tie_epsilon_km
