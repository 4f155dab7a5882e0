"""AnswerPieces: the answer's bytes, kept per broadcaster, are always the JSON of what is chosen now,
however the values behind a name change between answers (a heartbeat, a new address or region)."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster_registry.model import Broadcaster
from edge.broadcasters.answer import AnswerPieces

NAMES = ["a", "b", "c", "d"]
ADDRESSES = ["https://a.example.net:8935", "https://b.example.net", "http://10.0.0.1:8935", 'https://x.example/"q"']
REGIONS = [None, "eu", "us", "é ü"]

values = st.builds(
    lambda name, address, region, heartbeat: Broadcaster(
        name=name, address=address, region=region, last_heartbeat=heartbeat, registered_at=0.0),
    st.sampled_from(NAMES), st.sampled_from(ADDRESSES), st.sampled_from(REGIONS), st.floats(0, 100))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(values, max_size=6), max_size=12))
def test_bytes_are_the_json_of_the_chosen(answers: list[list[Broadcaster]]) -> None:
    pieces = AnswerPieces()
    for chosen in answers:
        body = pieces.body(chosen)
        assert json.loads(body) == [{"address": b.address, "name": b.name, "region": b.region} for b in chosen]
        again = [dataclasses.replace(b) for b in chosen]  # equal values, other objects
        assert pieces.body(again) == body
