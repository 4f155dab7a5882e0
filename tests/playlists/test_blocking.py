"""LL-HLS delivery directives: what a query asks, and the 400 / 503 / wait / answer decision."""

from __future__ import annotations

import pytest

from edge.playlists.blocking import (
    Answer, BadDirectives, Directives, Refuse, Wait, cache_seconds, decide, parse_directives,
)


@pytest.mark.parametrize(("query", "expected"), [
    ("", Directives()),
    ("_HLS_msn=12", Directives(msn=12)),
    ("_HLS_skip=YES", Directives(skip=True)),
    ("_HLS_msn=12&_HLS_skip=YES", Directives(msn=12, skip=True)),
    ("_HLS_skip=YES&_HLS_msn=12", Directives(msn=12, skip=True)),  # order does not matter
    ("_HLS_msn=0", Directives(msn=0)),
    # A CDN's cache-buster or signature changes nothing, and is not part of the cache key.
    ("t=123", Directives()),
    ("_HLS_msn=12&Expires=1&Signature=abc", Directives(msn=12)),
    ("&&", Directives()),
])
def test_directives_are_read_whatever_their_order(query: str, expected: Directives) -> None:
    assert parse_directives(query) == expected
    assert parse_directives(expected.query()) == expected


@pytest.mark.parametrize(("query", "names"), [
    ("_HLS_msn=12&_HLS_part=1", "_HLS_part: no partial segments"),
    ("_HLS_report=x", "_HLS_report: not a delivery directive"),
    ("_HLS_msn=-1", "_HLS_msn: must be"),
    ("_HLS_msn=1.5", "_HLS_msn: must be"),
    ("_HLS_msn=", "_HLS_msn: must be"),
    ("_HLS_msn=1&_HLS_msn=2", "_HLS_msn: given more than once"),
    ("_HLS_skip=v2", "_HLS_skip: must be YES"),
    ("_HLS_skip=yes", "_HLS_skip: must be YES"),
])
def test_a_bad_directive_is_refused_naming_it(query: str, names: str) -> None:
    with pytest.raises(BadDirectives, match=names):
        parse_directives(query)


# A playlist whose last segment is MSN 9 (next_msn 10), target duration 2 s, asked at t=100.
@pytest.mark.parametrize(("msn", "ended", "now", "expected"), [
    (None, False, 100.0, Answer()),  # not a blocking reload
    (5, False, 100.0, Answer()),  # already published
    (9, False, 100.0, Answer()),  # the last one
    (10, False, 100.0, Wait(106.0)),  # the next one: wait up to three target durations
    (11, False, 100.0, Wait(106.0)),  # last + 2: still allowed
    (12, False, 100.0, Refuse(400, "_HLS_msn 12: more than 2 beyond the last published, 9")),
    (10, False, 105.9, Wait(106.0)),
    (10, False, 106.0, Refuse(503, "_HLS_msn 10: not published within 3 target durations")),
    (12, True, 100.0, Answer()),  # once ENDLIST is there, directives are ignored
    (10, True, 200.0, Answer()),
])
def test_a_blocking_reload_is_answered_waited_or_refused(msn: int | None, ended: bool, now: float, expected: object) -> None:
    assert decide(msn, 10, ended, 2, 100.0, now) == expected


@pytest.mark.parametrize(("directives", "ended", "seconds"), [
    (Directives(), False, 1),  # half a target duration
    (Directives(skip=True), False, 1),
    (Directives(msn=4), False, 12),  # blocking answers: six target durations (Appendix B)
    (Directives(msn=4, skip=True), False, 12),
    (Directives(msn=4), True, 3600),
])
def test_cache_lifetimes_follow_appendix_b(directives: Directives, ended: bool, seconds: int) -> None:
    assert cache_seconds(directives, 2, ended, 3600) == seconds
