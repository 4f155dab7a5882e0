"""Arbitrary JSON values for property tests, hostile text included (lone surrogates, controls)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Text a client can put in JSON: any code point, lone surrogates (valid JSON escapes) and control
# characters included.
hostile_text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=("Cs", "Cc")), min_size=1,
            max_size=3),
    st.sampled_from(["\ud800", "a\udfff", "x\n", "\x00", "\x7f", "source", "..", "", "P720p30fps16x9", "H264Main"]),
)
# Text without lone surrogates: what a JSON Schema validator can be given.
unicode_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from([0, 1, 128, 400, 1280, 30.0, 29.97, -1, 10**309, 1e308, 0.5, 2**31]),
    st.floats(allow_nan=False, allow_infinity=False),
)


def json_values(text: st.SearchStrategy[str] = hostile_text) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(scalars, text),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(text, children, max_size=4),
        ),
        max_leaves=12,
    )


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (keys and indexes), the value itself first."""
    out: list[tuple[Any, ...]] = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += paths_of(child, (*prefix, i))
    return out


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with the part at `path` replaced by `new`."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


def added(value: Any, path: tuple[Any, ...], key: str, new: Any) -> Any:
    """A copy of `value` with field `key` added to the object at `path` (if it is one)."""
    if not path:
        return {**value, key: new} if isinstance(value, dict) else value
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: added(value[head], rest, key, new)}
    copy = list(value)
    copy[head] = added(value[head], rest, key, new)
    return copy
