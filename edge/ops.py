"""Operations endpoints: liveness, readiness (the store answers) and Prometheus metrics.

Metrics name every broadcaster and route, so they are not public: readable from the peers in
`metrics_networks` (loopback by default) when no proxy forwarded the request, and otherwise with a
metrics or admin token.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.auth import Role
from edge.services import services
from edge.store import StoreUnavailable
from geo.proxies import TrustedProxies

READY_TIMEOUT_S = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "node": services(request).node_id}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):  # not wait_for: see edge.store.redis.RedisDatabase
            await svc.store.ping()
    except (StoreUnavailable, asyncio.TimeoutError) as exc:
        return JSONResponse(
            {"status": "unavailable", "errors": [f"store: {exc or 'no answer within 2 s'}"]},
            status_code=503, headers={"Cache-Control": "no-store"},
        )
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})


# A request bearing these came through a proxy: its peer (say, a reverse proxy on loopback) speaks
# for someone else, so the peer's address grants nothing.
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


async def metrics(request: Request) -> Response:
    svc = services(request)
    peer = request.client.host if request.client else ""
    direct = not any(name in request.headers for name in _FORWARDING_HEADERS)
    if not (direct and "authorization" not in request.headers
            and TrustedProxies(svc.settings.metrics_networks).contains(peer)):
        svc.credentials.require(request, Role.METRICS)
    await svc.health.refresh(svc.store, svc.playlists, svc.clock(), svc.liveness)
    registry = svc.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
