"""Reading request bodies as JSON within a size limit, and small typed field readers.

Every reader names the field it rejects, so a client sees `profiles[1].width: must be an integer
>= 128` rather than a bare 400.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from starlette.requests import Request

from edge.errors import ApiError


class FieldErrors(Exception):
    """Validation problems found in a body, each naming its field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The decoded body; 413 past `max_bytes` (checked before and while reading), 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length: not a number")
        if int(declared) > max_bytes:
            raise ApiError(413, f"body: larger than {max_bytes} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
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
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body: malformed JSON ({exc})") from None


def require_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise FieldErrors([f"{path or 'body'}: must be a JSON object"])
    return value


def refuse_unknown(obj: Mapping[str, Any], allowed: set[str] | frozenset[str], path: str) -> list[str]:
    return [f"{_join(path, key)}: unknown field" for key in obj if key not in allowed]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def integer(value: Any, path: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (JSON numbers with no fraction, e.g. 30.0, are accepted; booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldErrors([f"{path}: must be an integer"])
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise FieldErrors([f"{path}: must be an integer"])
        value = int(value)
    _check_range(value, path, minimum, maximum)
    return value


def number(value: Any, path: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldErrors([f"{path}: must be a number"])
    _check_range(value, path, minimum, maximum)
    return float(value)


def string(value: Any, path: str, *, min_length: int = 0, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise FieldErrors([f"{path}: must be a string"])
    if len(value) < min_length:
        raise FieldErrors([f"{path}: must be at least {min_length} character(s)"])
    if max_length is not None and len(value) > max_length:
        raise FieldErrors([f"{path}: must be at most {max_length} characters"])
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise FieldErrors([f"{path}: must be true or false"])
    return value


def array(value: Any, path: str, *, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise FieldErrors([f"{path}: must be an array"])
    if len(value) > max_items:
        raise FieldErrors([f"{path}: at most {max_items} items"])
    return value


def _check_range(value: float, path: str, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise FieldErrors([f"{path}: must be >= {minimum}"])
    if maximum is not None and value > maximum:
        raise FieldErrors([f"{path}: must be <= {maximum}"])


def collect(errors: list[str], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one field reader, adding its problems to `errors` instead of stopping at the first."""
    try:
        return fn(*args, **kwargs)
    except FieldErrors as exc:
        errors.extend(exc.errors)
        return None
