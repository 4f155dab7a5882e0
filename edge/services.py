"""What request handlers share, built once per app: settings, store, policies, geo, the clock, and
what handlers prepared once and keep (per app, not per process: two apps never share them)."""

from __future__ import annotations

import time
import weakref
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from cachetools import LRUCache

from starlette.requests import Request

from broadcaster_registry.destinations import DestinationPolicy
from broadcaster_registry.liveness import LivenessPolicy
from broadcaster_registry.ranking import RankingPolicy
from edge.auth import Credentials
from edge.broadcasters.answer import AnswerPieces
from edge.broadcasters.selection import Selector
from edge.fetch_history import FetchHistory
from edge.health_metrics import HealthGauges
from edge.observability import Metrics
from edge.playlists.service import PlaylistService
from edge.settings import Settings
from edge.segments.copier import Copier
from edge.segments.store import SegmentStore
from edge.store import Store
from edge.upstream import AddressGuard
from geo.database import CityDatabase
from geo.locate import GeoPolicy, LocationCache


K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """`make(key)` computed once per key, for as long as `kept` keeps it (a weak or bounded map)."""

    def __init__(self, kept: MutableMapping[K, V]) -> None:
        self.kept = kept

    def __call__(self, key: K, make: Callable[[K], V]) -> V:
        value = self.kept.get(key)
        if value is None:
            value = self.kept[key] = make(key)
        return value


@dataclass
class Services:
    settings: Settings
    store: Store
    credentials: Credentials
    metrics: Metrics
    liveness: LivenessPolicy
    ranking: RankingPolicy
    geo: GeoPolicy
    selector: Selector
    destinations: DestinationPolicy  # where broadcasters may be
    guard: AddressGuard  # that policy at connection time, shared by every fetch
    node_id: str = ""  # this process among the edge nodes sharing a store
    city_db: CityDatabase | None = None  # opened in the lifespan
    clock: Callable[[], float] = field(default=time.time)
    segment_store: SegmentStore | None = None  # where segment copies are kept
    copier: Copier | None = None
    fetch_history: FetchHistory | None = None  # recent fetch results per broadcaster, for operators
    playlists: PlaylistService = field(init=False)  # built from these services (its clock is ours)
    health: HealthGauges = field(init=False)  # refreshed at each scrape of /metrics
    # Players' responses, ready to send: per media playlist version (freed with it: versions are
    # immutable values replaced on every change), and per stream value for master playlists.
    media_responses: Memo[Any, Any] = field(default_factory=lambda: Memo(weakref.WeakKeyDictionary()))
    master_responses: Memo[Any, Any] = field(default_factory=lambda: Memo(LRUCache(maxsize=4096)))
    answer_pieces: AnswerPieces = field(default_factory=AnswerPieces)  # GET /api/broadcaster's
    locations: LocationCache = field(init=False)  # locate() per client, over `geo`

    def __post_init__(self) -> None:
        self.locations = LocationCache(self.geo)


def services(request: Request) -> Services:
    return request.app.state.services
