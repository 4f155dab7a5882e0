"""Field errors: one message per problem, each starting with the field's path (`profiles[1].width:`),
collected so that a client learns every problem of a body in one round trip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from jsonfields.text import show

T = TypeVar("T")


class FieldErrors(ValueError):
    """Bad input; `errors` holds one message per problem, each starting with the field's path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def join(path: str, key: str) -> str:
    """The path of field `key` of the object at `path` (names from the body are shown safely)."""
    return f"{path}.{show(key)}" if path else show(key)


def declared(path: str, name: str) -> str:
    """The path of a field a rule declares: its name is ours, clean text, shown as it is (`join`
    judges a name from the body first, which costs more than reading most fields)."""
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def collect(errors: list[str], read: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run one reader, adding its problems to `errors` instead of stopping at the first."""
    try:
        return read(*args, **kwargs)
    except FieldErrors as exc:
        errors.extend(exc.errors)
        return None
