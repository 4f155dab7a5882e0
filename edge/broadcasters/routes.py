"""The broadcaster API: self-registration and heartbeats, drain, the admin listing, each
broadcaster's credentials, and Livepeer's `GET /api/broadcaster` (where should this ingest send its
segments?).

Validation, liveness and ranking are broadcaster_registry's pure functions; this module only reads
requests, calls them with the time from `svc.clock()`, and writes answers.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broadcaster_registry.credentials import is_credential_id, issue
from broadcaster_registry.liveness import LivenessPolicy, health
from broadcaster_registry.model import Broadcaster
from broadcaster_registry.validation import ValidationError, parse_name, parse_registration, parse_state_body
from edge.auth import Caller, Role
from edge.broadcasters.ingest_path import choose_for, joined_headers
from edge.errors import NO_STORE, ApiError, api_json
from edge.jsonbody import read_json
from edge.query import refuse_unknown_query, single_query
from edge.services import Services, services
from edge.store import StoreUnavailable
from edge.streams.model import is_stream_id

log = logging.getLogger("edge.broadcasters")

def broadcaster_json(b: Broadcaster, now: float, policy: LivenessPolicy) -> dict[str, Any]:
    """The API's JSON of a broadcaster with its health at `now` (the stored form is
    broadcaster_registry.codec's, versioned, and may change without changing this)."""
    verdict = health(b, now, policy)
    return {
        "name": b.name,
        "address": b.address,
        "region": b.region,
        "latitude": b.latitude,
        "longitude": b.longitude,
        "capacity": b.capacity,
        "load": {
            "activeStreams": b.load.active_streams,
            "cpu": b.load.cpu,
            "bandwidthBps": b.load.bandwidth_bps,
            "bandwidthCapacityBps": b.load.bandwidth_capacity_bps,
        },
        "streams": sorted(b.streams),
        "state": b.state,
        "source": b.source,
        "lastHeartbeat": b.last_heartbeat,
        "registeredAt": b.registered_at,
        "probe": {
            "consecutiveFailures": b.probe.consecutive_failures,
            "consecutiveSuccesses": b.probe.consecutive_successes,
            "down": b.probe.down,
            "lastProbeAt": b.probe.last_probe_at,
        },
        "ejection": {
            "consecutiveFailures": b.ejection.consecutive_failures,
            "timesEjected": b.ejection.times_ejected,
            "ejectedUntil": b.ejection.ejected_until,
        },
        "health": {"healthy": verdict.healthy, "serving": verdict.serving, "reason": verdict.reason},
    }


async def _known(svc: Services, name: str) -> Broadcaster:
    """The broadcaster a path names, or 404 (a name that breaks the naming rule cannot exist)."""
    try:
        b = await svc.store.registry.get(parse_name(name))
    except ValidationError:
        b = None
    if b is None:
        raise ApiError(404, f"broadcaster {name}: not found")
    return b


async def _caller_for(svc: Services, request: Request, name: str) -> Caller:
    """The caller, if it may act for broadcaster `name`: an admin, the shared broadcaster token
    (when turned on), or `name`'s own credential; 403 for another broadcaster's credential."""
    caller = await svc.credentials.require_caller(request, svc.store.credentials, Role.BROADCASTER)
    if not caller.may_act_for(name):
        raise ApiError(403, f"authorization: this credential is broadcaster {caller.broadcaster}'s; "
                            f"it may act for {caller.broadcaster} only")
    return caller


def _may_change(role: Role, b: Broadcaster) -> None:
    # Static entries are the operator's (the broadcasters file): only an admin acts on them.
    if b.source == "static" and role is not Role.ADMIN:
        raise ApiError(
            403, f"broadcaster {b.name}: is a static entry from the broadcasters file; only an admin may change it"
        )


async def put_broadcaster(request: Request) -> Response:
    """Register or heartbeat: one idempotent call, the body replacing what the node said before."""
    svc = services(request)
    await _caller_for(svc, request, request.path_params["name"])
    refuse_unknown_query(request, ())
    try:
        name = parse_name(request.path_params["name"])
    except ValidationError as exc:
        raise ApiError(400, *exc.errors) from None
    body = await read_json(request, svc.settings.max_body_bytes)
    try:
        registration = parse_registration(body, svc.destinations)
    except ValidationError as exc:
        raise ApiError(422, *exc.errors) from None
    previous = await svc.store.registry.get(name)
    if previous is not None and previous.source == "static":
        raise ApiError(
            409, f"name: {name} is a static broadcaster from the broadcasters file; register under another name"
        )
    now = svc.clock()
    b = await svc.store.registry.upsert(name, registration, now)
    if previous is None:
        log.info("broadcaster registered", extra={"fields": {"broadcaster": name, "address": b.address}})
        return api_json(broadcaster_json(b, now, svc.liveness), 201, {"Location": f"/api/broadcasters/{name}"})
    return api_json(broadcaster_json(b, now, svc.liveness))


async def delete_broadcaster(request: Request) -> Response:
    """Drain (never handed out again, still merged while it serves), or with ?forget=true remove it."""
    svc = services(request)
    role = (await _caller_for(svc, request, request.path_params["name"])).role
    refuse_unknown_query(request, ("forget",))
    forget = single_query(request, "forget")
    forget = "false" if forget is None else forget  # given empty is not "false"
    if forget not in ("true", "false"):
        raise ApiError(400, "forget: must be true or false")
    b = await _known(svc, request.path_params["name"])
    _may_change(role, b)
    if forget == "true":
        if role is not Role.ADMIN:
            raise ApiError(403, "forget: only an admin may remove a broadcaster; without forget it is drained")
        if b.source == "static":
            raise ApiError(409, f"broadcaster {b.name}: is static; remove it from the broadcasters file instead")
        await svc.store.registry.delete(b.name)
        log.info("broadcaster removed", extra={"fields": {"broadcaster": b.name}})
        return Response(status_code=204, headers=NO_STORE)
    drained = await svc.store.registry.set_state(b.name, "draining")
    if drained is None:  # removed meanwhile
        raise ApiError(404, f"broadcaster {b.name}: not found")
    if b.state != "draining":
        log.info("broadcaster draining", extra={"fields": {"broadcaster": b.name}})
    return api_json(broadcaster_json(drained, svc.clock(), svc.liveness))


async def put_state(request: Request) -> Response:
    """Set the state explicitly: {"state": "active"} undoes a drain, {"state": "draining"} drains."""
    svc = services(request)
    role = (await _caller_for(svc, request, request.path_params["name"])).role
    refuse_unknown_query(request, ())
    b = await _known(svc, request.path_params["name"])
    body = await read_json(request, svc.settings.max_body_bytes)
    try:
        state = parse_state_body(body)
    except ValidationError as exc:
        raise ApiError(422, *exc.errors) from None
    _may_change(role, b)
    changed = await svc.store.registry.set_state(b.name, state)
    if changed is None:
        raise ApiError(404, f"broadcaster {b.name}: not found")
    if b.state != state:
        log.info("broadcaster state set", extra={"fields": {"broadcaster": b.name, "state": state}})
    return api_json(broadcaster_json(changed, svc.clock(), svc.liveness))


async def list_broadcasters(request: Request) -> Response:
    """Every broadcaster with its health and why, for operators."""
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN)
    refuse_unknown_query(request, ())
    now = svc.clock()
    return api_json([broadcaster_json(b, now, svc.liveness) for b in await svc.store.registry.list_all()])


async def choose_broadcaster(request: Request) -> Response:
    """Livepeer's `GET /api/broadcaster`: `[{"address": ...}, ...]`, best first for this client.

    `?streamId=<id>` (our extension) remembers that the stream was sent to the first one, so its
    playlists are merged from there even before that broadcaster reports carrying it.
    """
    svc = services(request)
    await svc.credentials.require_caller(request, svc.store.credentials, Role.API, Role.BROADCASTER)
    refuse_unknown_query(request, ("streamId",))
    stream_id = single_query(request, "streamId")
    if stream_id is not None:
        await _check_stream(svc, stream_id)
    client = request.client
    now = svc.clock()
    chosen = await choose_for(svc, client.host if client else "", joined_headers(request.scope["headers"]), now)
    if chosen and stream_id is not None:
        await svc.selector.note_handout(stream_id, chosen[0].name, now)
    return Response(svc.answer_pieces.body(chosen), media_type="application/json", headers=NO_STORE)


async def _check_stream(svc: Services, stream_id: str) -> None:
    if not is_stream_id(stream_id):
        raise ApiError(400, "streamId: must be a stream id as returned by POST /api/stream")
    try:
        stream = await svc.store.streams.get(stream_id)
    except StoreUnavailable:
        return  # degraded: answering beats checking
    if stream is None:
        raise ApiError(404, f"streamId: stream {stream_id} not found")
    if stream.ended:
        raise ApiError(410, f"streamId: stream {stream_id} has ended")


def _credential_name(request: Request) -> str:
    try:
        return parse_name(request.path_params["name"])
    except ValidationError as exc:
        raise ApiError(400, *exc.errors) from None


async def issue_credential(request: Request) -> Response:
    """A new credential for the broadcaster (admin); its token is in this answer and nowhere else.

    The broadcaster need not be registered yet: issue first, then start it with the token."""
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN)
    refuse_unknown_query(request, ())
    name = _credential_name(request)
    credential, token = issue(name, svc.clock())
    await svc.store.credentials.add(credential)
    log.info("broadcaster credential issued", extra={"fields": {"broadcaster": name, "credential": credential.id}})
    return api_json(
        {**credential.to_json(), "token": token}, 201,
        {"Location": f"/api/broadcasters/{name}/credentials/{credential.id}"},
    )


async def list_credentials(request: Request) -> Response:
    """The broadcaster's credentials (admin): ids and creation times, never a secret."""
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN)
    refuse_unknown_query(request, ())
    name = _credential_name(request)
    return api_json([c.to_json() for c in await svc.store.credentials.list_for(name)])


async def revoke_credential(request: Request) -> Response:
    """Revoke one credential (admin): from the next request on, on every node, it is refused."""
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN)
    refuse_unknown_query(request, ())
    name = _credential_name(request)
    credential_id = request.path_params["id"]
    if not (is_credential_id(credential_id) and await svc.store.credentials.revoke(name, credential_id)):
        raise ApiError(404, f"credential {credential_id}: not found for broadcaster {name}")
    log.info("broadcaster credential revoked", extra={"fields": {"broadcaster": name, "credential": credential_id}})
    return Response(status_code=204, headers=NO_STORE)


ROUTES = [
    Route("/api/broadcaster", choose_broadcaster, methods=["GET"]),
    Route("/api/broadcasters", list_broadcasters, methods=["GET"]),
    Route("/api/broadcasters/{name}", put_broadcaster, methods=["PUT"]),
    Route("/api/broadcasters/{name}", delete_broadcaster, methods=["DELETE"]),
    Route("/api/broadcasters/{name}/state", put_state, methods=["PUT"]),
    Route("/api/broadcasters/{name}/credentials", issue_credential, methods=["POST"]),
    Route("/api/broadcasters/{name}/credentials", list_credentials, methods=["GET"]),
    Route("/api/broadcasters/{name}/credentials/{id}", revoke_credential, methods=["DELETE"]),
]
