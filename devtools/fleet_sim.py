"""A fleet of edge nodes simulated on one in-memory store and an injected clock: each node announces
itself and takes turns at its streams' leases exactly as a feed does (edge.fleet.take_turn), so the
sharing protocol can be run through joins, deaths and departures in milliseconds. Used by the
property tests (tests/test_fleet.py) and by the distribution report:

    .venv/bin/python -m devtools.fleet_sim [--nodes 3] [--streams 300]
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field

from edge.fleet import GRACE_ROUNDS, GROUP, MISSED_ANNOUNCEMENTS, Seat, owner, take_turn
from edge.settings import Settings
from edge.store.leases import LocalLeases


@dataclass(frozen=True)
class Periods:
    tick: float = 0.1  # the simulation's step, in seconds
    round_ticks: int = 2  # each node's round (its poll interval) every this many ticks
    interval_ticks: int = 5  # each node announces itself every this many ticks
    lease_ttl: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> Periods:
        """The periods a fleet runs with these settings (the defaults: poll 1 s, announcements
        every 2 s, leases of 3 s), on a tick of half a poll."""
        tick = settings.poll_interval / 2
        return cls(tick=tick, round_ticks=2, interval_ticks=max(1, round(settings.fleet_interval / tick)),
                   lease_ttl=settings.lease_ttl)

    @property
    def grace(self) -> float:
        return GRACE_ROUNDS * self.round_ticks * self.tick

    @property
    def membership_ttl(self) -> float:
        return MISSED_ANNOUNCEMENTS * self.interval_ticks * self.tick


@dataclass
class Node:
    name: str
    phase: int  # its rounds and announcements are offset from the others' by this many ticks
    interested: frozenset[str]  # the streams its players ask it for (it has feeds for these)
    live: frozenset[str] = frozenset()
    seats: dict[str, Seat] = field(default_factory=dict)


class Fleet:
    def __init__(self, periods: Periods = Periods()) -> None:
        self.periods = periods
        self.now = 1000.0
        self.leases = LocalLeases(clock=lambda: self.now)
        self.nodes: dict[str, Node] = {}
        self.tick = 0

    async def step(self) -> None:
        p = self.periods
        self.tick += 1
        self.now += p.tick
        for node in list(self.nodes.values()):
            if (self.tick + node.phase) % p.interval_ticks == 0:
                node.live = await self.leases.announce(GROUP, node.name, p.membership_ttl)
            if (self.tick + node.phase) % p.round_ticks == 0:
                for key in node.interested:
                    seat = node.seats.setdefault(key, Seat())
                    await take_turn(self.leases, key, node.name, node.live, seat, self.now, p.lease_ttl, p.grace)

    def pollers(self, key: str) -> list[str]:
        return [n.name for n in self.nodes.values() if key in n.seats and n.seats[key].holding]

    def settled(self, keys: list[str]) -> bool:
        """Every key polled by its owner among the live nodes (those that want it)."""
        alive = list(self.nodes)
        return all(self.pollers(key) == [owner(key, alive)] for key in keys)

    async def join(self, name: str, phase: int, interested: frozenset[str]) -> None:
        node = Node(name, phase, interested)
        node.live = await self.leases.announce(GROUP, name, self.periods.membership_ttl)
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


async def distribution(nodes: int, streams: int, periods: Periods = Periods()) -> str:
    """A table: streams polled per node with `nodes` nodes, then once one more has joined, and how
    long (simulated) each state took to settle."""
    keys = [f"feed:stream-{i:04d}" for i in range(streams)]
    fleet = Fleet(periods)
    rows: list[tuple[str, Counter[str], float, int]] = []
    for i in range(nodes):
        await fleet.join(f"node-{i + 1}", i % periods.round_ticks, frozenset(keys))

    async def settle() -> float:
        started = fleet.now
        while not fleet.settled(keys):
            await fleet.step()
            if fleet.now - started > 600:
                raise RuntimeError("the fleet did not settle within 600 simulated seconds")
        return fleet.now - started

    took = await settle()
    before = {key: fleet.pollers(key)[0] for key in keys}
    rows.append((f"{nodes} nodes", Counter(before.values()), took, 0))
    await fleet.join(f"node-{nodes + 1}", nodes % periods.round_ticks, frozenset(keys))
    took = await settle()
    after = {key: fleet.pollers(key)[0] for key in keys}
    rows.append((f"node-{nodes + 1} joined", Counter(after.values()), took, sum(before[k] != after[k] for k in keys)))
    names = sorted(fleet.nodes)
    lines = [
        "| fleet | " + " | ".join(names) + " | settled after (s) | streams moved |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for label, counts, seconds, moved in rows:
        cells = [str(counts[n]) if n in counts or label != rows[0][0] else "" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seconds:.1f} | {moved} |")
    return (f"{streams} streams, every node with players for all of them; poll every "
            f"{periods.round_ticks * periods.tick:g} s, announcements every {periods.interval_ticks * periods.tick:g} s, "
            f"lease TTL {periods.lease_ttl:g} s (simulated time)\n\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--streams", type=int, default=300)
    args = parser.parse_args()
    if not 1 <= args.nodes <= 50 or not 1 <= args.streams <= 100_000:
        parser.error("--nodes must be 1-50 and --streams 1-100000")
    print(asyncio.run(distribution(args.nodes, args.streams, Periods.of(Settings()))))


if __name__ == "__main__":
    main()
