"""The fleet as the operator page draws it: recent fetch results per broadcaster (sparklines, the
map's colours), and where the caller is with the order `GET /api/broadcaster` would give it there.

`GET /api/viewer` ranks with the same function, policy and outstanding reservations as the hand-out,
but reserves nothing: looking is not an ingest. Broadcasters tied for first are handed out in random
order; here they come in a fixed one, and `tied` says how many lead together.
"""

from __future__ import annotations

import random

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broadcaster_registry.ranking import ranked_scores
from edge.auth import Role
from edge.broadcasters.answer import MAX_ANSWER
from edge.broadcasters.ingest_path import joined_headers
from edge.errors import api_json
from edge.query import refuse_unknown_query
from edge.services import services


async def fetches(request: Request) -> Response:
    """Per broadcaster this node fetched from lately: its last fetch and 10 s buckets of outcomes
    and latency (edge.fetch_history)."""
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN)
    refuse_unknown_query(request, ())
    now = svc.clock()
    history = svc.fetch_history
    names = sorted(history.last) if history is not None else []
    return api_json({
        "node": svc.node_id,
        "at": now,
        "bucketSeconds": history.bucket_seconds if history is not None else None,
        "broadcasters": {name: history.to_json(name, now) for name in names} if history is not None else {},
    })


async def viewer(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN, Role.API)
    refuse_unknown_query(request, ())
    client = request.client  # located as GET /api/broadcaster locates (edge.broadcasters.ingest_path)
    location = svc.locations.locate(client.host if client else "", joined_headers(request.scope["headers"]), svc.city_db)
    now = svc.clock()
    selector = svc.selector
    candidates = [b for b in await selector.candidates() if selector.admits(b)]
    scores = ranked_scores(candidates, location, now, selector.policy, random.Random(0), selector.reservations)
    scores = scores[:MAX_ANSWER]
    best = scores[0].cost_km if scores else 0.0
    return api_json({
        "location": None if location is None else {
            "latitude": location.latitude, "longitude": location.longitude, "country": location.country,
            "city": location.city, "source": location.source,
        },
        "order": [{
            "name": s.broadcaster.name, "address": s.broadcaster.address,
            "distanceKm": None if s.distance_km is None else round(s.distance_km, 1),
            "costKm": round(s.cost_km, 1),
        } for s in scores],
        "tied": sum(1 for s in scores if s.cost_km <= best + selector.policy.tie_epsilon_km),
    })


ROUTES = [
    Route("/api/fetches", fetches, methods=["GET"]),
    Route("/api/viewer", viewer, methods=["GET"]),
]
