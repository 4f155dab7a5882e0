"""Streams shared across the fleet (edge.fleet): the rendezvous owner spreads keys evenly and moves
only what a joining or leaving node gains or loses; and the lease protocol, run by simulated nodes
on one store with an injected clock under arbitrary joins, deaths and departures, never has two
pollers, never leaves a stream unpolled for long, and settles on the owners."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given, settings, strategies as st

from edge.fleet import GROUP, MISSED_ANNOUNCEMENTS, Seat, Step, decide, owner, take_turn
from edge.store.leases import LocalLeases

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

TICK = 0.1
ROUND_TICKS = 2  # each node's round every 0.2 s (the poll interval)
LEASE_TTL = 1.0
INTERVAL_TICKS = 5  # membership announced every 0.5 s, forgotten after 1.5 s
GRACE = 2 * ROUND_TICKS * TICK
STREAMS = [f"feed:s{i}" for i in range(12)]
# A lease lapses LEASE_TTL after its dead holder's last renewal; the owner takes it at its next
# round, or, while the others still count a dead owner live, whoever sees it free for GRACE.
LONGEST_UNPOLLED = LEASE_TTL + GRACE + 3 * ROUND_TICKS * TICK


@dataclass
class Node:
    name: str
    phase: int
    interested: frozenset[str]  # the streams its players ask it for (it has feeds for these)
    live: frozenset[str] = frozenset()
    seats: dict[str, Seat] = field(default_factory=dict)


class Fleet:
    def __init__(self) -> None:
        self.now = 1000.0
        self.leases = LocalLeases(clock=lambda: self.now)
        self.nodes: dict[str, Node] = {}
        self.tick = 0
        self.unpolled_since: dict[str, float] = {}

    async def step(self) -> None:
        self.tick += 1
        self.now += TICK
        for node in list(self.nodes.values()):
            if (self.tick + node.phase) % INTERVAL_TICKS == 0:
                node.live = await self.leases.announce(GROUP, node.name, MISSED_ANNOUNCEMENTS * INTERVAL_TICKS * TICK)
            if (self.tick + node.phase) % ROUND_TICKS == 0:
                for key in node.interested:
                    seat = node.seats.setdefault(key, Seat())
                    await take_turn(self.leases, key, node.name, node.live, seat, self.now, LEASE_TTL, GRACE)
        self.check()

    def pollers(self, key: str) -> list[str]:
        return [n.name for n in self.nodes.values() if key in n.seats and n.seats[key].holding]

    def check(self) -> None:
        for key in STREAMS:
            pollers = self.pollers(key)
            assert len(pollers) <= 1, f"{key} polled by {pollers}"
            wanted = any(key in n.interested for n in self.nodes.values())
            if pollers or not wanted:
                self.unpolled_since.pop(key, None)
                continue
            since = self.unpolled_since.setdefault(key, self.now)
            assert self.now - since <= LONGEST_UNPOLLED + 1e-9, f"{key} unpolled for {self.now - since:.1f} s"

    async def join(self, name: str, phase: int, interested: frozenset[str]) -> None:
        node = Node(name, phase, interested)
        node.live = await self.leases.announce(GROUP, name, MISSED_ANNOUNCEMENTS * INTERVAL_TICKS * TICK)
        self.nodes[name] = node

    async def leave(self, name: str) -> None:
        """A graceful stop: its feeds release their leases, it leaves the membership."""
        node = self.nodes.pop(name)
        for key, seat in node.seats.items():
            if seat.holding:
                await self.leases.release(key, name)
        await self.leases.leave(GROUP, name)

    def kill(self, name: str) -> None:
        del self.nodes[name]  # no goodbye: its leases and its announcement lapse


events = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from(["join", "join", "kill", "leave"]), st.integers(0, 5),
              st.integers(0, 1), st.booleans()),
    min_size=1, max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(events)
def test_never_two_pollers_never_unpolled_for_long_and_settling_on_the_owners(script: list) -> None:
    async def run() -> None:
        fleet = Fleet()
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
                await (fleet.leave(victim) if action == "leave" else asyncio.sleep(0, fleet.kill(victim)))
        # Quiet: memberships settle, dead leases lapse, owners ask and get their streams.
        for _ in range(int((MISSED_ANNOUNCEMENTS * INTERVAL_TICKS * TICK + 2 * LEASE_TTL) / TICK) + 10):
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
