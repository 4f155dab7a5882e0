"""Streams shared across the fleet (edge.fleet): the rendezvous owner spreads keys evenly and moves
only what a joining or leaving node gains or loses; and the lease protocol, run by simulated nodes
on one store with an injected clock under arbitrary joins, deaths and departures, never has two
pollers, never leaves a stream unpolled for long, and settles on the owners."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings, strategies as st

from devtools.fleet_sim import Fleet, Periods
from edge.fleet import Step, decide, owner

KEYS = [f"feed:stream-{i}" for i in range(3000)]
node_names = st.lists(st.text("abcdef0123456789", min_size=4, max_size=12), min_size=1, max_size=8, unique=True)


@settings(max_examples=30, deadline=None)
@given(node_names)
def test_keys_spread_evenly_over_the_nodes(nodes: list[str]) -> None:
    counts = Counter(owner(key, nodes) for key in KEYS)
    mean = len(KEYS) / len(nodes)
    assert set(counts) == set(nodes)
    assert all(abs(count - mean) <= 0.3 * mean for count in counts.values()), counts


@settings(max_examples=30, deadline=None)
@given(node_names, st.text("ghij", min_size=1, max_size=6))
def test_a_joining_node_takes_keys_only_for_itself_and_a_leaving_one_gives_only_its_own(
    nodes: list[str], newcomer: str
) -> None:
    before = {key: owner(key, nodes) for key in KEYS[:500]}
    after = {key: owner(key, [*nodes, newcomer]) for key in KEYS[:500]}
    assert all(after[k] in (before[k], newcomer) for k in before)
    assert after == {key: owner(key, [*nodes, newcomer][::-1]) for key in KEYS[:500]}  # order does not matter
    leaver = nodes[0]
    rest = nodes[1:]
    left = {key: owner(key, rest) for key in KEYS[:500]}
    assert all(left[k] == before[k] for k in before if before[k] != leaver)
    assert owner("k", []) is None


# decide(), as a table a reader can check: (me, live, holding, asked_by, free_for) -> step
ME, OTHER = "me", "other"
KEY_OWNED_BY_ME = next(k for k in KEYS if owner(k, [ME, OTHER]) == ME)
KEY_OWNED_BY_OTHER = next(k for k in KEYS if owner(k, [ME, OTHER]) == OTHER)


def test_decide_table() -> None:
    live = frozenset({ME, OTHER})
    cases = [
        (KEY_OWNED_BY_ME, True, None, None, Step.RENEW),
        (KEY_OWNED_BY_ME, True, OTHER, None, Step.RENEW),  # a non-owner's request is not heeded
        (KEY_OWNED_BY_OTHER, True, None, None, Step.RENEW),  # the owner has not asked (no players there?)
        (KEY_OWNED_BY_OTHER, True, OTHER, None, Step.HAND_OVER),
        (KEY_OWNED_BY_ME, False, None, None, Step.CLAIM),
        (KEY_OWNED_BY_OTHER, False, None, None, Step.WAIT),  # held, or not seen free yet
        (KEY_OWNED_BY_OTHER, False, None, 0.1, Step.WAIT),  # free, but the owner has a grace
        (KEY_OWNED_BY_OTHER, False, None, 0.4, Step.TAKE),  # free too long: never unpolled
    ]
    for key, holding, asked, free_for, step in cases:
        assert decide(ME, live, key, holding, asked, free_for, grace=0.4) is step, (key, holding, asked, free_for)
    assert decide(ME, frozenset(), KEY_OWNED_BY_OTHER, False, None, None, 0.4) is Step.CLAIM  # alone


# --- the protocol, simulated -----------------------------------------------------------------

PERIODS = Periods(tick=0.1, round_ticks=2, interval_ticks=5, lease_ttl=1.0)
STREAMS = [f"feed:s{i}" for i in range(12)]
# A lease lapses lease_ttl after its dead holder's last renewal; the owner takes it at its next
# round, or, while the others still count a dead owner live, whoever sees it free for the grace.
LONGEST_UNPOLLED = PERIODS.lease_ttl + PERIODS.grace + 3 * PERIODS.round_ticks * PERIODS.tick


class CheckedFleet(Fleet):
    """After every step: never two pollers of a stream, never one wanted by a node unpolled long."""

    def __init__(self) -> None:
        super().__init__(PERIODS)
        self.unpolled_since: dict[str, float] = {}

    async def step(self) -> None:
        await super().step()
        for key in STREAMS:
            pollers = self.pollers(key)
            assert len(pollers) <= 1, f"{key} polled by {pollers}"
            wanted = any(key in n.interested for n in self.nodes.values())
            if pollers or not wanted:
                self.unpolled_since.pop(key, None)
                continue
            since = self.unpolled_since.setdefault(key, self.now)
            assert self.now - since <= LONGEST_UNPOLLED + 1e-9, f"{key} unpolled for {self.now - since:.1f} s"


events = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from(["join", "join", "kill", "leave"]), st.integers(0, 5),
              st.integers(0, 1), st.booleans()),
    min_size=1, max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(events)
def test_never_two_pollers_never_unpolled_for_long_and_settling_on_the_owners(script: list) -> None:
    async def run() -> None:
        fleet = CheckedFleet()
        await fleet.join("n0", 0, frozenset(STREAMS))
        names = iter(f"n{i}" for i in range(1, 100))
        for wait, action, which, phase, partial in script:
            for _ in range(wait):
                await fleet.step()
            alive = sorted(fleet.nodes)
            if action == "join":
                # Some nodes have players for half the streams only (they never claim the others).
                interested = frozenset(STREAMS[::2]) if partial else frozenset(STREAMS)
                await fleet.join(next(names), phase, interested)
            elif len(alive) > 1:
                victim = alive[which % len(alive)]
                if action == "leave":
                    await fleet.leave(victim)
                else:
                    fleet.kill(victim)
        # Quiet: memberships settle, dead leases lapse, owners ask and get their streams.
        for _ in range(int((PERIODS.membership_ttl + 2 * PERIODS.lease_ttl) / PERIODS.tick) + 10):
            await fleet.step()
        alive = sorted(fleet.nodes)
        for key in STREAMS:
            willing = [n for n in alive if key in fleet.nodes[n].interested]
            if not willing:
                continue
            should = owner(key, alive)
            expected = {should} if should in willing else set(willing)
            assert set(fleet.pollers(key)) <= expected and fleet.pollers(key), (key, fleet.pollers(key), should)

    asyncio.run(run())


def test_decide_passes_a_lapsed_lease_at_once_to_the_owner_among_the_others() -> None:
    third = "node-c"
    live = frozenset({ME, OTHER, third})
    # Keys owned by OTHER, whose owner among the rest is ME, and one whose next owner is `third`.
    mine_next = next(k for k in KEYS if owner(k, live) == OTHER and owner(k, live - {OTHER}) == ME)
    theirs_next = next(k for k in KEYS if owner(k, live) == OTHER and owner(k, live - {OTHER}) == third)
    # Lapsed in the owner's hands (it died; the membership does not know yet): the next owner claims.
    assert decide(ME, live, mine_next, False, None, 0.0, grace=0.4, lapsed_from=OTHER) is Step.CLAIM
    assert decide(ME, live, theirs_next, False, None, 0.0, grace=0.4, lapsed_from=OTHER) is Step.WAIT
    # Released by a non-owner (a hand-over to OTHER, or a holder without players): OTHER's to take.
    assert decide(ME, live, mine_next, False, None, 0.0, grace=0.4, lapsed_from=third) is Step.WAIT
    # Still held, or never seen held: the grace rule as before.
    assert decide(ME, live, mine_next, False, None, None, grace=0.4, lapsed_from=None) is Step.WAIT
    assert decide(ME, live, theirs_next, False, None, 0.4, grace=0.4, lapsed_from=None) is Step.TAKE


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2), st.lists(st.integers(0, 4), min_size=3, max_size=3))
def test_a_dead_nodes_streams_are_taken_within_a_lease_and_a_round(victim_index: int, phases: list[int]) -> None:
    """Every node has players for every stream: when one dies, each of its streams goes unpolled
    no longer than its lease lasts plus one round of the next owner, while the membership still
    counts the dead node live (no grace is waited)."""
    bound = PERIODS.lease_ttl + PERIODS.round_ticks * PERIODS.tick + PERIODS.tick

    async def run() -> None:
        fleet = Fleet(PERIODS)
        for i, phase in enumerate(phases):
            await fleet.join(f"n{i}", phase, frozenset(STREAMS))
        for _ in range(int((PERIODS.membership_ttl + 2 * PERIODS.lease_ttl) / PERIODS.tick) + 10):
            await fleet.step()
        assert fleet.settled(STREAMS)
        victim = sorted(fleet.nodes)[victim_index]
        orphans = [key for key in STREAMS if fleet.pollers(key) == [victim]]
        fleet.kill(victim)
        killed_at, longest = fleet.now, 0.0
        unpolled = set(orphans)
        while unpolled and fleet.now - killed_at < 10 * bound:
            await fleet.step()
            for key in [k for k in unpolled if fleet.pollers(k)]:
                unpolled.discard(key)
                longest = max(longest, fleet.now - killed_at)
        assert not unpolled, unpolled
        assert longest <= bound + 1e-9, (longest, bound)

    asyncio.run(run())
