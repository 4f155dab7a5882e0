"""Storage of everything the edge remembers, behind small interfaces (base.py): SQLite embedded by
default (its registry is broadcaster_registry's in-memory one, persisted), Redis shared by several
nodes, and leases for one poller per stream. Stored documents are versioned (see each codec)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from broadcaster_registry.liveness import LivenessPolicy
from edge.store.base import Page, Store, StoreUnavailable, StreamStore
from edge.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from edge.settings import Settings

__all__ = ["Page", "Store", "StreamStore", "StoreUnavailable", "SqliteStore", "open_store"]


def open_store(settings: Settings, liveness: LivenessPolicy, clock: Callable[[], float]) -> Store:
    """The store the settings name (not yet opened): SQLite in the data directory unless given,
    or Redis, shared by several edge nodes (`EDGE_STORE=redis://host:6379/0`). `liveness` says
    when silent broadcasters are forgotten; `clock` is the service's (Redis keeps time itself).
    SQLite is opened shared when several worker processes serve from it (`settings.workers`)."""
    if settings.shared_store:
        from edge.store.redis import RedisStore

        return RedisStore(settings.store, settings.redis_prefix, liveness=liveness)
    # `edge serve` resolves `workers` (0: one per core) before building any app; an app built
    # otherwise (tests, embedding) is one process alone on its file.
    return SqliteStore(settings.sqlite_path, liveness=liveness, clock=clock, shared=settings.workers > 1)
