"""Field rules: what each refuses and how it says so (tables), and that every body rule and the
schema it publishes agree (properties over arbitrary JSON)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster_registry.validation import REGISTRATION, STATE_BODY
from edge.streams.parse import HOOK, PROFILE, create_rule
from jsonfields.errors import FieldErrors
from jsonfields.rules import Array, Integer, Nullable, Number, Object, Rule, Text, refuse_unencodable
from jsonfields.text import dumps_utf8, show
from tests.jsonfields.strategies import added, json_values, paths_of, replaced, unicode_text


def _problems(rule: Rule, value: Any) -> list[str]:
    with pytest.raises(FieldErrors) as caught:
        rule.read(value, "f")
    return caught.value.errors


@pytest.mark.parametrize(
    "rule, value, expected",
    [
        (Text(), "\ud800", "f: must be valid Unicode text (lone surrogate U+D800 at character 0)"),
        (Text(), "ab\udfff", "f: must be valid Unicode text (lone surrogate U+DFFF at character 2)"),
        (Text(), "a\nb", "f: must not contain control characters (U+000A at character 1)"),
        (Text(), "\x85", "f: must not contain control characters (U+0085 at character 0)"),
        (Text(), ["a"], "f: must be a string"),
        (Text(), {"a": 1}, "f: must be a string"),
        (Text(1, 3), "", "f: must be at least 1 character(s)"),
        (Text(1, 3), "abcd", "f: must be at most 3 characters"),
        (Text(choices=("a", "b")), "c", "f: must be one of a, b"),
        (Text(choices=("a", "b")), ["a"], "f: must be a string"),  # unhashable: no TypeError
        (Text(reserved=("x",)), "x", "f: 'x' is reserved"),
        (Integer(1, 5), True, "f: must be an integer"),
        (Integer(1, 5), 1.5, "f: must be an integer"),
        (Integer(1, 5), "3", "f: must be an integer"),
        (Integer(), 10**400, "f: must be an integer"),  # beyond float range: would overflow later
        (Integer(1, 5), 6, "f: must be <= 5"),
        (Number(0, 1), float("inf"), "f: must be a number"),
        (Number(0, exclusive_minimum=True), 0, "f: must be > 0"),
        (Array(Text(), 2), ["a", "b", "c"], "f: at most 2 items"),
        (Array(Text(), 2, unique=True), ["a", "a"], "f[1]: a is listed twice"),
        (Object({"a": Text()}), {"\ud800": 1}, 'f."\\ud800": unknown field'),
        (Object({"a": Text()}), {"a\n": 1}, 'f."a\\n": unknown field'),
        (Object({"a": Text()}, required=("a",)), {}, "f.a: required"),
        (Object({"a": Text()}), [], "f: must be a JSON object"),
    ],
)
def test_rules_refuse_naming_the_field(rule: Rule, value: Any, expected: str) -> None:
    assert expected in _problems(rule, value)


@pytest.mark.parametrize(
    "rule, value, read",
    [(Integer(1, 50), 30.0, 30), (Nullable(Integer()), None, None), (Text(0, 5), "héllo", "héllo"),
     (Number(0, 1), 1, 1.0), (Object({"a": Nullable(Text())}), {"a": None}, {"a": None})],
)
def test_rules_accept(rule: Rule, value: Any, read: Any) -> None:
    assert rule.read(value, "f") == read


def test_unencodable_text_is_found_anywhere_in_a_body_even_where_no_rule_reads() -> None:
    with pytest.raises(FieldErrors) as caught:
        refuse_unencodable({"wowza": {"x": [1, {"\udc00": "ok", "y": "a\ud800"}]}})
    assert caught.value.errors == [
        'wowza.x[1]."\\udc00": field name must be valid Unicode text (lone surrogate U+DC00 at character 0)',
        "wowza.x[1].y: must be valid Unicode text (lone surrogate U+D800 at character 1)",
    ]
    refuse_unencodable({"a": ["b", {"c": "d\n"}]})  # control characters are the field rules' business
    deep: Any = "x"
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    refuse_unencodable(deep)


def test_messages_and_answers_always_render() -> None:
    assert show("plain") == "plain" and show("\ud800") == '"\\ud800"'
    assert json.loads(dumps_utf8({"name": "a\ud800b", "\udfff": 1})) == {"name": "a\ufffdb", "\ufffd": 1}


# --- every body rule against its published schema -------------------------------------------------

VALID_CREATE = {"name": "cam", "presets": ["P360p30fps16x9"], "dvrWindowSeconds": 60,
                "profiles": [{"name": "720p", "width": 1280, "height": 720, "bitrate": 2000000, "fps": 30,
                              "fpsDen": 1, "gop": "2.0", "profile": "H264Main"}]}
VALID_WOWZA = {"name": "cam", "wowza": {
    "transcoderAppConfig": {"templatesInUse": "t"},
    "transcoderTemplateAppConfig": {"t": {"encodes": [
        {"name": "720p", "enable": True, "width": 1280, "height": 0, "videoBitrate": "2000000", "videoCodec": "H.264"},
    ]}},
    "sourceInfo": {"width": 1920, "height": 1080, "fps": 30}}}
VALID_REGISTRATION = {"address": "https://fra-1.example.net", "region": "eu", "latitude": 50.1, "longitude": 8.6,
                      "capacity": 40, "load": {"activeStreams": 3, "cpu": 0.2, "bandwidthBps": 1e8,
                                               "bandwidthCapacityBps": 1e9}, "streams": ["abc"]}
BODY_RULES = [
    ("create", create_rule(), VALID_CREATE),
    ("create-wowza", create_rule(), VALID_WOWZA),
    ("profile", PROFILE, VALID_CREATE["profiles"][0]),
    ("hook", HOOK, {"url": "http://b/live/x/1.ts"}),
    ("registration", REGISTRATION, VALID_REGISTRATION),
    ("state", STATE_BODY, {"state": "active"}),
]


def _accepted(rule: Rule, value: Any) -> bool:
    try:
        rule.read(value, "")
    except FieldErrors:
        return False
    return True


@pytest.mark.parametrize("rule, valid", [c[1:] for c in BODY_RULES], ids=[c[0] for c in BODY_RULES])
def test_the_valid_example_is_valid_for_both(rule: Rule, valid: Any) -> None:
    assert _accepted(rule, valid)
    assert jsonschema_rs.Draft202012Validator(rule.schema()).is_valid(valid)


@pytest.mark.parametrize("rule, valid", [c[1:] for c in BODY_RULES], ids=[c[0] for c in BODY_RULES])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rule_and_schema_agree_on_arbitrary_values_in_every_field(rule: Rule, valid: Any, data: st.DataObject) -> None:
    """Whatever the rule reads, the schema calls valid; whatever the schema calls valid, the rule
    reads, but for rules written as functions (an address, a Wowza bit rate), whose schema may
    accept more (they answer 422 then)."""
    validator = jsonschema_rs.Draft202012Validator(rule.schema())
    path = data.draw(st.sampled_from(paths_of(valid)))
    if data.draw(st.booleans()):
        body = replaced(valid, path, data.draw(json_values(unicode_text)))
    else:
        body = added(valid, path, data.draw(unicode_text), data.draw(json_values(unicode_text)))
    try:
        rule.read(body, "")
    except FieldErrors as exc:
        if validator.is_valid(body):
            functions = ("address:", ".videoBitrate:")
            assert all(any(f in error for f in functions) for error in exc.errors), (body, exc.errors)
    else:
        assert validator.is_valid(body), (body, list(validator.iter_errors(body))[:3])
