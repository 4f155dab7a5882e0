"""The ingest path: `GET /api/broadcaster` without a query, from a configured API key, answered
before Starlette's middleware and routing (as the player path answers plain reloads), and what it
shares with the route: locating the client, choosing, and the answer's bytes.

Anything else (a `streamId`, a broadcaster's own credential, a missing or refused key) is left to
the route, which says why; the request is counted and logged under the same route by the same
`Recorder`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from starlette.types import Receive, Scope, Send

from broadcaster_registry.model import Broadcaster
from edge.broadcasters.answer import MAX_ANSWER
from edge.auth import Role
from edge.observability import Recorder
from edge.services import Services

log = logging.getLogger("edge.broadcasters")

PATH = "/api/broadcaster"
_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def joined_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers by lower-case name, repeated ones joined in order (what HTTP says they mean),
    for the X-Forwarded-For walk."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def choose_for(svc: Services, peer: str, headers: dict[str, str], now: float) -> list[Broadcaster]:
    """The broadcasters to answer a client at `peer` with these (lower-case, joined) headers."""
    location = svc.locations.locate(peer, headers, svc.city_db)
    chosen = await svc.selector.choose(location, now, MAX_ANSWER)
    if log.isEnabledFor(logging.DEBUG):  # never the address or the headers themselves
        log.debug("broadcasters chosen", extra={"fields": {
            "located_by": location.source if location else None,
            "country": location.country if location else None,
            "first": chosen[0].name if chosen else None,
            "answered": len(chosen),
        }})
    return chosen


class IngestPath:
    def __init__(self, services: Services, recorder: Recorder) -> None:
        self.services = services
        self.recorder = recorder

    async def answered(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if it is a plain `GET /api/broadcaster` with an API key; whether it did."""
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "GET"
            or scope["query_string"]
        ):
            return False
        started = time.perf_counter()
        headers = joined_headers(scope["headers"])
        svc = self.services
        if not svc.credentials.admits_configured(headers.get("authorization"), Role.API, Role.BROADCASTER):
            return False
        client = scope.get("client")
        chosen = await choose_for(svc, client[0] if client else "", headers, svc.clock())
        body = svc.answer_pieces.body(chosen)
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.recorder.record(scope, PATH, 200, time.perf_counter() - started)
        return True
