"""The application, assembled in one place: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from edge import ops
from edge.auth import Credentials
from edge.errors import EXCEPTION_HANDLERS, error_response
from edge.observability import Metrics, ObservabilityMiddleware
from edge.services import Services
from edge.settings import Settings
from edge.store import StoreUnavailable, open_store
from edge.streams import routes as stream_routes

log = logging.getLogger("edge")


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, [f"store: unavailable, try again shortly"], {"Retry-After": "2"})


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app. `settings` must already hold its credentials (Settings.with_credentials)."""
    metrics = Metrics()
    store = open_store(settings)
    svc = Services(
        settings=settings,
        store=store,
        credentials=Credentials.build(settings.api_keys, settings.broadcaster_tokens, settings.admin_tokens),
        metrics=metrics,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        log.info("edge ready", extra={"fields": {"store": str(store.path)}})
        try:
            yield
        finally:
            await store.close()

    app = Starlette(
        routes=[*stream_routes.ROUTES, *ops.ROUTES],
        middleware=[Middleware(ObservabilityMiddleware, metrics=metrics, log_requests=settings.access_log)],
        exception_handlers={StoreUnavailable: _store_unavailable, **EXCEPTION_HANDLERS},
        lifespan=lifespan,
    )
    app.state.services = svc
    return app
