"""RFC 3986 reference resolution: the RFC's own examples (§5.4), and agreement with urljoin
wherever urljoin is right."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.playlists.uri import remove_dot_segments, resolve_uri

BASE = "http://a/b/c/d;p?q"

# RFC 3986 §5.4.1 (normal) and §5.4.2 (abnormal), verbatim.
RFC_EXAMPLES = [
    ("g:h", "g:h"),
    ("g", "http://a/b/c/g"),
    ("./g", "http://a/b/c/g"),
    ("g/", "http://a/b/c/g/"),
    ("/g", "http://a/g"),
    ("//g", "http://g"),
    ("?y", "http://a/b/c/d;p?y"),
    ("g?y", "http://a/b/c/g?y"),
    ("#s", "http://a/b/c/d;p?q#s"),
    ("g#s", "http://a/b/c/g#s"),
    ("g?y#s", "http://a/b/c/g?y#s"),
    (";x", "http://a/b/c/;x"),
    ("g;x", "http://a/b/c/g;x"),
    ("g;x?y#s", "http://a/b/c/g;x?y#s"),
    ("", "http://a/b/c/d;p?q"),
    (".", "http://a/b/c/"),
    ("./", "http://a/b/c/"),
    ("..", "http://a/b/"),
    ("../", "http://a/b/"),
    ("../g", "http://a/b/g"),
    ("../..", "http://a/"),
    ("../../", "http://a/"),
    ("../../g", "http://a/g"),
    ("../../../g", "http://a/g"),
    ("../../../../g", "http://a/g"),
    ("/./g", "http://a/g"),
    ("/../g", "http://a/g"),
    ("g.", "http://a/b/c/g."),
    (".g", "http://a/b/c/.g"),
    ("g..", "http://a/b/c/g.."),
    ("..g", "http://a/b/c/..g"),
    ("./../g", "http://a/b/g"),
    ("./g/.", "http://a/b/c/g/"),
    ("g/./h", "http://a/b/c/g/h"),
    ("g/../h", "http://a/b/c/h"),
    ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
    ("g;x=1/../y", "http://a/b/c/y"),
    ("g?y/./x", "http://a/b/c/g?y/./x"),
    ("g?y/../x", "http://a/b/c/g?y/../x"),
    ("g#s/./x", "http://a/b/c/g#s/./x"),
    ("g#s/../x", "http://a/b/c/g#s/../x"),
    ("http:g", "http:g"),  # strict parser
]


@pytest.mark.parametrize("reference, target", RFC_EXAMPLES)
def test_rfc3986_examples(reference: str, target: str) -> None:
    assert resolve_uri(BASE, reference) == target


# Where urljoin departs from RFC 3986: it drops empty path segments of a relative reference.
EMPTY_SEGMENT_CASES = [
    ("7//7.ts", "http://a/b/c/7//7.ts"),
    ("a//../7.ts", "http://a/b/c/a/7.ts"),
    (".//7.ts", "http://a/b/c//7.ts"),
]


@pytest.mark.parametrize("reference, target", EMPTY_SEGMENT_CASES)
def test_empty_segments_are_kept(reference: str, target: str) -> None:
    assert resolve_uri(BASE, reference) == target
    assert urljoin(BASE, reference) != target  # the reason this module exists


def test_remove_dot_segments_rfc_walkthrough() -> None:
    # RFC 3986 §5.2.4's two worked examples.
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("mid/content=5/../6") == "mid/6"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab./?#=", max_size=16))
def test_agrees_with_urljoin_where_urljoin_is_right(reference: str) -> None:
    # urljoin's other departures, left out: RFC 1808 ";params" and non-strict schemes (no ";" or
    # ":" in the alphabet), empty segments, and an empty query or fragment taken for none.
    path = reference.split("?")[0].split("#")[0]
    if "//" in path or re.search(r"\?(#|$)|#$", reference):
        return
    assert resolve_uri("http://h/b/c/d.m3u8?q", reference) == urljoin("http://h/b/c/d.m3u8?q", reference)
