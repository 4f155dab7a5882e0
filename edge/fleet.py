"""Streams shared evenly across the live edge nodes (and worker processes) of a store.

Every node announces itself in the store (Leases.announce) every `interval` seconds and is live
while its announcement lasts (3 intervals). Each stream has one owner among the live nodes: the
highest rendezvous hash of (node, stream) (`owner`), so every node computes the same owner from
the same membership, the streams spread evenly, and a node joining or leaving moves only the
streams it gains or loses. The lease of a stream still decides who polls it (one holder at a time);
ownership only decides who should hold it (`decide`):

- the owner takes the lease when it is free, and otherwise asks for it (a `want:` lease);
- a holder that is not the owner renews, and hands the lease over (releases it at a round
  boundary) once the owner has asked: the owner takes it at its next round and first syncs the
  stored state (edge.playlists.feed), so players see no seam;
- a node that is not the owner takes a lease that has stayed free `grace` seconds: the owner may
  have no player asking it for the stream (then it has no feed and never asks), and a stream must
  never go unpolled.

Pure functions here, and the one shell that keeps this node's view of the membership fresh.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from dataclasses import dataclass
from typing import Iterable

from edge.store.base import StoreUnavailable
from edge.store.leases import Leases
from edge.tasks import cancel

log = logging.getLogger("edge.fleet")

GROUP = "edge-nodes"
MISSED_ANNOUNCEMENTS = 3  # a node is forgotten after this many announcement periods of silence
# A lease left free this many polls by its owner (no player asks that node for the stream) is
# taken by another node with players: one poll is the owner's first chance.
GRACE_ROUNDS = 2


def _weight(node: str, key: str) -> bytes:
    return hashlib.blake2b(f"{node}\n{key}".encode(), digest_size=8).digest()


def owner(key: str, nodes: Iterable[str]) -> str | None:
    """The node that should poll `key`: the highest rendezvous (HRW) weight, ties by name. None
    without nodes."""
    return max(nodes, key=lambda node: (_weight(node, key), node), default=None)


class Step(enum.Enum):
    RENEW = "renew"  # hold on to the lease (take it if free)
    CLAIM = "claim"  # the owner: take it if free, otherwise ask its holder for it
    HAND_OVER = "hand_over"  # release it: its owner asked
    TAKE = "take"  # a non-owner takes a lease left free too long
    WAIT = "wait"  # follow the store; see whether the lease is free


def decide(me: str, live: frozenset[str], key: str, holding: bool, asked_by: str | None,
           free_for: float | None, grace: float, lapsed_from: str | None = None) -> Step:
    """What this node does with `key`'s lease at a round boundary.

    `live`: the nodes it knows live (itself included once it announced); `holding`: it holds the
    lease; `asked_by`: who asked for it (a holder's question); `free_for`: how long the lease has
    been seen free by this node, None if it was held at the last look; `lapsed_from`: who held it
    when this node last saw it held, if it is free now.

    A lease that lapsed in its holder's hands (the holder died, or stopped polling) goes at once to
    the owner among the other nodes: the membership still counts a dead holder live for a few
    announcement periods, and waiting out the grace meanwhile would stall the stream's players."""
    should = owner(key, live | {me})
    if holding:
        return Step.HAND_OVER if asked_by is not None and asked_by == should != me else Step.RENEW
    if should == me:
        return Step.CLAIM
    if free_for is not None and lapsed_from is not None and owner(key, (live - {lapsed_from}) | {me}) == me:
        return Step.CLAIM
    if free_for is not None and free_for >= grace:
        return Step.TAKE
    return Step.WAIT


@dataclass
class Seat:
    """What one node remembers of one key's lease between its rounds."""

    holding: bool = False
    asking: bool = False  # it asked the holder for the lease (a `want:` lease of its own)
    free_since: float | None = None  # when it first saw the lease free, while it waits
    last_holder: str | None = None  # who held it at this node's last look, while it waits


def want_key(key: str) -> str:
    return f"want:{key}"


async def take_turn(leases: Leases, key: str, me: str, live: frozenset[str], seat: Seat, now: float,
                    ttl: float, grace: float) -> bool:
    """One round boundary of `me` for `key`'s lease, as `decide` says: whether `me` holds it now.
    StoreUnavailable goes to the caller (it then holds nothing it can rely on)."""
    should = owner(key, live | {me})
    asked = await leases.holder(want_key(key)) if seat.holding and should != me else None
    lapsed_from = None
    if not seat.holding and should != me:  # a waiting node looks at the lease before deciding
        holder = await leases.holder(key)
        if holder is None:
            seat.free_since = now if seat.free_since is None else seat.free_since
            lapsed_from = seat.last_holder
        else:
            seat.free_since, seat.last_holder = None, holder
    free_for = None if seat.free_since is None else now - seat.free_since
    step = decide(me, live, key, seat.holding, asked, free_for, grace, lapsed_from)
    if step is Step.HAND_OVER:
        seat.holding, seat.free_since = False, None
        await leases.release(key, me)
        log.info("lease handed over to its owner", extra={"fields": {"key": key, "to": asked}})
        return False
    if step is Step.WAIT:
        seat.holding = False
        return False
    seat.holding = await leases.acquire(key, me, ttl)
    seat.free_since, seat.last_holder = None, None
    if step is Step.CLAIM and not seat.holding:
        seat.asking = await leases.acquire(want_key(key), me, ttl) or seat.asking
    elif seat.holding and seat.asking:
        seat.asking = False
        await leases.release(want_key(key), me)
    return seat.holding


class Membership:
    """This node's announcements and its view of the live nodes, refreshed every `interval` seconds
    in one background task; `live` is read by every feed without a store call."""

    def __init__(self, leases: Leases, node: str, interval: float) -> None:
        self.leases = leases
        self.node = node
        self.interval = interval
        self.live: frozenset[str] = frozenset({node})
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def ttl(self) -> float:
        return MISSED_ANNOUNCEMENTS * self.interval

    async def announce(self) -> None:
        try:
            self.live = await self.leases.announce(GROUP, self.node, self.ttl) | {self.node}
        except StoreUnavailable as exc:
            if not self._failing:
                log.warning("cannot announce this node to the fleet: %s", exc)
            self._failing = True
            return
        self._failing = False

    async def start(self) -> None:
        await self.announce()
        self._task = asyncio.create_task(self._run(), name="fleet-membership")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.announce()
            except Exception:  # the task must outlive any failure, including our bugs
                log.exception("fleet membership: announcement failed")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        try:
            await self.leases.leave(GROUP, self.node)  # the others take its streams at once
        except Exception:  # it lapses by itself
            log.warning("could not leave the fleet's membership; it lapses by itself")
