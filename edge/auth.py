"""Bearer-token checks by role. Tokens are compared by digest and never logged or echoed."""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass

from starlette.requests import Request

from edge.errors import ApiError


class Role(enum.Enum):
    API = "api"  # ingest plugins and API users: streams
    BROADCASTER = "broadcaster"  # transcoding nodes: register, heartbeat, stream hook
    ADMIN = "admin"  # operators: everything


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Credentials:
    """Digest -> roles. A lookup by digest takes the same time whatever the token's prefix."""

    roles_by_digest: dict[bytes, frozenset[Role]]

    @classmethod
    def build(cls, api: tuple[str, ...], broadcaster: tuple[str, ...], admin: tuple[str, ...]) -> "Credentials":
        table: dict[bytes, set[Role]] = {}
        for role, tokens in ((Role.API, api), (Role.BROADCASTER, broadcaster), (Role.ADMIN, admin)):
            for token in tokens:
                table.setdefault(_digest(token), set()).add(role)
        return cls({digest: frozenset(roles) for digest, roles in table.items()})

    def require(self, request: Request, *allowed: Role) -> Role:
        """The caller's role, or 401 (no credentials) / 403 (credentials that do not fit)."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise ApiError(
                401, "authorization: missing; send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="edge"'},
            )
        roles = self.roles_by_digest.get(_digest(token), frozenset())
        if Role.ADMIN in roles:
            return Role.ADMIN
        for role in allowed:
            if role in roles:
                return role
        raise ApiError(403, "authorization: this key is not allowed here")


def bearer_token(header: str | None) -> str | None:
    """The token of `Bearer <t>`, or the password of `Basic` (go-livepeer sends URL user info so)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        password = decoded.partition(":")[2]
        return password or None
    return None
