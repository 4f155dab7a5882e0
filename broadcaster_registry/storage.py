"""Where the registry lives: the interface every backend implements, its error, and
MemoryRegistryStore, the in-memory registry that the memory and SQLite backends share (edge's
SQLite store persists every change it makes; edge's Redis store implements the interface on its own).

Each write method applies one of the pure steps (model.from_registration, liveness.record_probe,
liveness.record_fetch) to the stored value inside the backend's own atomic unit (a transaction, a
Lua script), not as get-then-put by the caller: with several edge nodes sharing Redis, a heartbeat
and a fetch result arriving together must not overwrite each other.

Time, the same in every backend: a self-registered broadcaster silent for liveness.forget_after
is forgotten with everything that names it (liveness.should_forget), and a carrier hint lapses
CARRIER_HINT_TTL_S after it was last noted. Until then stores keep every broadcaster, alive or not:
whether one is handed out or merged is for liveness.py to decide with the time.

A backend that cannot be reached raises RegistryUnavailable; the service then answers from the last
list it read (degraded mode), which is why list_all returns whole values.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Protocol, runtime_checkable

from broadcaster_registry.credentials import Credential
from broadcaster_registry.liveness import (
    DEFAULT_LIVENESS,
    LivenessPolicy,
    forget_after,
    record_fetch,
    record_probe,
    should_forget,
)
from broadcaster_registry.model import (
    Broadcaster,
    Registration,
    Source,
    State,
    from_registration,
)

# A carrier hint is the only record that a static broadcaster (which reports no streams) carries a
# stream; renewed at every hint, and feeds re-adopt carriers by discovery after it lapses.
CARRIER_HINT_TTL_S = 24 * 3600.0


class RegistryUnavailable(Exception):
    """The registry's backend cannot be reached or answered with an error."""


def worth_writing(before: Broadcaster | None, after: Broadcaster | None) -> bool:
    """The one rule for skipping writes: a step that changed nothing (most fetch results, probes of
    a healthy node) is not written. Heartbeats are written regardless, by the backends, since they
    renew the registration itself."""
    return after is not None and after != before


@runtime_checkable
class RegistryStore(Protocol):
    async def upsert(
        self, name: str, registration: Registration, now: float, source: Source = "self"
    ) -> Broadcaster:
        """Register or heartbeat `name` (model.from_registration on the stored value, if any; a name
        forgotten meanwhile starts afresh).

        Whether a self-registration may replace a static entry of the same name is the caller's
        decision, taken before calling this."""
        ...

    async def get(self, name: str) -> Broadcaster | None: ...

    async def list_all(self) -> list[Broadcaster]:
        """Every broadcaster, by name."""
        ...

    def revision(self) -> object | None:
        """A value that changes whenever list_all's answer may have (None: unknown without asking
        the backend), so that a reader can skip reading an unchanged registry."""
        ...

    def list_now(self) -> list[Broadcaster] | None:
        """What list_all answers, when that needs no wait (the registry is held here and nothing has
        to be written or read elsewhere first); None otherwise."""
        ...

    async def set_state(self, name: str, state: State) -> Broadcaster | None:
        """Drain ("draining") or reactivate ("active"); None if unknown."""
        ...

    async def delete(self, name: str) -> bool:
        """Forget `name` and its carrier hints; False if it was unknown."""
        ...

    async def record_probe(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        """Apply liveness.record_probe; None if unknown (deleted while the probe ran)."""
        ...

    async def record_fetch(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        """Apply liveness.record_fetch with the whole registry as the fleet; None if unknown.
        A result that changes nothing is not written (worth_writing)."""
        ...

    async def note_carrier(self, stream_id: str, name: str, now: float) -> None:
        """Note that `name` may carry segments of `stream_id` before (or without: static nodes)
        ever reporting it: it was handed the stream, the hook saw it ingest, or discovery found it.
        The hint lapses CARRIER_HINT_TTL_S after it was last noted (on the backend's clock)."""
        ...

    async def carrying(self, stream_id: str) -> list[Broadcaster]:
        """Broadcasters that report `stream_id` or have a live carrier hint for it, by name."""
        ...

    async def carrier_hints(self, stream_id: str) -> frozenset[str]:
        """Names with a live carrier hint for `stream_id`."""
        ...

    async def forget_stream(self, stream_id: str) -> None:
        """Drop the carrier hints of a deleted stream (an ended stream's hints stay until they
        lapse: its feed still reads its carriers to close its playlists)."""
        ...


@runtime_checkable
class CredentialStore(Protocol):
    """Broadcaster credentials (credentials.py), kept apart from the registry: they are issued
    before a broadcaster first registers and outlive its registration expiring or being forgotten."""

    async def add(self, credential: Credential) -> None: ...

    async def get(self, credential_id: str) -> Credential | None: ...

    async def list_for(self, name: str) -> list[Credential]:
        """The credentials bound to `name`, oldest first."""
        ...

    async def revoke(self, name: str, credential_id: str) -> bool:
        """Delete the credential if it is bound to `name`; False if there is no such credential."""
        ...


class RegistryRows(Protocol):
    """Where MemoryRegistryStore persists its changes (nowhere, or edge's SQLite file). Each method
    must hand its work to its writer before it first awaits, so writes keep the order they were made."""

    async def save(self, b: Broadcaster, *, afresh: bool = False) -> None:
        """Write `b`; `afresh`: its name was forgotten just before, so drop its hints first."""
        ...

    async def forget(self, names: Iterable[str]) -> None:
        """Delete these broadcasters and their carrier hints."""
        ...

    async def save_hint(self, stream_id: str, name: str, at: float) -> None: ...

    async def drop_hints(self, stream_id: str, names: Iterable[str] | None = None) -> None:
        """Delete the stream's hints for `names` (None: all of them)."""
        ...


class _NoRows:
    async def save(self, b: Broadcaster, *, afresh: bool = False) -> None:
        pass

    async def forget(self, names: Iterable[str]) -> None:
        pass

    async def save_hint(self, stream_id: str, name: str, at: float) -> None:
        pass

    async def drop_hints(self, stream_id: str, names: Iterable[str] | None = None) -> None:
        pass


NO_ROWS: RegistryRows = _NoRows()


class MemoryRegistryStore:
    """RegistryStore in memory, the whole registry of one node: alone for tests and single-process
    use (lost at exit), or mirroring edge's SQLite file, which `rows` then writes every change to.

    Reads cost no I/O (the ranking reads the whole fleet on every GET /api/broadcaster). A write
    computes the new value here and updates memory before awaiting `rows`, so writes to one name
    apply in order; under asyncio each method's memory step is atomic (no await inside it).
    `clock` is the time the forgetting and the lapsing of hints run on (wall-clock seconds, the
    same clock callers take `now` from).
    """

    def __init__(
        self,
        broadcasters: Iterable[Broadcaster] = (),
        *,
        liveness: LivenessPolicy = DEFAULT_LIVENESS,
        hint_ttl_s: float = CARRIER_HINT_TTL_S,
        clock: Callable[[], float] = time.time,
        rows: RegistryRows = NO_ROWS,
    ) -> None:
        self.liveness = liveness
        self.hint_ttl_s = hint_ttl_s
        self.clock = clock
        self.rows = rows
        self._broadcasters: dict[str, Broadcaster] = {}
        self._sorted: list[Broadcaster] | None = None  # list_all's answer until the next change
        self._position: dict[str, int] = {}  # each name's place in it
        self._revision = 0
        self._hints: dict[str, dict[str, float]] = {}  # stream id -> name -> when noted
        # (when it may be forgotten, name), one per self-registered name: a name that heartbeat
        # meanwhile is put back at its new time when it comes up, so finding the silent ones needs
        # no scan of the fleet.
        self._silence: list[tuple[float, str]] = []
        self._scheduled: set[str] = set()
        self.replace_all(broadcasters, ())

    def replace_all(self, broadcasters: Iterable[Broadcaster], hints: Iterable[tuple[str, str, float]]) -> None:
        """Start over from these values (what a backend file holds)."""
        self._broadcasters = {}
        self._silence, self._scheduled = [], set()
        for b in broadcasters:
            self._put(b)
        self._hints = {}
        for stream_id, name, at in hints:
            self._hints.setdefault(stream_id, {})[name] = at

    def replace_some(
        self,
        broadcasters: Mapping[str, Broadcaster | None],
        their_hints: Iterable[tuple[str, str, float]],
        stream_hints: Mapping[str, Mapping[str, float]],
    ) -> None:
        """Bring some names and streams to what a backend file holds now (another process changed
        them): each of `broadcasters` (None: gone) with its hints (`their_hints`: (stream id, name,
        when) of those names), and every hint of each stream in `stream_hints`."""
        for name, b in broadcasters.items():
            if b is None:
                self._forget([name])
                continue
            self._put(b)
            for hinted in self._hints.values():
                hinted.pop(name, None)
        for stream_id, name, at in their_hints:
            self._hints.setdefault(stream_id, {})[name] = at
        for stream_id, hinted in stream_hints.items():
            self._hints[stream_id] = dict(hinted)
        self._hints = {s: hinted for s, hinted in self._hints.items() if hinted}

    # --- memory steps (no awaits) ---

    def _put(self, b: Broadcaster) -> Broadcaster:
        known = b.name in self._broadcasters
        self._broadcasters[b.name] = b
        if known and self._sorted is not None:  # a heartbeat: the same name in the same place
            self._sorted[self._position[b.name]] = b
        else:
            self._sorted = None
        self._revision += 1
        if b.source == "self" and b.name not in self._scheduled:
            self._schedule(b)
        return b

    def _schedule(self, b: Broadcaster) -> None:
        heapq.heappush(self._silence, (b.last_heartbeat + forget_after(self.liveness), b.name))
        self._scheduled.add(b.name)

    def _forget(self, names: list[str]) -> list[str]:
        gone = [name for name in names if self._broadcasters.pop(name, None) is not None]
        self._sorted = None
        self._revision += 1
        for hinted in self._hints.values():
            for name in names:
                hinted.pop(name, None)
        self._hints = {s: hinted for s, hinted in self._hints.items() if hinted}
        return gone

    def _silent_ones(self, now: float) -> list[str]:
        """Names silent long enough to be forgotten now."""
        due = []
        while self._silence and self._silence[0][0] < now:
            _, name = heapq.heappop(self._silence)
            self._scheduled.discard(name)
            b = self._broadcasters.get(name)
            if b is None or b.source != "self":
                continue
            if should_forget(b, now, self.liveness):
                due.append(name)
            else:  # it heartbeat since: come back to it at its new time (not before now)
                self._schedule(b)
        return due

    def _current(self, name: str, now: float) -> tuple[Broadcaster | None, list[str]]:
        """The value of `name` unless it is to be forgotten now (then the names to forget)."""
        b = self._broadcasters.get(name)
        if b is not None and should_forget(b, now, self.liveness):
            return None, [name]
        return b, []

    def _live_hints(self, stream_id: str, now: float) -> tuple[dict[str, float], list[str]]:
        hinted = self._hints.get(stream_id, {})
        lapsed = [name for name, at in hinted.items() if now >= at + self.hint_ttl_s]
        for name in lapsed:
            del hinted[name]
        if not hinted:
            self._hints.pop(stream_id, None)
        return hinted, lapsed

    # --- persisted steps ---

    async def _sweep(self, names: list[str]) -> None:
        if names:
            self._forget(names)
            await self.rows.forget(names)

    async def _save(self, b: Broadcaster) -> Broadcaster:
        self._put(b)
        await self.rows.save(b)
        return b

    async def _apply(self, name: str, step: Callable[[Broadcaster], Broadcaster]) -> Broadcaster | None:
        b, forget = self._current(name, self.clock())
        if b is None:
            await self._sweep(forget)
            return None
        updated = step(b)
        return await self._save(updated) if worth_writing(b, updated) else b

    # --- the interface ---

    async def upsert(
        self, name: str, registration: Registration, now: float, source: Source = "self"
    ) -> Broadcaster:
        previous, forget = self._current(name, self.clock())
        if forget:  # back after being forgotten: nothing of before, hints included
            self._forget(forget)
        b = self._put(from_registration(name, registration, now, source=source, previous=previous))
        await self.rows.save(b, afresh=bool(forget))
        return b

    async def get(self, name: str) -> Broadcaster | None:
        b, forget = self._current(name, self.clock())
        await self._sweep(forget)
        return b

    async def list_all(self) -> list[Broadcaster]:
        await self._sweep(self._silent_ones(self.clock()))
        return self._listed()

    def list_now(self) -> list[Broadcaster] | None:
        if self._silence and self._silence[0][0] < self.clock():
            return None  # someone may be silent long enough to be forgotten: list_all writes that first
        return self._listed()

    def _listed(self) -> list[Broadcaster]:
        if self._sorted is None:  # every ranking reads the whole fleet; sort it once per change
            self._sorted = sorted(self._broadcasters.values(), key=lambda b: b.name)
            self._position = {b.name: i for i, b in enumerate(self._sorted)}
        return list(self._sorted)

    def revision(self) -> int | None:
        return self._revision

    async def set_state(self, name: str, state: State) -> Broadcaster | None:
        return await self._apply(name, lambda b: replace(b, state=state))

    async def delete(self, name: str) -> bool:
        known = name in self._broadcasters
        self._forget([name])
        await self.rows.forget([name])
        return known

    async def record_probe(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        return await self._apply(name, lambda b: record_probe(b, ok, now, policy))

    async def record_fetch(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        fleet = self._broadcasters.values()
        return await self._apply(name, lambda b: record_fetch(b, ok, now, policy, fleet))

    async def note_carrier(self, stream_id: str, name: str, now: float) -> None:
        # `now` is the caller's clock; hints lapse on the store's, as Redis's do on Redis's.
        at = self.clock()
        _, lapsed = self._live_hints(stream_id, at)
        self._hints.setdefault(stream_id, {})[name] = at
        if lapsed:
            await self.rows.drop_hints(stream_id, lapsed)
        await self.rows.save_hint(stream_id, name, at)

    async def carrying(self, stream_id: str) -> list[Broadcaster]:
        hinted = await self.carrier_hints(stream_id)
        return [b for b in await self.list_all() if stream_id in b.streams or b.name in hinted]

    async def carrier_hints(self, stream_id: str) -> frozenset[str]:
        hinted, lapsed = self._live_hints(stream_id, self.clock())
        names = frozenset(hinted)
        if lapsed:
            await self.rows.drop_hints(stream_id, lapsed)
        return names

    async def forget_stream(self, stream_id: str) -> None:
        if self._hints.pop(stream_id, None) is not None:
            await self.rows.drop_hints(stream_id)

