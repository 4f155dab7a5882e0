"""The versions a feed serves, one per rendition, and the one wait primitive per (rendition,
version) that blocking playlist reloads share: a future resolved when the next version is adopted.

However many requests are blocked on a rendition, a new version costs one future resolution; each
blocked request costs one waiter and one timer (`asyncio.wait`), freed when it is answered. Nothing
polls.
"""

from __future__ import annotations

import asyncio
from typing import Generic, Iterable, Mapping, TypeVar

V = TypeVar("V")


class Served(dict[str, V], Generic[V]):
    """rendition -> the version served. Written only through `update` and `clear` (as the feed
    does), each of which wakes whoever waits on the renditions it touched."""

    def __init__(self) -> None:
        super().__init__()
        self._next: dict[str, asyncio.Future[None]] = {}

    def update(self, other: Mapping[str, V] | Iterable[tuple[str, V]] = (), /, **kwargs: V) -> None:  # type: ignore[override]
        changed = dict(other, **kwargs)
        super().update(changed)
        for rendition in changed:
            self._wake(rendition)

    def __setitem__(self, rendition: str, value: V) -> None:
        super().__setitem__(rendition, value)
        self._wake(rendition)

    def clear(self) -> None:
        super().clear()
        for rendition in list(self._next):
            self._wake(rendition)

    def _wake(self, rendition: str) -> None:
        future = self._next.pop(rendition, None)
        if future is not None and not future.done():
            future.set_result(None)

    def waiting(self) -> bool:
        """Whether a request may wait for a newer version (a follower then watches the store)."""
        return any(not f.done() for f in self._next.values())

    def next_version(self, rendition: str) -> asyncio.Future[None]:
        """Resolved when `rendition` gets its next version; one future shared by every waiter (wait
        with asyncio.wait, which never cancels it when one waiter gives up)."""
        future = self._next.get(rendition)
        if future is None:
            future = self._next[rendition] = asyncio.get_running_loop().create_future()
        return future
