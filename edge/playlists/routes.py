"""Players' endpoints: the merged media playlist of a rendition and the master playlist of a stream.

Served from memory with the headers players and CDNs rely on: the HLS content type, a cache
lifetime of half a target duration while live (long once ended), ETag and conditional GET, gzip
when accepted, HEAD, and CORS for browser players.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.playlists.feed import Rendered
from edge.playlists.master import master_playlist
from edge.playlists.service import NotFound, NotYet
from edge.services import services
from edge.streams.model import Stream, is_rendition_name, is_stream_id

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
    """gzip (or *) listed in Accept-Encoding with a quality above 0 (RFC 9110 §12.5.3)."""
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return _quality(params) > 0
    return False


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    return header.strip() == "*" or etag in (tag.strip().removeprefix("W/") for tag in header.split(","))


class Prepared(Response):
    """A response whose headers were encoded once per playlist version; only `Age` is per request."""

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = raw_headers


@dataclass(frozen=True, slots=True)
class Variants:
    """Everything a player can be sent for one playlist version, ready to go."""

    etag: str
    identity: tuple[bytes, list[tuple[bytes, bytes]]]
    gzipped: tuple[bytes, list[tuple[bytes, bytes]]] | None
    not_modified: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, body: bytes, gzipped: bytes | None, etag: str, max_age: int) -> "Variants":
        common = [
            (b"cache-control", f"public, max-age={max_age}".encode()),
            (b"etag", etag.encode()),
            (b"vary", b"Accept-Encoding"),
            *((k.lower().encode(), v.encode()) for k, v in CORS.items()),
        ]
        typed = [*common, (b"content-type", MPEGURL.encode())]

        def sized(content: bytes, extra: list[tuple[bytes, bytes]]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
            return content, [*typed, *extra, (b"content-length", str(len(content)).encode())]

        return cls(
            etag=etag,
            identity=sized(body, []),
            gzipped=sized(gzipped, [(b"content-encoding", b"gzip")]) if gzipped is not None else None,
            not_modified=common,
        )

    def response(self, request: Request, age: int) -> Response:
        age_header = (b"age", str(max(0, age)).encode())
        if _not_modified(request, self.etag):
            return Prepared(304, [*self.not_modified, age_header])
        body, headers = self.identity
        if self.gzipped is not None and _accepts_gzip(request):
            body, headers = self.gzipped
        # HEAD: the same headers (Content-Length of the full body), no body.
        return Prepared(200, [*headers, age_header], b"" if request.method == "HEAD" else body)


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
    variants = svc.media_responses(rendered, _variants)  # once per playlist version
    return variants.response(request, int(svc.clock() - rendered.changed_at))


def _variants(rendered: Rendered) -> Variants:
    return Variants.of(rendered.body, rendered.gzipped, rendered.etag, _max_age(rendered))


async def master(request: Request) -> Response:
    stream_id = request.path_params["id"]
    if not is_stream_id(stream_id):
        return _error(404, f"stream {stream_id}: not found", 2)
    svc = services(request)
    try:
        stream = await svc.playlists.stream(stream_id)
    except NotFound as exc:
        return _error(404, str(exc), 2)
    # The ladder never changes; a short lifetime still lets a deleted stream disappear soon.
    return svc.master_responses(stream, _master_variants).response(request, 0)  # once per stream value


def _master_variants(stream: Stream) -> Variants:
    body, etag = master_playlist(stream)
    return Variants.of(body, None, etag, 60)


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
