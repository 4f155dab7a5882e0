"""Storage of everything the edge remembers, behind small interfaces (SQLite embedded by default)."""

from edge.store.base import Page, StreamStore, StoreUnavailable
from edge.store.sqlite import SqliteStore

__all__ = ["Page", "StreamStore", "StoreUnavailable", "SqliteStore", "open_store"]


def open_store(settings: "Settings") -> SqliteStore:  # noqa: F821 - settings imported lazily
    """The store the settings name; only SQLite so far, in the data directory unless given."""
    return SqliteStore(settings.sqlite_path)
