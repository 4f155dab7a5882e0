"""The streams API, compatible with Livepeer's: create, read, list, end, delete, and the broadcaster hook."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broadcaster_registry.origins import origin_of
from edge.auth import Caller, Role
from edge.errors import ApiError, api_json
from edge.jsonbody import read_json
from edge.query import refuse_unknown_query
from edge.services import Services, services
from edge.streams.model import Stream, is_stream_id
from edge.streams.paths import StreamIdConvertor  # noqa: F401  registers {id:stream_id}
from edge.streams.parse import parse_create, parse_hook
from jsonfields.errors import FieldErrors

MAX_PAGE = 100


async def _load(svc: Services, stream_id: str) -> Stream:
    stream = await svc.store.streams.get(stream_id) if is_stream_id(stream_id) else None
    if stream is None:
        raise ApiError(404, f"stream {stream_id}: not found")
    return stream


async def create_stream(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.API)
    body = await read_json(request, svc.settings.max_body_bytes)
    try:
        spec = parse_create(body, int(svc.settings.max_dvr_window))
    except FieldErrors as exc:
        raise ApiError(422, *exc.errors) from None
    stream = Stream(
        id=str(uuid.uuid4()),
        name=spec.name,
        profiles=spec.profiles,
        presets=spec.presets,
        source_info=spec.source_info,
        dvr_window_seconds=spec.dvr_window_seconds,
        segment_mode=spec.segment_mode,
        record=spec.record,
        created_at=int(svc.clock() * 1000),
    )
    await svc.store.streams.create(stream)
    return api_json(stream.api_json(), 201, {"Location": f"/api/stream/{stream.id}"})


async def get_stream(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.API)
    return api_json((await _load(svc, request.path_params["id"])).api_json())


async def list_streams(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.API)
    refuse_unknown_query(request, ("limit", "cursor"))
    params = request.query_params
    limit_text = params.get("limit", str(svc.settings.page_size))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise ApiError(400, f"limit: must be an integer from 1 to {MAX_PAGE}")
    limit = int(limit_text)
    try:
        page = await svc.store.streams.list(limit, params.get("cursor") or None)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    headers = {}
    if page.next_cursor:
        query = urlencode({"limit": limit, "cursor": page.next_cursor})
        headers["Link"] = f'</api/stream?{query}>; rel="next"'
    return api_json([s.api_json() for s in page.items], headers=headers)


async def end_stream(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.API)
    stream_id = request.path_params["id"]
    stream = await svc.store.streams.end(stream_id, int(svc.clock() * 1000)) if is_stream_id(stream_id) else None
    if stream is None:
        raise ApiError(404, f"stream {stream_id}: not found")
    svc.playlists.poke(stream_id)
    return api_json(stream.api_json())


async def delete_stream(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.API)
    stream_id = request.path_params["id"]
    if not (is_stream_id(stream_id) and await svc.store.streams.delete(stream_id)):
        raise ApiError(404, f"stream {stream_id}: not found")
    await svc.playlists.stream_deleted(stream_id)
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def stream_hook(request: Request) -> Response:
    """go-livepeer's -authWebhookUrl: may this ingest go on, and with which profiles?"""
    svc = services(request)
    # Broadcasters (and admins) only: an API key creates streams, it does not accept ingests.
    caller = await svc.credentials.require_caller(request, svc.store.credentials, Role.BROADCASTER)
    body = await read_json(request, svc.settings.max_body_bytes)
    try:
        url = parse_hook(body)
    except FieldErrors as exc:
        raise ApiError(422, *exc.errors) from None
    stream_id = stream_id_from_ingest_url(url)
    if stream_id is None:
        raise ApiError(422, "url: its path does not name a stream (expected .../live/<stream id>/...)")
    stream = await _load(svc, stream_id)
    if stream.ended:
        raise ApiError(410, f"stream {stream_id}: has ended")
    await _note_carrier(svc, stream.id, url, caller)
    return api_json({"manifestId": stream.id, "profiles": [p.to_json() for p in stream.profiles]})


async def _note_carrier(svc: Services, stream_id: str, ingest_url: str, caller: Caller) -> None:
    """The ingest URL is addressed to the broadcaster asking: from then on it may carry the stream,
    so the playlist merger asks it at once instead of waiting for its next heartbeat. A broadcaster
    with its own credential can name only itself as the carrier."""
    origin = origin_of(ingest_url)
    if origin is None:
        return
    for b in await svc.store.registry.list_all():
        if b.address == origin and caller.may_act_for(b.name):
            await svc.store.registry.note_carrier(stream_id, b.name, svc.clock())
            svc.playlists.poke(stream_id)  # refresh now with the new carrier
            return


def stream_id_from_ingest_url(url: str) -> str | None:
    """The stream id an ingest URL names: the segment after /live/ or /stream/, extension dropped."""
    try:
        parts = [p for p in urlsplit(url).path.split("/") if p]
    except ValueError:
        return None
    for i, part in enumerate(parts[:-1]):
        if part in ("live", "stream"):
            candidate = parts[i + 1].split(".", 1)[0]
            return candidate if is_stream_id(candidate) else None
    return None


ROUTES = [
    Route("/api/stream", create_stream, methods=["POST"]),
    Route("/api/stream", list_streams, methods=["GET"]),
    Route("/api/stream/hook", stream_hook, methods=["POST"]),
    Route("/api/stream/{id:stream_id}", get_stream, methods=["GET"]),
    Route("/api/stream/{id:stream_id}", delete_stream, methods=["DELETE"]),
    Route("/api/stream/{id:stream_id}/end", end_stream, methods=["POST"]),
]
