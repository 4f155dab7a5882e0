"""Operations endpoints: liveness, readiness (the store answers) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.services import services
from edge.store import StoreUnavailable

READY_TIMEOUT_S = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "node": services(request).node_id}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    try:
        await asyncio.wait_for(svc.store.ping(), READY_TIMEOUT_S)
    except (StoreUnavailable, asyncio.TimeoutError) as exc:
        return JSONResponse(
            {"status": "unavailable", "errors": [f"store: {exc or 'no answer within 2 s'}"]},
            status_code=503, headers={"Cache-Control": "no-store"},
        )
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})


async def metrics(request: Request) -> Response:
    registry = services(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
