"""How the API answers: JSON that is never cached, and one error shape for every failure,
`{"errors": ["<field>: <problem>", ...]}`."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from jsonfields.text import dumps_utf8

log = logging.getLogger("edge.errors")


class ApiError(Exception):
    """Raised anywhere in a request; rendered as the API's error shape with its status."""

    def __init__(self, status: int, *errors: str, headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors)
        self.headers = headers


NO_STORE = {"Cache-Control": "no-store"}
# Status of a request whose client left before it was answered (nginx's convention): logged and
# counted as such, never sent.
CLIENT_CLOSED = 499


class SafeJSONResponse(JSONResponse):
    """JSON that always renders: text that cannot be encoded (stored by an older version, or
    echoed from a request) is repaired instead of failing the answer with a 500."""

    def render(self, content: object) -> bytes:
        return dumps_utf8(content)


def api_json(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """An API answer: it depends on the caller and the moment, so no cache keeps it."""
    return SafeJSONResponse(doc, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_response(status: int, errors: list[str], headers: dict[str, str] | None = None) -> Response:
    return api_json({"errors": errors}, status, headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.errors, exc.headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 404:
        message = f"path {request.url.path}: not found"
    elif exc.status_code == 405:
        message = f"method {request.method}: not allowed on {request.url.path}"
        return error_response(405, [message], {"Allow": ", ".join(allowed_methods(request))})
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, [message], dict(exc.headers or {}))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Routes are declared one per method, and
    Starlette's own 405 names only the first route whose path matched."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def handle_disconnect(request: Request, exc: Exception) -> Response:
    # Not an error of ours, and nobody is left to answer: note it at info level for the access log.
    log.info("client disconnected before its request was read", extra={"fields": {
        "method": request.method, "path": request.url.path}})
    return Response(status_code=CLIENT_CLOSED)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # A bug, never the client's fault: log it with the route, answer without internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, ["internal error"])


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    ClientDisconnect: handle_disconnect,
    Exception: handle_unexpected,
}
