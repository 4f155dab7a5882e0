"""Leases: "at most one holder of this key at a time", for one poller per stream (its feed polls
every rendition together; the key is the stream's), and the membership of the nodes that share
them (edge.fleet).

A lease is held by an owner until it expires or is released; the holder extends it by acquiring it
again before it runs out, so a holder that dies loses it within one TTL. `LocalLeases` serves one
node in memory; the Redis backend (edge.store.redis.RedisLeases) serves a fleet with the same
interface.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol


class Leases(Protocol):
    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        """Take `key` for `ttl_s` seconds, or extend it if `owner` already holds it; False while
        another owner holds it."""
        ...

    async def release(self, key: str, owner: str) -> None:
        """Give `key` up, if `owner` holds it (a lease lost meanwhile stays with its new holder)."""
        ...

    async def holder(self, key: str) -> str | None:
        """Who holds `key` now, or None."""
        ...

    async def announce(self, group: str, member: str, ttl_s: float) -> frozenset[str]:
        """Count `member` in `group` for `ttl_s` seconds from now; the group's live members (the
        membership of the fleet, edge.fleet)."""
        ...

    async def leave(self, group: str, member: str) -> None:
        """No longer count `member` in `group`."""
        ...


@dataclass(frozen=True, slots=True)
class _Held:
    owner: str
    until: float


class LocalLeases:
    """Leases in a dict, for a single node. No locks: no method awaits, so each one is atomic
    under asyncio. `clock` is monotonic seconds (a parameter, so tests can move time)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._held: dict[str, _Held] = {}
        self._members: dict[str, dict[str, float]] = {}  # group -> member -> until

    def _current(self, key: str, now: float) -> _Held | None:
        held = self._held.get(key)
        if held is not None and held.until <= now:  # expired, as a Redis PX key at its deadline
            del self._held[key]
            return None
        return held

    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        now = self.clock()
        held = self._current(key, now)
        if held is not None and held.owner != owner:
            return False
        self._held[key] = _Held(owner, now + ttl_s)
        return True

    async def release(self, key: str, owner: str) -> None:
        held = self._current(key, self.clock())
        if held is not None and held.owner == owner:
            del self._held[key]

    async def holder(self, key: str) -> str | None:
        held = self._current(key, self.clock())
        return held.owner if held else None

    async def announce(self, group: str, member: str, ttl_s: float) -> frozenset[str]:
        now = self.clock()
        members = self._members.setdefault(group, {})
        members[member] = now + ttl_s
        for gone in [m for m, until in members.items() if until <= now]:
            del members[gone]
        return frozenset(members)

    async def leave(self, group: str, member: str) -> None:
        self._members.get(group, {}).pop(member, None)
