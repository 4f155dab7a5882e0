"""The storage interfaces the service is written against; each backend implements them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from broadcaster_registry.storage import CredentialStore, RegistryStore, RegistryUnavailable
from edge.store.leases import Leases
from edge.streams.model import Stream


class StoreUnavailable(RegistryUnavailable):
    """The backend cannot be reached or answered with an error; the API answers 503. A registry
    error too, so the registry's callers need not know which backend they use."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, newest first, and the cursor of the next page (None at the end)."""

    items: tuple[Stream, ...]
    next_cursor: str | None


class StreamStore(Protocol):
    async def create(self, stream: Stream) -> None: ...

    async def get(self, stream_id: str) -> Stream | None: ...

    async def list(self, limit: int, cursor: str | None) -> Page:
        """Newest first; `cursor` is opaque, from a previous Page (ValueError if malformed)."""
        ...

    async def end(self, stream_id: str, ended_at: int) -> Stream | None:
        """Mark ended (idempotent: the first end time is kept); None if unknown."""
        ...

    async def update(self, stream_id: str, change: Callable[[Stream], Stream]) -> Stream | None:
        """Apply `change` (pure; may run more than once) to the stored stream atomically, write the
        result if it differs, and return it; None if unknown."""
        ...

    async def delete(self, stream_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class StoredStates:
    """Every rendition's published state of one stream, and the revision they were saved at."""

    revision: int
    states: dict[str, bytes]


class PlaylistStateStore(Protocol):
    """Published playlist states (opaque bytes, see edge.playlists.codec) per (stream, rendition).

    Saves are compare-and-set on a per-stream revision: a node that lost its lease while it was
    merging cannot overwrite what the new lease holder published (MSN -> URI is forever).
    """

    async def load(self, stream_id: str) -> StoredStates: ...

    async def revision(self, stream_id: str) -> int:
        """The revision only (0 before the first save): the cheap check of a follower."""
        ...

    def revision_now(self, stream_id: str) -> int | None:
        """What `revision` answers, when that needs no wait (a read of a local file); None
        otherwise, or when it cannot be read (then `revision` says why)."""
        ...

    async def save(self, stream_id: str, states: dict[str, bytes], expected_revision: int) -> int | None:
        """Write the given renditions' states if the stored revision is still `expected_revision`;
        the new revision, or None when someone else saved meanwhile (nothing written)."""
        ...

    async def delete(self, stream_id: str) -> None: ...


class Store(Protocol):
    """One backend: every repository the service uses, opened and closed together."""

    streams: StreamStore
    registry: RegistryStore
    credentials: CredentialStore
    playlists: PlaylistStateStore
    leases: Leases
    shared: bool  # several edge nodes may write it (players must then see the newest revision)
    # How many calls the backend has answered so far (a count that only grows): a node that lost
    # the store sees from it whether the store answered anyone since (edge.playlists.feed).
    answered: int

    async def open(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""
        ...

    async def close(self) -> None: ...

    def describe(self) -> str:
        """Where the data lives, for logs (no credentials)."""
        ...
