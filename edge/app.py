"""The application, assembled in one place: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from broadcaster_registry.liveness import LivenessPolicy
from broadcaster_registry.ranking import RankingPolicy
from edge import openapi, ops
from edge.auth import Credentials
from edge.broadcasters import routes as broadcaster_routes
from edge.broadcasters.prober import start_static_fleet
from edge.broadcasters.selection import Selector
from edge.errors import EXCEPTION_HANDLERS, error_response
from edge.observability import AccessLog, Metrics, ObservabilityMiddleware
from edge.pages import routes as page_routes
from edge.playlists import routes as playlist_routes
from edge.playlists.feed import FeedContext, FeedMetrics
from edge.playlists.merge import Policy
from edge.playlists.service import PlaylistService
from edge.playlists.upstream import ParseLimits
from edge.upstream import UpstreamFetcher, UpstreamMetrics
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
    liveness = LivenessPolicy(
        heartbeat_ttl_s=settings.heartbeat_ttl,
        ejection_consecutive_failures=settings.ejection_failures,
        base_ejection_s=settings.ejection_base,
        max_ejection_percent=settings.ejection_max_percent,
    )
    store = open_store(settings, liveness)
    ranking = RankingPolicy(liveness=liveness, default_region=settings.default_region or None)
    metrics = Metrics()
    svc = Services(
        settings=settings,
        store=store,
        credentials=Credentials.build(settings.api_keys, settings.broadcaster_tokens, settings.admin_tokens),
        metrics=metrics,
        liveness=liveness,
        ranking=ranking,
        geo=GeoPolicy(
            trusted_proxies=TrustedProxies(settings.trusted_proxies),
            custom_lat_header=settings.geo_latitude_header.lower() or None,
            custom_lon_header=settings.geo_longitude_header.lower() or None,
            custom_latlon_header=settings.geo_latlon_header.lower() or None,
        ),
        selector=Selector(store.registry, ranking, random.Random()),
        node_id=uuid.uuid4().hex[:12],
    )
    feeds = FeedContext(
        store=store,
        fetcher=UpstreamFetcher(settings.upstream_timeout, settings.upstream_max_bytes, UpstreamMetrics(metrics.registry)),
        clock=lambda: svc.clock(),  # follows Services.clock, which tests may replace
        policy=Policy(window_seconds=settings.playlist_window, hole_wait_seconds=settings.hole_wait),
        liveness=liveness,
        limits=ParseLimits(max_bytes=settings.upstream_max_bytes),
        metrics=FeedMetrics(metrics.registry),
        poll_interval=settings.poll_interval,
        discovery_interval=settings.discovery_interval,
        idle_timeout=settings.idle_timeout,
        fixed_target_duration=settings.target_duration,
        node_id=svc.node_id,
        lease_ttl=settings.lease_ttl,
    )
    svc.playlists = PlaylistService(feeds, settings.upstream_timeout)
    return svc


def open_city_database(settings: Settings) -> CityDatabase | None:
    path = settings.geoip_database or embedded_database_path()
    if not path:
        log.warning("no city database: clients are located only by CDN headers")
        return None
    return CityDatabase(path)


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """Build the ASGI app. `settings` must already hold its credentials (Settings.with_credentials);
    tests may pass prepared `services` (for example with another clock)."""
    svc = services or build_services(settings)
    access = AccessLog() if settings.access_log else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.store.open()
        try:
            # A bad broadcasters file stops the start-up here, naming the entry and the field.
            prober = await start_static_fleet(settings, svc.store.registry, svc.liveness, lambda: svc.clock())
        except Exception:
            await svc.store.close()
            raise
        await svc.playlists.ctx.fetcher.start()
        await svc.playlists.start()
        if svc.city_db is None:
            svc.city_db = open_city_database(settings)
        log.info("edge ready", extra={"fields": {
            "store": svc.store.describe(),
            "city_database": svc.city_db.info.path if svc.city_db else None,
        }})
        try:
            yield
        finally:
            await prober.stop()
            await svc.playlists.stop()
            await svc.playlists.ctx.fetcher.close()
            if svc.city_db is not None:
                svc.city_db.close()
            await svc.store.close()
            if access is not None:
                access.flush()

    app = Starlette(
        # Players' routes first: matched on every reload, and no other route overlaps them.
        routes=[*playlist_routes.ROUTES, *stream_routes.ROUTES, *broadcaster_routes.ROUTES, *ops.ROUTES,
                *openapi.ROUTES, *page_routes.ROUTES],
        middleware=[Middleware(ObservabilityMiddleware, metrics=svc.metrics, access=access)],
        exception_handlers={StoreUnavailable: _store_unavailable, **EXCEPTION_HANDLERS},
        lifespan=lifespan,
    )
    # No trailing-slash redirects: Starlette builds their Location from the request's Host header,
    # which a client chooses (a reflected, cacheable redirect to anywhere). `/api/stream/` is a 404.
    app.router.redirect_slashes = False
    app.state.services = svc
    return app
