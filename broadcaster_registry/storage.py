"""Where the registry lives: the interface every backend implements (SQLite and Redis adapters in
edge/store/), and MemoryRegistryStore, a complete in-process implementation.

Each write method applies one of the pure steps (model.from_registration, liveness.record_probe,
liveness.record_fetch) to the stored value inside the backend's own atomic unit (a transaction, a
Lua script), not as get-then-put by the caller: with several edge nodes sharing Redis, a heartbeat
and a fetch result arriving together must not overwrite each other.

A backend that cannot be reached raises (edge's StoreUnavailable); the service then answers from
the last list it read (degraded mode), which is why list_all returns whole values.

Stores keep every broadcaster, alive or not: whether one is handed out or merged is for
liveness.py to decide with the time, so that the rule lives in one place.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, runtime_checkable

from broadcaster_registry.credentials import Credential
from broadcaster_registry.liveness import LivenessPolicy, record_fetch, record_probe
from broadcaster_registry.model import (
    Broadcaster,
    Registration,
    Source,
    State,
    from_registration,
)


@runtime_checkable
class RegistryStore(Protocol):
    async def upsert(
        self, name: str, registration: Registration, now: float, source: Source = "self"
    ) -> Broadcaster:
        """Register or heartbeat `name` (model.from_registration on the stored value, if any).

        Whether a self-registration may replace a static entry of the same name is the caller's
        decision, taken before calling this."""
        ...

    async def get(self, name: str) -> Broadcaster | None: ...

    async def list_all(self) -> list[Broadcaster]:
        """Every broadcaster, by name."""
        ...

    async def set_state(self, name: str, state: State) -> Broadcaster | None:
        """Drain ("draining") or reactivate ("active"); None if unknown."""
        ...

    async def delete(self, name: str) -> bool:
        """Forget `name` and its hand-outs; False if it was unknown."""
        ...

    async def record_probe(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        """Apply liveness.record_probe; None if unknown (deleted while the probe ran)."""
        ...

    async def record_fetch(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        """Apply liveness.record_fetch with the whole registry as the fleet; None if unknown."""
        ...

    async def note_handout(self, stream_id: str, name: str, now: float) -> None:
        """Remember that `stream_id` was sent to `name`, which may then carry some of its segments
        before (or without: static nodes) ever reporting it."""
        ...

    async def carrying(self, stream_id: str) -> list[Broadcaster]:
        """Broadcasters that reported `stream_id` or were handed it, by name."""
        ...

    async def handed_out(self, stream_id: str) -> frozenset[str]:
        """Names `stream_id` was handed to (or that the hook or discovery found carrying it)."""
        ...

    async def forget_stream(self, stream_id: str) -> None:
        """Drop the hand-outs of a stream that ended or was deleted."""
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


class MemoryRegistryStore:
    """RegistryStore in a dict: for tests and single-process use; lost at exit.

    No locks: every method completes without awaiting, so under asyncio each one is atomic.
    """

    def __init__(self, broadcasters: list[Broadcaster] | None = None) -> None:
        self._broadcasters: dict[str, Broadcaster] = {b.name: b for b in broadcasters or []}
        self._handouts: dict[str, dict[str, float]] = {}  # stream id -> name -> when

    async def upsert(
        self, name: str, registration: Registration, now: float, source: Source = "self"
    ) -> Broadcaster:
        b = from_registration(
            name, registration, now, source=source, previous=self._broadcasters.get(name)
        )
        self._broadcasters[name] = b
        return b

    async def get(self, name: str) -> Broadcaster | None:
        return self._broadcasters.get(name)

    async def list_all(self) -> list[Broadcaster]:
        return sorted(self._broadcasters.values(), key=lambda b: b.name)

    async def set_state(self, name: str, state: State) -> Broadcaster | None:
        b = self._broadcasters.get(name)
        if b is None:
            return None
        b = self._broadcasters[name] = replace(b, state=state)
        return b

    async def delete(self, name: str) -> bool:
        for names in self._handouts.values():
            names.pop(name, None)
        self._handouts = {s: names for s, names in self._handouts.items() if names}
        return self._broadcasters.pop(name, None) is not None

    async def record_probe(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        b = self._broadcasters.get(name)
        if b is None:
            return None
        b = self._broadcasters[name] = record_probe(b, ok, now, policy)
        return b

    async def record_fetch(
        self, name: str, ok: bool, now: float, policy: LivenessPolicy
    ) -> Broadcaster | None:
        b = self._broadcasters.get(name)
        if b is None:
            return None
        fleet = self._broadcasters.values()
        b = self._broadcasters[name] = record_fetch(b, ok, now, policy, fleet)
        return b

    async def note_handout(self, stream_id: str, name: str, now: float) -> None:
        self._handouts.setdefault(stream_id, {})[name] = now

    async def carrying(self, stream_id: str) -> list[Broadcaster]:
        handed = self._handouts.get(stream_id, {})
        return [b for b in await self.list_all() if stream_id in b.streams or b.name in handed]

    async def handed_out(self, stream_id: str) -> frozenset[str]:
        return frozenset(self._handouts.get(stream_id, {}))

    async def forget_stream(self, stream_id: str) -> None:
        self._handouts.pop(stream_id, None)
