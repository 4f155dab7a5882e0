"""Players' endpoints: the merged media playlist of a rendition and the master playlist of a stream.

Served from memory with the headers players and CDNs rely on: the HLS content type, a cache
lifetime of half a target duration while live (long once ended), ETag and conditional GET, gzip
when accepted, HEAD, and CORS for browser players. LL-HLS blocking reloads and delta updates
(edge.playlists.blocking) are answered here; plain reloads of a watched stream are usually answered
before routing by edge.playlists.player_path, with the same answers built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.playlists.blocking import Answer, BadDirectives, Directives, Refuse, cache_seconds, decide, parse_directives
from edge.playlists.feed import Rendered
from edge.playlists.master import master_playlist
from edge.playlists.master import max_age as master_max_age
from edge.playlists.render import encoded
from edge.playlists.service import CannotTell, NotFound, NotYet
from edge.services import Services, services
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


@lru_cache(maxsize=256)  # players send a handful of distinct Accept-Encoding values
def _accepts_gzip(accept_encoding: str) -> bool:
    """gzip (or *) listed in Accept-Encoding with a quality above 0 (RFC 9110 §12.5.3)."""
    for coding in accept_encoding.split(","):
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


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))


def _negotiation(scope: Scope) -> tuple[str, str | None]:
    """(Accept-Encoding, If-None-Match) of a request, read from the raw headers (first of each)."""
    accept_encoding, if_none_match = None, None
    for key, value in scope["headers"]:
        if key == b"accept-encoding" and accept_encoding is None:
            accept_encoding = value.decode("latin-1")
        elif key == b"if-none-match" and if_none_match is None:
            if_none_match = value.decode("latin-1")
    return accept_encoding or "", if_none_match


_AGES = [(b"age", str(age).encode()) for age in range(ENDED_MAX_AGE + 1)]  # encoded once, not per request


class Prepared:
    """A response whose headers were encoded once per playlist version (only `Age` is per request):
    a plain ASGI callable, so Starlette's handlers and the player path send it alike."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


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

    def answer(self, scope: Scope, age: int) -> Prepared:
        accept_encoding, if_none_match = _negotiation(scope)
        age_header = _AGES[age] if 0 <= age < len(_AGES) else (b"age", str(max(0, age)).encode())
        if _not_modified(if_none_match, self.etag):
            return Prepared(304, [*self.not_modified, age_header])
        body, headers = self.identity
        if self.gzipped is not None and _accepts_gzip(accept_encoding):
            body, headers = self.gzipped
        # HEAD: the same headers (Content-Length of the full body), no body.
        return Prepared(200, [*headers, age_header], b"" if scope["method"] == "HEAD" else body)


def media_answer(scope: Scope, rendered: Rendered, directives: Directives, svc: Services,
                 variants: Variants | None = None) -> Prepared:
    """The answer to a media playlist request that may be answered with `rendered` (whose
    `media_variants` the caller may have at hand)."""
    if variants is None:
        variants = media_variants(rendered, directives, svc)
    return variants.answer(scope, int(svc.clock() - rendered.changed_at))


async def media(request: Request) -> ASGIApp:
    stream_id, rendition = request.path_params["id"], request.path_params["rendition"]
    if not is_stream_id(stream_id) or not is_rendition_name(rendition):
        return _error(404, f"stream {stream_id}/{rendition}: not found", 2)
    try:
        directives = parse_directives(request.scope["query_string"].decode("latin-1"))
    except BadDirectives as exc:
        return _error(400, str(exc), 2)
    svc = services(request)
    asked_at = svc.clock()
    try:
        rendered = await svc.playlists.media(stream_id, rendition)
        while True:  # a blocking reload (§6.2.5.2) until its MSN is published; otherwise once
            verdict = decide(directives.msn, rendered.next_msn, rendered.ended, rendered.target_duration,
                             asked_at, svc.clock())
            if isinstance(verdict, Answer):
                break
            if isinstance(verdict, Refuse):
                return _error(verdict.status, verdict.reason, rendered.target_duration)
            rendered = await svc.playlists.next_version(stream_id, rendition, rendered, verdict.until - svc.clock())
    except NotFound as exc:
        return _error(404, str(exc), 2)
    except NotYet as exc:
        response = _error(404, str(exc), 1)
        response.headers["Retry-After"] = "1"
        return response
    except CannotTell as exc:
        return Response(f"{exc}\n", status_code=503, media_type="text/plain",
                        headers={"Cache-Control": "no-store", "Retry-After": "1", **CORS})
    return media_answer(request.scope, rendered, directives, svc)


# Per playlist version and kind of answer, once, and freed with the version: Rendered values are
# immutable and replaced on every change, so they key a weak dictionary by identity.
def media_variants(rendered: Rendered, directives: Directives, svc: Services) -> Variants:
    delta = directives.skip and rendered.delta is not None
    kinds: dict[tuple[bool, bool], Variants] = svc.media_responses(rendered, lambda _: {})
    variants = kinds.get((delta, directives.blocking))
    if variants is None:
        max_age = cache_seconds(directives, rendered.target_duration, rendered.ended, ENDED_MAX_AGE)
        if delta:
            assert rendered.delta is not None
            variants = Variants.of(rendered.delta, *encoded(rendered.delta), max_age)
        else:
            variants = Variants.of(rendered.body, rendered.gzipped, rendered.etag, max_age)
        kinds[(delta, directives.blocking)] = variants
    return variants


async def master(request: Request) -> ASGIApp:
    stream_id = request.path_params["id"]
    if not is_stream_id(stream_id):
        return _error(404, f"stream {stream_id}: not found", 2)
    svc = services(request)
    try:
        stream = await svc.playlists.stream(stream_id)
    except NotFound as exc:
        return _error(404, str(exc), 2)
    return master_answer(request.scope, stream, svc)


def master_answer(scope: Scope, stream: Stream, svc: Services) -> Prepared:
    # A short lifetime lets a deleted stream disappear soon, and probed codecs appear (master.max_age).
    return svc.master_responses(stream, _master_variants).answer(scope, 0)  # once per stream value


def _master_variants(stream: Stream) -> Variants:
    body, etag = master_playlist(stream)
    return Variants.of(body, None, etag, master_max_age(stream))


async def preflight(request: Request) -> Response:
    return Response(status_code=204, headers={
        **CORS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS", "Access-Control-Allow-Headers": "*",
        "Access-Control-Max-Age": "86400",
    })


MASTER = Route("/stream/{id}.m3u8", master, methods=["GET", "HEAD"])
MEDIA = Route("/stream/{id}/{rendition}.m3u8", media, methods=["GET", "HEAD"])
ROUTES = [
    MASTER,
    MEDIA,
    Route("/stream/{id}.m3u8", preflight, methods=["OPTIONS"]),
    Route("/stream/{id}/{rendition}.m3u8", preflight, methods=["OPTIONS"]),
]
