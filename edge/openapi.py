"""The API's OpenAPI 3.1 description, served at `/openapi.json`, and a page that renders it at `/docs`.

Request bodies are the `schema()` of the very rules the handlers read with (edge.streams.parse,
broadcaster_registry.validation), so the description cannot drift from the validation; what the
answers look like and which statuses each route gives is declared here, beside the route table, and
checked against a real server by a fuzzer (tests/test_openapi_fuzz.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broadcaster_registry.validation import NAME, REGISTRATION, STATE_BODY
from edge.errors import api_json
from edge.pages.routes import page
from edge.segments.policy import SEGMENT_NAME_PATTERN
from edge.services import services
from edge.streams.model import RENDITION_PATTERN, STREAM_ID as STREAM_ID_PATTERN
from edge.streams.parse import HOOK, create_rule

JSON = "application/json"
MPEGURL = "application/vnd.apple.mpegurl"

# What each status means on this API; every answer but a playlist's is JSON.
STATUS = {
    200: "OK", 201: "Created", 204: "No content", 304: "Not modified (If-None-Match)",
    400: "Malformed request: not JSON, bad query parameter or path parameter",
    401: "No credentials", 403: "Credentials that do not fit this route", 404: "Not found",
    409: "Conflicts with a static broadcaster from the broadcasters file", 410: "The stream has ended",
    413: "Body larger than EDGE_MAX_BODY_BYTES", 422: "Invalid field(s), each named in `errors`",
    503: "The store is unavailable; retry",
}
ERROR_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 503}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": STATUS[status], "content": {JSON: {"schema": _ref("Error")}}}
    if status == 503:
        out["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    if status == 401:
        out["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    return out


def _responses(ok: dict[int, dict[str, Any]], errors: set[int]) -> dict[str, Any]:
    out = {str(status): response for status, response in ok.items()}
    out.update({str(status): _error_response(status) for status in sorted(errors)})
    return out


def _json(schema: dict[str, Any], description: str = "OK", **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _op(op_id: str, summary: str, security: list[str] | None, responses: dict[str, Any],
        **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses, **extra}
    out["security"] = [{name: []} for name in security] if security else []
    return out


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


# The same patterns the handlers check (a value that breaks them is a 404 or 400).
STREAM_ID_SCHEMA = {"type": "string", "pattern": STREAM_ID_PATTERN.pattern}
STREAM_ID = _param("id", "path", STREAM_ID_SCHEMA, "A stream id, as POST /api/stream answered it")
SEGMENT_NAME = _param("name", "path", {"type": "string", "pattern": SEGMENT_NAME_PATTERN},
                      "The ingest's number, `e<epoch>-<number>` after an ingest restart")
RENDITION = _param("rendition", "path", {"type": "string", "pattern": RENDITION_PATTERN},
                   "A rendition name; `source` is the untranscoded input")
BROADCASTER_NAME = _param("name", "path", NAME.schema(), "A broadcaster name: a DNS label")
API_ROLES = ["apiKey", "adminToken"]
BROADCASTER_ROLES = ["broadcasterToken", "adminToken"]
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}


def _schemas(max_dvr_window: int) -> dict[str, Any]:
    profile = {
        "type": "object", "required": ["name", "width", "height", "bitrate", "fps"],
        "properties": {"name": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                       "bitrate": {"type": "integer"}, "fps": {"type": "integer"}, "fpsDen": {"type": "integer"},
                       "gop": {"type": "string"}, "profile": {"type": "string"}},
    }
    return {
        "Error": {
            "type": "object", "required": ["errors"], "additionalProperties": False,
            "properties": {"errors": {"type": "array", "minItems": 1, "items": {"type": "string"},
                                      "description": "`<field>: <problem>`, one per problem"}},
        },
        "CreateStream": create_rule(max_dvr_window).schema(),
        "Hook": HOOK.schema(),
        "Registration": REGISTRATION.schema(),
        "StateChange": STATE_BODY.schema(),
        "Profile": profile,
        "Stream": {
            "type": "object",
            "required": ["id", "kind", "name", "profiles", "presets", "createdAt", "endedAt", "renditions",
                         "playbackUrl", "ended", "isActive"],
            "properties": {
                "id": {"type": "string", "format": "uuid"}, "kind": {"const": "stream"}, "name": {"type": "string"},
                "profiles": {"type": "array", "items": _ref("Profile")},
                "presets": {"type": "array", "items": {"type": "string"}},
                "createdAt": {"type": "integer", "description": "ms since the epoch"},
                "endedAt": NULLABLE_INTEGER,
                "sourceInfo": {"type": "object", "required": ["width", "height", "fps"], "properties": {
                    "width": {"type": "integer"}, "height": {"type": "integer"}, "fps": {"type": "number"}}},
                "dvrWindowSeconds": {"type": "integer"},
                "segmentMode": {"enum": ["direct", "redirect", "mirror"]},
                "record": {"type": "boolean"},
                "recording": {"type": "object", "required": ["playbackUrl", "renditions", "ready"], "properties": {
                    "playbackUrl": {"type": "string"}, "ready": {"type": "boolean"},
                    "renditions": {"type": "object", "additionalProperties": {"type": "string"}}},
                    "description": "with record: the recording's playlists (VOD once ready)"},
                "renditions": {"type": "object", "required": ["source"], "additionalProperties": {"type": "string"},
                               "description": "rendition name -> path of its media playlist"},
                "playbackUrl": {"type": "string"}, "ended": {"type": "boolean"}, "isActive": {"type": "boolean"},
            },
        },
        "HookAnswer": {
            "type": "object", "required": ["manifestId", "profiles"],
            "properties": {"manifestId": {"type": "string"}, "profiles": {"type": "array", "items": _ref("Profile")}},
        },
        "Candidate": {
            "type": "object", "required": ["address", "name", "region"],
            "properties": {"address": {"type": "string"}, "name": {"type": "string"},
                           "region": {"type": ["string", "null"]}},
        },
**_health_schemas(),
        "Broadcaster": {
            "type": "object",
            "required": ["name", "address", "region", "latitude", "longitude", "capacity", "load", "streams",
                         "state", "source", "lastHeartbeat", "registeredAt", "probe", "ejection", "health"],
            "properties": {
                "name": {"type": "string"}, "address": {"type": "string"}, "region": {"type": ["string", "null"]},
                "latitude": NULLABLE_NUMBER, "longitude": NULLABLE_NUMBER, "capacity": NULLABLE_INTEGER,
                "load": {"type": "object", "properties": {
                    "activeStreams": NULLABLE_INTEGER, "cpu": NULLABLE_NUMBER, "bandwidthBps": NULLABLE_NUMBER,
                    "bandwidthCapacityBps": NULLABLE_NUMBER}},
                "streams": {"type": "array", "items": {"type": "string"}},
                "state": {"enum": ["active", "draining"]}, "source": {"enum": ["self", "static"]},
                "lastHeartbeat": NULLABLE_NUMBER, "registeredAt": NULLABLE_NUMBER,
                "probe": {"type": "object"}, "ejection": {"type": "object"},
                "health": {"type": "object", "required": ["healthy", "serving", "reason"], "properties": {
                    "healthy": {"type": "boolean"}, "serving": {"type": "boolean"}, "reason": {"type": "string"}}},
            },
        },
    }


NULLABLE_STRING = {"type": ["string", "null"]}


def _health_schemas() -> dict[str, Any]:
    """What the operator page reads: stream health, fetch history, the viewer's view of the fleet."""
    segment = {
        "type": "object",
        "required": ["msn", "number", "duration", "uri", "broadcaster", "discontinuity", "substitute", "hole",
                     "restart", "duplicate", "copies", "publishedAt", "listedAt", "lagSeconds"],
        "properties": {
            "msn": {"type": "integer"}, "number": {"type": "integer", "description": "ingest sequence number"},
            "duration": {"type": "number"}, "uri": {"type": "string"},
            "broadcaster": {"type": "string", "description": "whose copy was published"},
            "discontinuity": {"type": "boolean"}, "substitute": NULLABLE_STRING,
            "hole": {"type": "integer", "description": "ingest numbers passed over just before it"},
            "restart": {"type": "boolean", "description": "its number did not grow: a new ingest epoch"},
            "duplicate": {"type": "boolean"},
            "copies": {"type": "integer", "description": "carriers listing its number when published (0: unknown)"},
            "publishedAt": {**NULLABLE_NUMBER, "description": "when this node saw it published; null: before it watched"},
            "listedAt": {**NULLABLE_NUMBER, "description": "when a carrier was first seen listing it (lease holder only)"},
            "lagSeconds": NULLABLE_NUMBER,
        },
    }
    bucket = {"type": "object",
              "required": ["start", "ok", "errors", "failed", "latencyMeanSeconds", "latencyMaxSeconds"],
              "properties": {"start": {"type": "number"}, "ok": {"type": "integer"},
                             "errors": {"type": "integer", "description": "answered, not with what was asked"},
                             "failed": {"type": "integer", "description": "no answer (timeout, refused, 5xx)"},
                             "latencyMeanSeconds": NULLABLE_NUMBER, "latencyMaxSeconds": NULLABLE_NUMBER}}
    fetches = {
        "type": "object", "required": ["lastFetch", "buckets"],
        "properties": {
            "lastFetch": {"type": ["object", "null"], "required": ["outcome", "status", "latencySeconds", "at"],
                          "properties": {"outcome": {"enum": ["ok", "http_error", "timeout", "connect_error",
                                                              "too_large", "refused"]},
                                         "status": NULLABLE_INTEGER, "latencySeconds": {"type": "number"},
                                         "at": {"type": "number"}}},
            "buckets": {"type": "array", "items": bucket, "description": "oldest first, 10 s each"},
        },
    }
    lag = {"type": "object", "required": ["count", "lastSeconds", "meanSeconds", "maxSeconds"],
           "properties": {"count": {"type": "integer"}, "lastSeconds": NULLABLE_NUMBER,
                          "meanSeconds": NULLABLE_NUMBER, "maxSeconds": NULLABLE_NUMBER}}
    rendition = {
        "type": "object", "required": ["name", "published", "window", "timeline", "lag", "secondsSinceNewSegment"],
        "properties": {
            "name": {"type": "string"}, "published": {"type": "boolean"},
            "targetDuration": {"type": "integer"}, "mediaSequence": {"type": "integer"},
            "discontinuitySequence": {"type": "integer"}, "nextNumber": NULLABLE_INTEGER,
            "ended": {"type": "boolean"}, "version": {"type": "integer"},
            "holesPassed": {"type": "integer"}, "restarts": {"type": "integer"},
            "windowSegments": {"type": "integer", "description": "segments in the published window"},
            "window": {"type": "array", "items": _ref("TimelineSegment"),
                       "description": "the published window (its newest 1,024 segments at most)"},
            "timeline": {"type": "array", "items": _ref("TimelineSegment"),
                         "description": "what this node saw published over the last historySeconds"},
            "lag": lag, "secondsSinceNewSegment": NULLABLE_NUMBER,
        },
    }
    return {
        "TimelineSegment": segment,
        "Fetches": fetches,
        "StreamHealth": {
            "type": "object",
            "required": ["stream", "name", "ended", "node", "at", "watched", "leaseHolder", "leaseHeldHere",
                         "segmentMode", "historySeconds", "renditions", "carriers", "events"],
            "properties": {
                "stream": {"type": "string"}, "name": {"type": "string"}, "ended": {"type": "boolean"},
                "node": {"type": "string", "description": "the edge node that answered: timelines are per node"},
                "at": {"type": "number"},
                "watched": {"type": "boolean", "description": "this node polls or follows the stream"},
                "leaseHolder": {**NULLABLE_STRING, "description": "the node that polls and publishes it"},
                "leaseHeldHere": {"type": "boolean"},
                "segmentMode": {"enum": ["direct", "redirect", "mirror"]},
                "historySeconds": {"type": "number"},
                "renditions": {"type": "array", "items": rendition},
                "carriers": {"type": "array", "items": {"allOf": [_ref("Fetches"), {
                    "type": "object", "required": ["name", "address", "region", "answeredLastRound"],
                    "properties": {"name": {"type": "string"}, "address": {"type": "string"},
                                   "region": NULLABLE_STRING, "answeredLastRound": {"type": ["boolean", "null"]}}}]}},
                "events": {"type": "array", "items": {
                    "type": "object", "required": ["at", "kind", "rendition", "number", "broadcaster"],
                    "properties": {"at": {"type": "number"}, "kind": {"enum": ["late"]},
                                   "rendition": {"type": "string"}, "number": {"type": "integer"},
                                   "broadcaster": {"type": "string"}}}},
            },
        },
        "FleetFetches": {
            "type": "object", "required": ["node", "at", "bucketSeconds", "broadcasters"],
            "properties": {"node": {"type": "string"}, "at": {"type": "number"}, "bucketSeconds": NULLABLE_NUMBER,
                           "broadcasters": {"type": "object", "additionalProperties": _ref("Fetches")}},
        },
        "Viewer": {
            "type": "object", "required": ["location", "order", "tied"],
            "properties": {
                "location": {"type": ["object", "null"], "required": ["latitude", "longitude", "source"],
                             "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"},
                                            "country": NULLABLE_STRING, "city": NULLABLE_STRING,
                                            "source": {"type": "string"}}},
                "order": {"type": "array", "maxItems": 10, "items": {
                    "type": "object", "required": ["name", "address", "distanceKm", "costKm"],
                    "properties": {"name": {"type": "string"}, "address": {"type": "string"},
                                   "distanceKm": NULLABLE_NUMBER, "costKm": {"type": "number"}}}},
                "tied": {"type": "integer", "description": "how many lead together (handed out in random order)"},
            },
        },
    }


def _playlist_responses() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "200": {"description": "The playlist", "content": {MPEGURL: {"schema": {"type": "string"}}},
                "headers": {"ETag": {"required": True, "schema": {"type": "string"}},
                            "Cache-Control": {"required": True, "schema": {"type": "string"}}}},
        "304": {"description": STATUS[304]},
        "404": {"description": "Unknown stream or rendition, or nothing published yet (with Retry-After: 1)",
                "content": text},
    }


STREAM_LINKS = {
    "GetStream": {"operationId": "getStream", "parameters": {"id": "$response.body#/id"}},
    "EndStream": {"operationId": "endStream", "parameters": {"id": "$response.body#/id"}},
    "DeleteStream": {"operationId": "deleteStream", "parameters": {"id": "$response.body#/id"}},
    "MasterPlaylist": {"operationId": "masterPlaylist", "parameters": {"id": "$response.body#/id"}},
    "SourcePlaylist": {"operationId": "mediaPlaylist", "parameters": {"id": "$response.body#/id", "rendition": "source"}},
    "ChooseBroadcaster": {"operationId": "chooseBroadcaster", "parameters": {"streamId": "$response.body#/id"}},
}
BROADCASTER_LINKS = {
    "SetState": {"operationId": "setBroadcasterState", "parameters": {"name": "$request.path.name"}},
    "Drain": {"operationId": "drainBroadcaster", "parameters": {"name": "$request.path.name"}},
}


_CREDENTIAL: dict[str, Any] = {
    "type": "object", "required": ["id", "broadcaster", "createdAt"],
    "properties": {"id": {"type": "string"}, "broadcaster": {"type": "string"}, "createdAt": {"type": "integer"}},
}
_CREDENTIAL_ISSUED: dict[str, Any] = {
    **_CREDENTIAL, "required": [*_CREDENTIAL["required"], "token"],
    "properties": {**_CREDENTIAL["properties"], "token": {"type": "string"}},
}


def _paths() -> dict[str, Any]:
    stream = _ref("Stream")
    location = {"Location": {"required": True, "schema": {"type": "string"}}}
    return {
        "/api/stream": {
            "post": _op("createStream", "Create a stream", API_ROLES, _responses(
                {201: _json(stream, "The stored stream", headers=location, links=STREAM_LINKS)},
                {400, 401, 403, 413, 422, 503}), requestBody=_body(_ref("CreateStream"))),
            "get": _op("listStreams", "Streams, newest first", API_ROLES, _responses(
                {200: _json({"type": "array", "items": stream}, "One page; the next is in the Link header",
                            headers={"Link": {"schema": {"type": "string"}}})}, {400, 401, 403, 503}),
                parameters=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"},
                     "description": "From the Link header of the previous page"},
                ]),
        },
        "/api/stream/hook": {
            "post": _op("streamHook", "go-livepeer's auth webhook: may this ingest go on, with which profiles?",
                        ["broadcasterToken", "broadcasterBasic", "adminToken"], _responses(
                            {200: _json(_ref("HookAnswer"))}, {400, 401, 403, 404, 410, 413, 422, 503}),
                        requestBody=_body(_ref("Hook"))),
        },
        "/api/stream/{id}": {
            "parameters": [STREAM_ID],
            "get": _op("getStream", "One stream", API_ROLES, _responses({200: _json(stream)}, {401, 403, 404, 503})),
            "delete": _op("deleteStream", "Delete a stream", API_ROLES, _responses(
                {204: {"description": STATUS[204]}}, {401, 403, 404, 503})),
        },
        "/api/stream/{id}/end": {
            "parameters": [STREAM_ID],
            "post": _op("endStream", "End a stream (idempotent); its playlists close", API_ROLES, _responses(
                {200: _json(stream)}, {401, 403, 404, 503})),
        },
        "/api/broadcaster": {
            "get": _op("chooseBroadcaster", "Where should this ingest send its segments? Best first",
                       ["apiKey", "broadcasterToken", "adminToken"], _responses(
                           {200: _json({"type": "array", "maxItems": 10, "items": _ref("Candidate")})},
                           {400, 401, 403, 404, 410, 503}),
                       parameters=[_param("streamId", "query", STREAM_ID_SCHEMA,
                                          "Records the hand-out for this stream")]),
        },
        "/api/broadcasters": {
            "get": _op("listBroadcasters", "Every broadcaster with its health and why", ["adminToken"],
                       _responses({200: _json({"type": "array", "items": _ref("Broadcaster")})},
                                  {400, 401, 403, 503})),
        },
        "/api/broadcasters/{name}": {
            "parameters": [BROADCASTER_NAME],
            "put": _op("putBroadcaster", "Register or heartbeat (idempotent)", BROADCASTER_ROLES, _responses(
                {200: _json(_ref("Broadcaster"), "Heartbeat", links=BROADCASTER_LINKS),
                 201: _json(_ref("Broadcaster"), "Registered", headers=location, links=BROADCASTER_LINKS)},
                {400, 401, 403, 409, 413, 422, 503}), requestBody=_body(_ref("Registration"))),
            "delete": _op("drainBroadcaster", "Drain, or with forget=true (admin) remove", BROADCASTER_ROLES,
                          _responses({200: _json(_ref("Broadcaster"), "Draining"), 204: {"description": "Removed"}},
                                     {400, 401, 403, 404, 409, 503}),
                          parameters=[{"name": "forget", "in": "query",
                                       "schema": {"type": "string", "enum": ["true", "false"]}}]),
        },
        "/api/broadcasters/{name}/state": {
            "parameters": [BROADCASTER_NAME],
            "put": _op("setBroadcasterState", "Drain or reactivate", BROADCASTER_ROLES, _responses(
                {200: _json(_ref("Broadcaster"))}, {400, 401, 403, 404, 409, 413, 422, 503}),
                requestBody=_body(_ref("StateChange"))),
        },
        "/api/broadcasters/{name}/credentials": {
            "parameters": [BROADCASTER_NAME],
            "post": _op("issueCredential", "Issue a credential bound to this broadcaster; its token is in this answer only",
                        ["adminToken"], _responses(
                            {201: _json(_CREDENTIAL_ISSUED, "The credential with its token", headers=location)},
                            {400, 401, 403, 503})),
            "get": _op("listCredentials", "The broadcaster's credentials, never a secret", ["adminToken"],
                       _responses({200: _json({"type": "array", "items": _CREDENTIAL})}, {400, 401, 403, 503})),
        },
        "/api/broadcasters/{name}/credentials/{id}": {
            "parameters": [BROADCASTER_NAME, _param("id", "path", {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                                                    "The credential's public id")],
            "delete": _op("revokeCredential", "Revoke a credential: refused from the next request on, on every node",
                          ["adminToken"], _responses({204: {"description": STATUS[204]}}, {400, 401, 403, 404, 503})),
        },
        "/stream/{id}.m3u8": {
            "parameters": [STREAM_ID],
            "get": _op("masterPlaylist", "The stream's master playlist (players; no key)", None,
                       _playlist_responses()),
        },
        "/stream/{id}/{rendition}.m3u8": {
            "parameters": [STREAM_ID, RENDITION],
            "get": _op("mediaPlaylist", "One rendition's live media playlist, merged (players; no key)", None,
                       _playlist_responses()),
        },
        "/stream/{id}/{rendition}/{name}.ts": {
            "parameters": [STREAM_ID, RENDITION, SEGMENT_NAME],
            "get": _op("segment", "A segment published in redirect or mirror mode (players; no key): its stored "
                       "bytes (long cache), or a redirect to a live copy (short cache) or to the store", None, {
                           "200": {"description": "The stored segment",
                                   "content": {"video/mp2t": {"schema": {"type": "string", "format": "binary"}}}},
                           "302": {"description": "To a live copy, or to the store's public URL",
                                   "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                           # A name the route cannot match (a "/" in it) is the router's 404: JSON.
                           "404": {"description": "No such segment, or no copy left",
                                   "content": {"text/plain": {"schema": {"type": "string"}},
                                               JSON: {"schema": _ref("Error")}}},
                           "503": _error_response(503),
                       }),
        },
        "/api/segment-store": {
            "get": _op("segmentStore", "The segment store and its use", ["adminToken"], _responses(
                {200: _json({"type": "object", "required": ["store"], "properties": {
                    "store": {"type": ["string", "null"]}, "defaultMode": {"enum": ["direct", "redirect", "mirror"]},
                    "objects": {"type": "integer"}, "bytes": {"type": "integer"}}})}, {401, 403, 503})),
        },
        "/api/stream/{id}/health": {
            "parameters": [STREAM_ID],
            "get": _op("streamHealth", "What the edge is doing to a stream: per rendition the published window and "
                       "this node's timeline of the last minutes (supplier, holes, discontinuities, late and "
                       "duplicate arrivals, listed-to-published lag), the carriers' last fetches, the segment "
                       "mode and the lease holder", API_ROLES,
                       _responses({200: _json(_ref("StreamHealth"))}, {400, 401, 403, 404, 503})),
        },
        "/api/fetches": {
            "get": _op("broadcastersFetches", "This node's recent fetches per broadcaster: the last one and 10 s "
                       "buckets of outcomes and latency over ten minutes", ["adminToken"],
                       _responses({200: _json(_ref("FleetFetches"))}, {400, 401, 403})),
        },
        "/api/viewer": {
            "get": _op("viewer", "Where the edge locates the caller, and the order GET /api/broadcaster would "
                       "give it there (nothing reserved)", API_ROLES,
                       _responses({200: _json(_ref("Viewer"))}, {400, 401, 403, 503})),
        },
        "/healthz": {
            "get": _op("healthz", "The process answers", None, {"200": _json({
                "type": "object", "required": ["status", "node"],
                "properties": {"status": {"const": "ok"}, "node": {"type": "string"}}})}),
        },
        "/readyz": {
            "get": _op("readyz", "The store answers", None, {
                "200": _json({"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}}),
                "503": _json({"type": "object", "required": ["status", "errors"], "properties": {
                    "status": {"const": "unavailable"}, "errors": {"type": "array", "items": {"type": "string"}}}},
                    "The store does not answer"),
            }),
        },
    }


@lru_cache(maxsize=4)
def document(max_dvr_window: int) -> dict[str, Any]:
    """The whole description, for an edge whose longest DVR window is `max_dvr_window`."""
    bearer = "Authorization: Bearer <token>; a missing one is 401, one that does not fit is 403"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hls-edge",
            "version": "1",
            "description": "Streams API (Livepeer-compatible), broadcaster registry and merged live HLS "
                           "playlists. Errors always have the shape {\"errors\": [\"<field>: <problem>\", ...]}. "
                           "Text fields refuse text that is not Unicode (lone surrogates) and control characters; "
                           "unknown fields are refused.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(max_dvr_window),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": f"An API key (EDGE_API_KEYS). {bearer}"},
                "broadcasterToken": {"type": "http", "scheme": "bearer",
                                     "description": f"A broadcaster token (EDGE_BROADCASTER_TOKENS). {bearer}"},
                "broadcasterBasic": {"type": "http", "scheme": "basic",
                                     "description": "A broadcaster token as the password (go-livepeer sends URL "
                                                    "user info so)"},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": f"An admin token (EDGE_ADMIN_TOKENS): every route. {bearer}"},
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return api_json(document(int(services(request).settings.max_dvr_window)))


async def docs(request: Request) -> Response:
    return page("docs.html")


ROUTES = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]
