"""Players' endpoints: the merged media playlist of a rendition and the master playlist of a stream.

Served from memory with the headers players and CDNs rely on: the HLS content type, a cache
lifetime of half a target duration while live (long once ended), ETag and conditional GET, gzip
when accepted, HEAD, and CORS for browser players.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.playlists.feed import Rendered
from edge.playlists.master import master_playlist
from edge.playlists.service import NotFound, NotYet
from edge.services import services
from edge.streams.model import is_rendition_name, is_stream_id

MPEGURL = "application/vnd.apple.mpegurl"
ENDED_MAX_AGE = 3600
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Age, ETag, Content-Length",
}


def _error(status: int, message: str, max_age: int) -> Response:
    # Playlist errors are cached about one target duration, so a CDN absorbs a storm of retries.
    return Response(
        f"{message}\n", status_code=status, media_type="text/plain",
        headers={"Cache-Control": f"public, max-age={max_age}", **CORS},
    )


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "")


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    return header.strip() == "*" or etag in (tag.strip().removeprefix("W/") for tag in header.split(","))


def playlist_response(request: Request, body: bytes, gzipped: bytes | None, etag: str, max_age: int, age: int) -> Response:
    headers = {
        "Cache-Control": f"public, max-age={max_age}",
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "Age": str(max(0, age)),
        **CORS,
    }
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if gzipped is not None and _accepts_gzip(request):
        body = gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=MPEGURL)
    return Response(body, headers=headers, media_type=MPEGURL)


def _max_age(rendered: Rendered) -> int:
    if rendered.ended:
        return ENDED_MAX_AGE
    return max(1, rendered.target_duration // 2)


async def media(request: Request) -> Response:
    stream_id, rendition = request.path_params["id"], request.path_params["rendition"]
    if not is_stream_id(stream_id) or not is_rendition_name(rendition):
        return _error(404, f"stream {stream_id}/{rendition}: not found", 2)
    svc = services(request)
    try:
        rendered = await svc.playlists.media(stream_id, rendition)
    except NotFound as exc:
        return _error(404, str(exc), 2)
    except NotYet as exc:
        response = _error(404, str(exc), 1)
        response.headers["Retry-After"] = "1"
        return response
    age = int(svc.clock() - rendered.changed_at)
    return playlist_response(request, rendered.body, rendered.gzipped, rendered.etag, _max_age(rendered), age)


async def master(request: Request) -> Response:
    stream_id = request.path_params["id"]
    if not is_stream_id(stream_id):
        return _error(404, f"stream {stream_id}: not found", 2)
    svc = services(request)
    try:
        stream = await svc.playlists.stream(stream_id)
    except NotFound as exc:
        return _error(404, str(exc), 2)
    body, etag = master_playlist(stream)
    # The ladder never changes; a short lifetime still lets a deleted stream disappear soon.
    return playlist_response(request, body, None, etag, 60, 0)


async def preflight(request: Request) -> Response:
    return Response(status_code=204, headers={
        **CORS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS", "Access-Control-Allow-Headers": "*",
        "Access-Control-Max-Age": "86400",
    })


ROUTES = [
    Route("/stream/{id}.m3u8", master, methods=["GET", "HEAD"]),
    Route("/stream/{id}/{rendition}.m3u8", media, methods=["GET", "HEAD"]),
    Route("/stream/{id}.m3u8", preflight, methods=["OPTIONS"]),
    Route("/stream/{id}/{rendition}.m3u8", preflight, methods=["OPTIONS"]),
]
