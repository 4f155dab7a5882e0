"""The stored form of a published state: it comes back equal, and a damaged one is refused."""

from __future__ import annotations

import pytest

from edge.playlists.codec import dump_state, load_state
from edge.playlists.merge import Policy
from tests.playlists.builders import B1, B2, offer, run


def test_round_trip() -> None:
    policy = Policy(window_seconds=6.0, hole_wait_seconds=1.0)
    states = run(
        [
            (0.0, [offer(B1, [1, 2], dated=True)]),
            (1.0, [offer(B1, [1, 2, 4]), offer(B2, [5])]),  # waiting for 3
            (3.0, [offer(B1, [1, 2, 4]), offer(B2, [5, 6])]),
        ],
        policy,
    )
    for state in states:
        assert load_state(dump_state(state)) == state


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b'{"format": 99}', b"\xff", b'{"format": 1}'])
def test_damaged_state_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        load_state(data)
