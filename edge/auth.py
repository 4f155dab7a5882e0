"""Bearer-token checks by role, and who a broadcaster is. Tokens are compared by digest and never
logged or echoed.

Configured tokens (API keys, admin tokens, the shared broadcaster token when it is turned on) are
checked against a table built at start-up. A broadcaster's own credential
(broadcaster_registry.credentials) is looked up in the store, so issuing or revoking one takes effect
at once on every node; it makes the caller that one broadcaster and no other.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass, field

from starlette.requests import Request

from broadcaster_registry.credentials import parse_token
from broadcaster_registry.storage import CredentialStore
from edge.errors import ApiError


class Role(enum.Enum):
    API = "api"  # ingest plugins and API users: streams
    BROADCASTER = "broadcaster"  # transcoding nodes: register, heartbeat, stream hook
    ADMIN = "admin"  # operators: everything
    METRICS = "metrics"  # Prometheus scrapers: /metrics only


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a role and, for a broadcaster's own credential, the one name it acts for."""

    role: Role
    broadcaster: str | None = None  # None: not bound to a name (admin, the shared broadcaster token)

    def may_act_for(self, name: str) -> bool:
        return self.broadcaster is None or self.broadcaster == name


_NOT_ALLOWED = "authorization: this key is not allowed here"
_ADMITTED_MAX = 256


@dataclass(frozen=True)
class Credentials:
    """Digest -> roles. A lookup by digest takes the same time whatever the token's prefix.

    `disabled_digests` are the shared broadcaster tokens while they are turned off: refused, with a
    message saying why, so that an operator upgrading sees what to change.
    """

    roles_by_digest: dict[bytes, frozenset[Role]]
    disabled_digests: frozenset[bytes] = frozenset()
    # admits_configured's admitted headers: hash(header) -> (the header's bytes, the `allowed`
    # tuples it was admitted for). Only headers that hold a configured token are kept (never a
    # guess a client sends); the table is fixed at start-up, so an answer never goes stale.
    _admitted: dict[int, tuple[bytes, list[tuple[Role, ...]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        api: tuple[str, ...],
        broadcaster: tuple[str, ...],
        admin: tuple[str, ...],
        shared_broadcaster_token: bool = False,
        metrics: tuple[str, ...] = (),
    ) -> "Credentials":
        table: dict[bytes, set[Role]] = {}
        enabled = broadcaster if shared_broadcaster_token else ()
        for role, tokens in ((Role.API, api), (Role.BROADCASTER, enabled), (Role.ADMIN, admin), (Role.METRICS, metrics)):
            for token in tokens:
                table.setdefault(_digest(token), set()).add(role)
        disabled = frozenset(_digest(t) for t in broadcaster) - set(table) if not shared_broadcaster_token else frozenset()
        return cls({digest: frozenset(roles) for digest, roles in table.items()}, disabled)

    def require(self, request: Request, *allowed: Role) -> Role:
        """The caller's role from a configured token, or 401 (no credentials) / 403 (credentials
        that do not fit)."""
        return self._configured(_token(request), allowed)

    async def require_caller(self, request: Request, store: CredentialStore, *allowed: Role) -> Caller:
        """Like `require`, also accepting a broadcaster's own credential where Role.BROADCASTER is
        allowed; the Caller then names that broadcaster."""
        token = _token(request)
        presented = parse_token(token)
        if presented is None:
            return Caller(self._configured(token, allowed))
        credential = await store.get(presented.id)
        # One answer for unknown, revoked and wrong secrets: nothing to learn from trying.
        if credential is None or not credential.matches(presented.secret) or Role.BROADCASTER not in allowed:
            raise ApiError(403, _NOT_ALLOWED)
        return Caller(Role.BROADCASTER, credential.name)

    def admits_configured(self, header: str | None, *allowed: Role) -> bool:
        """Whether an Authorization header holds a configured token of one of `allowed` roles (or
        an admin's); no error: a caller given False goes the long way, which says why.

        The same header comes with every request of a client: once admitted it is recognised by
        its hash and a constant-time comparison, without parsing and digesting it again."""
        if not header:
            return False
        encoded = header.encode("utf-8", "surrogatepass")
        key = hash(header)
        known = self._admitted.get(key)
        if known is not None and hmac.compare_digest(known[0], encoded):
            if allowed in known[1]:
                return True
        else:
            known = None
        if not self._admits(header, allowed):
            return False
        if known is None:
            if len(self._admitted) >= _ADMITTED_MAX:  # spellings of a few tokens: not reached in practice
                self._admitted.clear()
            known = self._admitted[key] = (encoded, [])
        if len(known[1]) < _ADMITTED_MAX:
            known[1].append(allowed)
        return True

    def _admits(self, header: str, allowed: tuple[Role, ...]) -> bool:
        token = bearer_token(header)
        if token is None:
            return False
        roles = self.roles_by_digest.get(_digest(token))
        return roles is not None and (Role.ADMIN in roles or any(role in roles for role in allowed))

    def _configured(self, token: str, allowed: tuple[Role, ...]) -> Role:
        digest = _digest(token)
        roles = self.roles_by_digest.get(digest, frozenset())
        if Role.ADMIN in roles:
            return Role.ADMIN
        for role in allowed:
            if role in roles:
                return role
        if digest in self.disabled_digests and Role.BROADCASTER in allowed:
            raise ApiError(
                403, "authorization: the shared broadcaster token is turned off on this edge "
                "(shared_broadcaster_token); use this broadcaster's own credential",
            )
        raise ApiError(403, _NOT_ALLOWED)


def _token(request: Request) -> str:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise ApiError(
            401, "authorization: missing; send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="edge"'},
        )
    return token


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
