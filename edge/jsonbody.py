"""Reading request bodies as JSON within a size limit.

What a body may hold is the business of jsonfields' rules; here only what no body may hold: more
than the size limit, bytes that are not UTF-8, malformed JSON, and strings (anywhere, read or not)
that are not Unicode text, which could never be sent back.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from edge.errors import ApiError
from jsonfields.errors import FieldErrors
from jsonfields.rules import refuse_unencodable


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The decoded body; 413 past `max_bytes` (checked before and while reading), 400 if not JSON,
    422 naming each string that is not Unicode text."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length: not a number")
        if int(declared) > max_bytes:
            raise ApiError(413, f"body: larger than {max_bytes} bytes")
    chunks = bytearray()
    async for chunk in request.stream():  # a client gone mid-body: ClientDisconnect, see edge.errors
        chunks += chunk
        if len(chunks) > max_bytes:
            raise ApiError(413, f"body: larger than {max_bytes} bytes")
    if not chunks.strip():
        raise ApiError(400, "body: empty, expected a JSON object")
    try:
        text = chunks.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "body: not UTF-8") from None
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body: malformed JSON ({exc})") from None
    try:
        refuse_unencodable(body)
    except FieldErrors as exc:
        raise ApiError(422, *exc.errors) from None
    return body
