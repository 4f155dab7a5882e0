"""The ingest path: `GET /api/broadcaster` without a query, from a configured API key, answered
before Starlette's middleware and routing (edge.app.Door, as the player path answers plain
reloads), and what it shares with the route: locating the client, choosing, and the answer's bytes.

Anything else (a `streamId`, a broadcaster's own credential, a missing or refused key, a choice that
must read the registry first) is left to the route, which says why or reads; the request is counted
and logged under the same route by the same `Recorder`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.types import Scope

from broadcaster_registry.model import Broadcaster
from geo.location import Location
from edge.broadcasters.answer import MAX_ANSWER
from edge.auth import Role
from edge.playlists.routes import Prepared
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
    return _logged(location, await svc.selector.choose(location, now, MAX_ANSWER))


def _logged(location: Location | None, chosen: list[Broadcaster]) -> list[Broadcaster]:
    if log.isEnabledFor(logging.DEBUG):  # never the address or the headers themselves
        log.debug("broadcasters chosen", extra={"fields": {
            "located_by": location.source if location else None,
            "country": location.country if location else None,
            "first": chosen[0].name if chosen else None,
            "answered": len(chosen),
        }})
    return chosen


class IngestPath:
    def __init__(self, services: Services) -> None:
        self.services = services

    def ready(self, scope: Scope) -> tuple[Prepared, str] | None:
        """The answer if this is a plain `GET /api/broadcaster` with an API key whose choice needs
        no read of the registry, and its route."""
        if scope["path"] != PATH or scope["method"] != "GET" or scope["query_string"]:
            return None
        headers = joined_headers(scope["headers"])
        svc = self.services
        if not svc.credentials.admits_configured(headers.get("authorization"), Role.API, Role.BROADCASTER):
            return None
        client = scope.get("client")
        location = svc.locations.locate(client[0] if client else "", headers, svc.city_db)
        chosen = svc.selector.choose_now(location, svc.clock(), MAX_ANSWER)
        if chosen is None:
            return None
        body = svc.answer_pieces.body(_logged(location, chosen))
        return Prepared(200, [*_HEADERS, (b"content-length", str(len(body)).encode())], body), PATH
