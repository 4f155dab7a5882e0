"""Credentials.admits_configured remembers the headers it admitted: whatever sequence of headers
and roles it is asked about, each answer is the one the token table gives afresh."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.auth import Credentials, Role, bearer_token

API, BROADCASTER, ADMIN, METRICS = "api-key-1", "broadcaster-token", "admin-token", "metrics-token"
TOKENS = [API, BROADCASTER, ADMIN, METRICS, "api-key-2", "unknown"]
ROLE_SETS = [(Role.API, Role.BROADCASTER), (Role.API,), (Role.BROADCASTER,), (Role.METRICS,), (Role.ADMIN,)]


ROLE_OF = {API: Role.API, BROADCASTER: Role.BROADCASTER, ADMIN: Role.ADMIN, METRICS: Role.METRICS}


def fresh(header: str | None, allowed: tuple[Role, ...]) -> bool:
    """The answer from the configured tokens alone (what admits_configured says without memory)."""
    role = ROLE_OF.get(bearer_token(header) or "")
    return role is not None and (role is Role.ADMIN or role in allowed)


headers = st.one_of(
    st.none(),
    st.builds(lambda scheme, token, pad: f"{scheme}{pad}{token}", st.sampled_from(["Bearer ", "bearer ", "BEARER  "]),
              st.sampled_from(TOKENS), st.sampled_from(["", " "])),
    st.builds(lambda token: "Basic " + base64.b64encode(f"user:{token}".encode()).decode(), st.sampled_from(TOKENS)),
    st.text(max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(headers, st.sampled_from(ROLE_SETS)), max_size=30))
def test_each_answer_is_the_token_tables(asks: list[tuple[str | None, tuple[Role, ...]]]) -> None:
    credentials = Credentials.build(api=(API,), broadcaster=(BROADCASTER,), admin=(ADMIN,),
                                    shared_broadcaster_token=True, metrics=(METRICS,))
    for header, allowed in asks + asks:  # asked again: now from what it remembered
        assert credentials.admits_configured(header, *allowed) == fresh(header, allowed), (header, allowed)


def test_a_header_admitted_for_one_role_is_not_admitted_for_another() -> None:
    credentials = Credentials.build(api=(API,), broadcaster=(), admin=(), metrics=(METRICS,))
    assert credentials.admits_configured(f"Bearer {API}", Role.API)
    assert not credentials.admits_configured(f"Bearer {API}", Role.METRICS)
    assert credentials.admits_configured(f"Bearer {API}", Role.API)
    assert not credentials.admits_configured(f"Bearer {METRICS}", Role.API)


def test_refused_headers_are_not_remembered() -> None:
    credentials = Credentials.build(api=(API,), broadcaster=(), admin=())
    for i in range(1000):
        assert not credentials.admits_configured(f"Bearer guess-{i}", Role.API)
    assert not credentials._admitted
    assert credentials.admits_configured(f"Bearer {API}", Role.API)
    assert len(credentials._admitted) == 1


def test_the_shared_broadcaster_token_turned_off_is_not_admitted() -> None:
    credentials = Credentials.build(api=(), broadcaster=(BROADCASTER,), admin=(), shared_broadcaster_token=False)
    for _ in range(2):
        assert not credentials.admits_configured(f"Bearer {BROADCASTER}", Role.BROADCASTER)
