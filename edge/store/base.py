"""The storage interfaces the service is written against; each backend implements them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from broadcaster_registry.storage import RegistryStore
from edge.streams.model import Stream


class StoreUnavailable(Exception):
    """The backend cannot be reached or answered with an error; the API answers 503."""


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

    async def delete(self, stream_id: str) -> bool: ...


class PlaylistStateStore(Protocol):
    """Published playlist states (opaque bytes, see edge.playlists.codec) per (stream, rendition)."""

    async def load(self, stream_id: str) -> dict[str, bytes]: ...

    async def save(self, stream_id: str, states: dict[str, bytes]) -> None: ...

    async def delete(self, stream_id: str) -> None: ...


class Store(Protocol):
    """One backend: every repository the service uses, opened and closed together."""

    streams: StreamStore
    registry: RegistryStore
    playlists: PlaylistStateStore

    async def open(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""
        ...

    async def close(self) -> None: ...

    def describe(self) -> str:
        """Where the data lives, for logs (no credentials)."""
        ...
