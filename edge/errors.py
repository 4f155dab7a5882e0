"""How the API answers: JSON that is never cached, and one error shape for every failure,
`{"errors": ["<field>: <problem>", ...]}`."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("edge.errors")


class ApiError(Exception):
    """Raised anywhere in a request; rendered as the API's error shape with its status."""

    def __init__(self, status: int, *errors: str, headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors)
        self.headers = headers


NO_STORE = {"Cache-Control": "no-store"}


def api_json(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """An API answer: it depends on the caller and the moment, so no cache keeps it."""
    return JSONResponse(doc, status_code=status, headers={**NO_STORE, **(headers or {})})


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
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, [message], dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # A bug, never the client's fault: log it with the route, answer without internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, ["internal error"])


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
