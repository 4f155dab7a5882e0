"""Query-string rules every API route shares: unknown parameters refused, each given at most once."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

from edge.errors import ApiError


def refuse_unknown_query(request: Request, allowed: Iterable[str]) -> None:
    """400 naming every query parameter the route does not take (a typo must not pass unnoticed)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise ApiError(400, *(f"{name}: unknown query parameter" for name in unknown))


def single_query(request: Request, name: str) -> str | None:
    """The one value of `name`, None if absent; 400 when given more than once."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"{name}: given more than once")
    return values[0] if values else None
