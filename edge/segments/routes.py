"""The edge's own segment route, `/stream/<id>/<rendition>/<name>.ts`: what `redirect` and `mirror`
publish. It never changes for a number, while what stands behind it may:

- a stored copy (mirror mode; or redirect mode once no carrier has it): its bytes, or a redirect to
  the store's public URL, with a long cache lifetime (the copy never changes);
- otherwise a redirect to a live copy: the broadcaster chosen when the number was published, else
  another carrier that offered the same number in the last round, skipping broadcasters that are
  down or ejected, with a short cache lifetime (which copy is alive changes).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broadcaster_registry.liveness import is_serving
from edge.auth import Role
from edge.errors import api_json, error_response
from edge.playlists.feed import Feed
from edge.playlists.service import NotFound, NotYet
from edge.segments.policy import SegmentMode, edge_path, epoch_of, key_of, segment_name
from edge.services import Services, services

log = logging.getLogger("edge.segments")
STORED_CACHE = "public, max-age=31536000, immutable"
REDIRECT_CACHE = "public, max-age=2"  # a carrier may die: a CDN asks again soon
CORS = {"Access-Control-Allow-Origin": "*"}


def _error(status: int, message: str) -> Response:
    return Response(f"{message}\n", status_code=status, media_type="text/plain",
                    headers={"Cache-Control": "public, max-age=1", **CORS})


async def segment(request: Request) -> Response:
    stream_id, rendition, name = (request.path_params[k] for k in ("id", "rendition", "name"))
    key = key_of(stream_id, rendition, name)
    if key is None:
        return _error(404, "no such segment")
    svc = services(request)
    try:
        feed = await svc.playlists.watch(stream_id)
    except (NotFound, NotYet) as exc:
        return _error(404, str(exc))
    if feed.segment_mode is not SegmentMode.REDIRECT:
        stored = await _stored(svc, key, request)
        return stored if stored is not None else _error(404, "segment not stored")
    url = await _live_copy(svc, feed, rendition, name, key)
    if url is not None:
        return Response(status_code=302, headers={"Location": url, "Cache-Control": REDIRECT_CACHE, **CORS})
    stored = await _stored(svc, key, request)
    return stored if stored is not None else _error(404, "no live or stored copy of this segment")


async def _stored(svc: Services, key: str, request: Request) -> Response | None:
    store, copier = svc.segment_store, svc.copier
    if store is None or copier is None:
        return None
    if store.public_base:
        if not (copier.is_stored(key) or await store.exists(key)):
            return None
        location = f"{store.public_base.rstrip('/')}/{key}"
        return Response(status_code=302, headers={"Location": location, "Cache-Control": STORED_CACHE, **CORS})
    data = await store.get(key)
    if data is None:
        return None
    headers = {"Cache-Control": STORED_CACHE, "Content-Length": str(len(data)), **CORS}
    return Response(b"" if request.method == "HEAD" else data, media_type="video/mp2t", headers=headers)


async def _live_copy(svc: Services, feed: Feed, rendition: str, name: str, key: str) -> str | None:
    """The URL of the best live copy of the segment at `key`, None if no carrier looks alive."""
    path = edge_path(key)
    found = next((p for state in feed.states.values() for p in reversed(state.segments) if p.uri == path), None)
    if found is None:
        return None
    epoch = max((epoch_of(state) for state in feed.states.values()), default=0)
    if segment_name(epoch, found.number) != name:
        # From before an ingest restart: the broadcasters' /<n>.ts is now the new epoch's media.
        return None
    offered = feed.offers.get((rendition, found.number), [])
    urls = dict(offered)
    now = svc.clock()
    for carrier in dict.fromkeys([found.broadcaster, *(b for b, _ in offered)]):
        if feed.answered.get(carrier) is False:
            continue  # its playlist fetch failed in the last round: most likely down
        b = await svc.store.registry.get(carrier)
        if b is None or not is_serving(b, now, svc.liveness) or not svc.guard.admits(b):
            continue
        return urls.get(carrier) or b.address + svc.settings.layout.segment.format(
            stream=feed.stream.id, rendition=rendition, n=found.number)
    return None


async def store_usage(request: Request) -> Response:
    """The segment store and its use, for operators (the operator page shows it)."""
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN)
    store = svc.segment_store
    if store is None:
        return api_json({"store": None})
    try:
        usage = await store.usage()
    except Exception:  # an unreachable bucket: say so, like any store outage
        log.warning("segment store usage unavailable", exc_info=True)
        return error_response(503, ["segment store: unavailable, try again shortly"], {"Retry-After": "2"})
    return api_json({"store": store.describe(), "defaultMode": svc.settings.segment_mode,
                     "objects": usage.objects, "bytes": usage.bytes})


ROUTES = [
    Route("/stream/{id}/{rendition}/{name}.ts", segment, methods=["GET", "HEAD"]),
    Route("/api/segment-store", store_usage, methods=["GET"]),
]
