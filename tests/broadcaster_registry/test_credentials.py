"""Broadcaster credentials as values: a token is shown once, stored only as a salted keyed digest."""

from __future__ import annotations

import pytest

from broadcaster_registry.credentials import issue, parse_token


def test_a_token_names_its_credential_and_only_its_secret_matches() -> None:
    credential, token = issue("fra", 1.0)
    presented = parse_token(token)
    assert presented is not None and presented.id == credential.id
    assert credential.matches(presented.secret)
    assert not credential.matches(presented.secret[:-1] + "x")
    assert presented.secret.encode() not in credential.digest + credential.salt
    again, again_token = issue("fra", 1.0)
    assert again.id != credential.id and again_token != token and again.salt != credential.salt


@pytest.mark.parametrize("token", [
    "", "eb1", "eb1..", "eb2.0123456789abcdef." + "a" * 43, "eb1.0123456789ABCDEF." + "a" * 43,
    "eb1.0123456789abcdef." + "a" * 42, "eb1.0123456789abcdef." + "a" * 43 + ".x", "test-broadcaster-token",
])
def test_tokens_not_shaped_like_ours_are_not_credentials(token: str) -> None:
    assert parse_token(token) is None
