"""Broadcaster identity: credentials bound to one broadcaster's name, so that a broadcaster can
register, heartbeat and drain only itself.

A credential is issued by an operator (the admin API), shown once as a token
`eb1.<id>.<secret>`, and stored as its id, the name it is bound to and a keyed digest of the secret:
HMAC-SHA256 under a random per-credential salt. The secret is 32 random bytes, so a slow hash would
add nothing against guessing and cost CPU on every heartbeat; the salt keeps equal digests from
ever revealing equal secrets. Digests are compared in constant time. Several credentials may be
valid for one name at once, which is how they are rotated without downtime: issue the new one,
move the broadcaster to it, revoke the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "eb1"
_ID = re.compile(r"[0-9a-f]{16}", re.ASCII)
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)  # 32 bytes, unpadded base64url


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """What is stored: never the secret itself."""

    id: str  # 16 hex digits, public: it names the credential in the API and in logs
    name: str  # the broadcaster it is bound to
    salt: bytes
    digest: bytes
    created_at: float

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(self.salt, secret))

    def to_json(self) -> dict[str, object]:
        """The public view (the admin API's listing): no salt, no digest."""
        return {"id": self.id, "broadcaster": self.name, "createdAt": round(self.created_at * 1000)}


@dataclass(frozen=True, slots=True)
class Presented:
    """A token as a caller presented it: which credential it claims to be, and its secret."""

    id: str
    secret: str


def issue(name: str, now: float) -> tuple[Credential, str]:
    """A new credential for `name` and its token (to hand to the broadcaster once)."""
    credential_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    credential = Credential(id=credential_id, name=name, salt=salt, digest=_digest(salt, secret), created_at=now)
    return credential, f"{TOKEN_PREFIX}.{credential_id}.{secret}"


def parse_token(token: str) -> Presented | None:
    """The credential a token claims to be, or None when it is not shaped like one of ours."""
    prefix, _, rest = token.partition(".")
    credential_id, _, secret = rest.partition(".")
    if prefix != TOKEN_PREFIX or not _ID.fullmatch(credential_id) or not _SECRET.fullmatch(secret):
        return None
    return Presented(credential_id, secret)


def is_credential_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
