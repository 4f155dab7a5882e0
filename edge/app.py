"""The application, assembled in one place: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any, AsyncIterator, Protocol

from prometheus_client import Gauge
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broadcaster_registry.destinations import DestinationPolicy
from broadcaster_registry.ranking import RankingPolicy
from broadcaster_registry.ranking_cache import RankingCache
from edge import openapi, ops
from edge.auth import Credentials
from edge.broadcasters import routes as broadcaster_routes
from edge.broadcasters.ingest_path import IngestPath
from edge.broadcasters.prober import start_static_fleet
from edge.broadcasters.selection import CacheMetrics, Selector
from edge.broadcasters import overview as overview_routes
from edge.errors import EXCEPTION_HANDLERS, error_response
from edge.fleet import Membership
from edge.observability import AccessLog, Metrics, ObservabilityMiddleware, Recorder
from edge.pages import routes as page_routes
from edge.playlists import routes as playlist_routes
from edge.fetch_history import FetchHistory
from edge.playlists import health as health_routes
from edge.playlists.feed import FeedContext, FeedMetrics
from edge.playlists.player_path import PlayerPath
from edge.playlists.routes import Prepared
from edge.playlists.service import PlaylistService
from edge.segments import routes as segment_routes
from edge.segments.copier import MAX_SEGMENT_BYTES, Copier, CopierMetrics
from edge.segments.policy import SegmentDefaults, SegmentMode
from edge.segments.s3 import S3Store
from edge.segments.store import DirectoryStore, SegmentStore
from edge.tasks import cancel
from edge.upstream import AddressGuard, UpstreamFetcher, UpstreamMetrics
from edge.health_metrics import HealthGauges
from edge.services import Services
from edge.settings import Settings
from edge.store import StoreUnavailable, open_store
from edge.streams import routes as stream_routes
from geo.database import CityDatabase, embedded_database_path
from geo.locate import GeoPolicy
from geo.proxies import TrustedProxies

log = logging.getLogger("edge")


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, ["store: unavailable, try again shortly"], {"Retry-After": "2"})


def build_services(settings: Settings) -> Services:
    """Everything the handlers share, from the settings alone (nothing opened yet)."""
    liveness = settings.liveness_policy()
    store = open_store(settings, liveness, lambda: svc.clock())  # follows Services.clock, as below
    ranking = RankingPolicy(liveness=liveness, default_region=settings.default_region or None)
    metrics = Metrics()
    destinations = DestinationPolicy.build(settings.broadcaster_networks, settings.broadcaster_hosts)
    guard = AddressGuard(destinations)
    cache_policy = settings.ranking_cache_policy()
    selector = Selector(store.registry, ranking, random.Random(), admits=guard.admits,
                        admits_epoch=lambda: guard.refusals,
                        cache=RankingCache(cache_policy) if cache_policy else None)
    CacheMetrics(metrics.registry, selector.stats)
    svc = Services(
        settings=settings,
        store=store,
        credentials=Credentials.build(
            settings.api_keys, settings.broadcaster_tokens, settings.admin_tokens,
            shared_broadcaster_token=settings.shared_broadcaster_token, metrics=settings.metrics_tokens,
        ),
        metrics=metrics,
        liveness=liveness,
        ranking=ranking,
        geo=GeoPolicy(
            trusted_proxies=TrustedProxies(settings.trusted_proxies),
            custom_lat_header=settings.geo_latitude_header.lower() or None,
            custom_lon_header=settings.geo_longitude_header.lower() or None,
            custom_latlon_header=settings.geo_latlon_header.lower() or None,
        ),
        selector=selector,
        destinations=destinations,
        guard=guard,
        node_id=uuid.uuid4().hex[:12],
    )
    svc.fetch_history = FetchHistory(lambda: svc.clock())
    # Which process a scrape reached: with `edge serve --workers`, each worker has its own /metrics.
    Gauge("edge_node_info", "This process (1): its node id among those sharing the store, and its pid.",
          ["node", "pid"], registry=metrics.registry).labels(svc.node_id, str(os.getpid())).set(1)
    fetcher = UpstreamFetcher(
        settings.upstream_timeout, settings.upstream_max_bytes, UpstreamMetrics(metrics.registry), guard,
        svc.fetch_history,
    )
    svc.segment_store = open_segment_store(settings)

    async def fetch_segment(broadcaster: str, url: str) -> bytes | None:
        result = await fetcher.fetch(broadcaster, url, timeout_s=COPY_TIMEOUT_S, max_bytes=MAX_SEGMENT_BYTES)
        return result.body if result.ok else None

    svc.copier = Copier(svc.segment_store, fetch_segment, CopierMetrics(metrics.registry),
                        concurrency=settings.copy_concurrency)
    feeds = FeedContext(
        store=store,
        fetcher=fetcher,
        clock=lambda: svc.clock(),  # follows Services.clock, which tests may replace
        policy=settings.merge_policy(),
        liveness=liveness,
        limits=settings.parse_limits(),
        metrics=FeedMetrics(metrics.registry),
        poll_interval=settings.poll_interval,
        discovery_interval=settings.discovery_interval,
        idle_timeout=settings.idle_timeout,
        fixed_target_duration=settings.target_duration,
        node_id=svc.node_id,
        lease_ttl=settings.lease_ttl,
        layout=settings.layout,
        # Every node of a fleet has the same admin tokens, so they agree on the order of carriers.
        tiebreak_key=hashlib.blake2b("\n".join(sorted(settings.admin_tokens)).encode(), person=b"carrier-order").digest(),
        segments=SegmentDefaults(
            mode=SegmentMode(settings.segment_mode), public_base=settings.segment_public_base,
            mirror_wait=settings.mirror_wait, max_recording=settings.max_recording,
            recording_retention=settings.recording_retention,
        ),
        copier=svc.copier,
        # Nodes (or workers) sharing a store share its streams evenly; alone, a node owns them all.
        fleet=Membership(store.leases, svc.node_id, settings.fleet_interval) if store.shared else None,
    )
    svc.playlists = PlaylistService(feeds, settings.upstream_timeout)
    svc.health = HealthGauges(metrics.registry)
    return svc


COPY_TIMEOUT_S = 10.0  # one segment from one broadcaster; the mirror wait bounds what players wait
SWEEP_INTERVAL_S = 60.0


def open_segment_store(settings: Settings) -> SegmentStore:
    if settings.segment_store.startswith("s3://"):
        return S3Store(settings.segment_store, public_base=settings.segment_public_base)
    return DirectoryStore(settings.data_path / "segments", settings.segment_store_max_bytes,
                          settings.segment_retention, public_base=settings.segment_public_base)


async def _sweep_segments(svc: Services) -> None:
    """Retention and the size bound of the segment store, applied now and then."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            if svc.segment_store is not None:
                await svc.segment_store.sweep(svc.clock())
        except Exception:
            log.exception("segment store sweep failed")


def open_city_database(settings: Settings) -> CityDatabase | None:
    path = settings.geoip_database or embedded_database_path()
    if not path:
        log.warning("no city database: clients are located only by CDN headers")
        return None
    return CityDatabase(path)


class FrontPath(Protocol):
    def ready(self, scope: Scope) -> tuple[Prepared, str] | None:
        """The answer to this request if it is one of the plain ones this path knows and its answer
        is ready now, and the route it counts under; None otherwise."""
        ...


class Door:
    """The front paths: the player path (a plain reload of a watched stream's playlist, most of
    the traffic) and the ingest path (a plain `GET /api/broadcaster`). What they have ready is
    answered before the middleware stack and the router, by the app, or by the HTTP protocol itself
    without an ASGI cycle (edge.connections); either way counted and logged by the same recorder,
    under the route the app would have named."""

    def __init__(self, paths: Sequence[FrontPath], recorder: Recorder) -> None:
        self.paths = tuple(paths)
        self.recorder = recorder

    def ready(self, scope: Scope) -> tuple[Prepared, str] | None:
        for path in self.paths:
            found = path.ready(scope)
            if found is not None:
                return found
        return None

    def answered(self, scope: Scope, route: str, status: int, elapsed: float) -> None:
        self.recorder.record(scope, route, status, elapsed)


class EdgeApp(Starlette):
    """Starlette with a front door (`Door`): what it has ready is answered first, anything else
    goes on through the middleware and the router as usual."""

    def __init__(self, door: Door, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            started = time.perf_counter()
            found = self.door.ready(scope)
            if found is not None:
                answer, route = found
                try:
                    await answer(scope, receive, send)
                finally:
                    self.door.answered(scope, route, answer.status, time.perf_counter() - started)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, services: Services | None = None) -> EdgeApp:
    """Build the ASGI app. `settings` must already hold its credentials (Settings.with_credentials);
    tests may pass prepared `services` (for example with another clock)."""
    svc = services or build_services(settings)
    access = AccessLog() if settings.access_log else None
    recorder = Recorder(svc.metrics, access)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.store.open()
        if svc.segment_store is not None:
            await svc.segment_store.open()
        fetcher = svc.playlists.ctx.fetcher
        await fetcher.start()
        try:
            # A bad broadcasters file stops the start-up here, naming the entry and the field.
            prober = await start_static_fleet(
                settings, svc.store.registry, svc.liveness, lambda: svc.clock(), fetcher, svc.destinations,
                leases=svc.store.leases, owner=svc.node_id,
            )
        except Exception:
            await fetcher.close()
            await svc.store.close()
            raise
        if settings.broadcaster_tokens and not settings.shared_broadcaster_token:
            log.warning("broadcaster_tokens are set but the shared broadcaster token is turned off: "
                        "they are refused; set shared_broadcaster_token or issue each broadcaster its own "
                        "credential (POST /api/broadcasters/{name}/credentials)")
        await svc.playlists.start()
        sweeper = asyncio.create_task(_sweep_segments(svc), name="segment-sweeper")
        if svc.city_db is None:
            svc.city_db = open_city_database(settings)
        log.info("edge ready", extra={"fields": {
            "store": svc.store.describe(),
            "city_database": svc.city_db.info.path if svc.city_db else None,
            "node": svc.node_id, "pid": os.getpid(),  # which worker process is which node
        }})
        try:
            yield
        finally:
            try:
                await prober.stop()
                await svc.playlists.stop()
                await cancel(sweeper)
                if svc.copier is not None:
                    await svc.copier.close()
                if svc.segment_store is not None:
                    await svc.segment_store.close()
                await fetcher.close()
                if svc.city_db is not None:
                    svc.city_db.close()
            finally:  # whatever failed above, the store writes what it still holds (rows written behind)
                await svc.store.close()
                if access is not None:
                    access.flush()

    app = EdgeApp(
        Door([PlayerPath(svc), IngestPath(svc)], recorder),
        # Players' routes first: matched on every reload, and no other route overlaps them.
        routes=[*playlist_routes.ROUTES, *segment_routes.ROUTES, *stream_routes.ROUTES, *broadcaster_routes.ROUTES, *ops.ROUTES,
                *openapi.ROUTES, *page_routes.ROUTES, *health_routes.ROUTES, *overview_routes.ROUTES],
        middleware=[Middleware(ObservabilityMiddleware, recorder=recorder)],
        exception_handlers={StoreUnavailable: _store_unavailable, **EXCEPTION_HANDLERS},
        lifespan=lifespan,
    )
    # No trailing-slash redirects: Starlette builds their Location from the request's Host header,
    # which a client chooses (a reflected, cacheable redirect to anywhere). `/api/stream/` is a 404.
    app.router.redirect_slashes = False
    app.state.services = svc
    return app
