"""The three create-body shapes -> profiles, and the field errors of bad bodies (tables of cases)."""

from __future__ import annotations

import pytest

from edge.jsonbody import FieldErrors
from edge.streams.model import Profile
from edge.streams.parse import parse_create


def wowza_body(encodes: list[dict], source: dict | None = None, name: str = "cam1", **extra: object) -> dict:
    wowza: dict = {
        "transcoderAppConfig": {"templatesInUse": "${SourceStreamName}.xml,transrate.xml"},
        "transcoderTemplateAppConfig": {"transrate": {"encodes": encodes}},
        "sourceInfo": source if source is not None else {"width": 1920, "height": 1080, "fps": 29.97},
    }
    wowza.update(extra)
    return {"name": name, "wowza": wowza}


ISSUE_ENCODES = [
    {"name": "1080p", "enable": True, "width": 1920, "height": 1080,
     "videoBitrate": "${SourceVideoBitrate}", "videoCodec": "PassThru"},
    {"name": "mp4:${SourceStreamName}_720p", "enable": True, "width": 1280, "height": 720, "videoBitrate": "2000000"},
    {"name": "360p", "enable": True, "width": 0, "height": 360, "videoBitrate": "800000"},
]


def test_wowza_body_of_the_issue_gives_source_720p_and_360p_at_30fps() -> None:
    spec = parse_create(wowza_body(ISSUE_ENCODES))
    assert spec.profiles == (
        Profile("cam1_720p", 1280, 720, 2_000_000, 30),
        Profile("360p", 640, 360, 800_000, 30),
    )
    assert spec.source_info is not None and spec.source_info.fps == 29.97


@pytest.mark.parametrize(
    "encode, expected",
    [
        # streamName wins over name, container prefix dropped, placeholder replaced
        ({"name": "720p", "streamName": "mp4:${SourceStreamName}_hd", "width": 1280, "height": 720,
          "videoBitrate": 2000000}, Profile("cam1_hd", 1280, 720, 2_000_000, 30)),
        # odd sizes rounded down to even
        ({"name": "odd", "width": 641, "height": 361, "videoBitrate": "500000"}, Profile("odd", 640, 360, 500_000, 30)),
        # height 0 from the source aspect ratio
        ({"name": "w", "width": 854, "height": 0, "videoBitrate": 900000}, Profile("w", 854, 480, 900_000, 30)),
        # both 0: the source size
        ({"name": "full", "width": 0, "height": 0, "videoBitrate": 5000000}, Profile("full", 1920, 1080, 5_000_000, 30)),
    ],
)
def test_wowza_encode_to_profile(encode: dict, expected: Profile) -> None:
    assert parse_create(wowza_body([{"enable": True, **encode}])).profiles == (expected,)


def test_wowza_disabled_encodes_and_passthru_are_not_profiles() -> None:
    spec = parse_create(wowza_body([
        {"name": "off", "enable": False, "width": 1280, "height": 720, "videoBitrate": "1"},
        {"name": "src", "enable": True, "videoCodec": "PassThru", "videoBitrate": "${SourceVideoBitrate}"},
    ]))
    assert spec.profiles == ()


def test_wowza_template_chosen_by_templates_in_use() -> None:
    body = wowza_body([])
    body["wowza"]["transcoderTemplateAppConfig"] = {
        "other": {"encodes": [{"name": "x", "enable": True, "width": 640, "height": 360, "videoBitrate": 1000}]},
        "cam1": {"encodes": [{"name": "y", "enable": True, "width": 640, "height": 360, "videoBitrate": 1000}]},
    }
    assert [p.name for p in parse_create(body).profiles] == ["y"]


def test_presets_expand_to_their_real_sizes() -> None:
    spec = parse_create({"name": "s", "presets": ["P720p30fps16x9", "P240p30fps4x3", "P144p30fps16x9"]})
    assert [(p.name, p.width, p.height, p.bitrate, p.fps) for p in spec.profiles] == [
        ("P720p30fps16x9", 1280, 720, 4_000_000, 30),
        ("P240p30fps4x3", 320, 240, 600_000, 30),
        ("P144p30fps16x9", 256, 144, 400_000, 30),
    ]


def test_generic_profiles_keep_optional_fields() -> None:
    spec = parse_create({"name": "s", "profiles": [
        {"name": "720p", "width": 1280, "height": 720, "bitrate": 2000000, "fps": 30, "fpsDen": 1,
         "gop": "2.0", "profile": "H264High"},
    ]})
    assert spec.profiles == (Profile("720p", 1280, 720, 2_000_000, 30, 1, "2.0", "H264High"),)


GOOD_PROFILE = {"name": "720p", "width": 1280, "height": 720, "bitrate": 2000000, "fps": 30}

BAD_BODIES = [
    ([], ["body: must be a JSON object"]),
    ({}, ["name: required"]),
    ({"name": ""}, ["name: must be at least 1 character(s)"]),
    ({"name": "x" * 501}, ["name: must be at most 500 characters"]),
    ({"name": 5}, ["name: must be a string"]),
    ({"name": "s", "color": "red"}, ["color: unknown field"]),
    ({"name": "s", "profiles": {}}, ["profiles: must be an array"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "width": 100}]}, ["profiles[0].width: must be >= 128"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "height": 127}]}, ["profiles[0].height: must be >= 128"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "bitrate": 399}]}, ["profiles[0].bitrate: must be >= 400"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "fps": 0}]}, ["profiles[0].fps: must be >= 1"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "fps": True}]}, ["profiles[0].fps: must be an integer"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "width": "1280"}]}, ["profiles[0].width: must be an integer"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "extra": 1}]}, ["profiles[0].extra: unknown field"]),
    ({"name": "s", "profiles": [{"name": "a"}]},
     ["profiles[0].width: required", "profiles[0].height: required", "profiles[0].bitrate: required",
      "profiles[0].fps: required"]),
    ({"name": "s", "profiles": [GOOD_PROFILE, GOOD_PROFILE]}, ["profiles: rendition name '720p' is used twice"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "name": "a/b"}]}, ["safe as one URL path segment"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "name": ".."}]}, ["safe as one URL path segment"]),
    ({"name": "s", "profiles": [{**GOOD_PROFILE, "name": "source"}]}, ["'source' is reserved"]),
    ({"name": "s", "presets": ["P1080p"]}, ["presets[0]: must be one of"]),
    ({"name": "s", "presets": ["P720p30fps16x9"], "profiles": [{**GOOD_PROFILE, "name": "P720p30fps16x9"}]},
     ["used twice"]),
    ({"name": "s", "wowza": {}, "profiles": []}, ["wowza: cannot be combined with profiles or presets"]),
    (wowza_body(ISSUE_ENCODES, source={}), ["wowza.sourceInfo.width: required"]),
    ({"name": "s", "wowza": {"sourceInfo": {"width": 1920, "height": 1080, "fps": 30}}},
     ["wowza.transcoderTemplateAppConfig: required"]),
    (wowza_body([{"name": "x", "enable": True, "width": 1280, "height": 720, "videoBitrate": "fast"}]),
     ["wowza.transcoderTemplateAppConfig.transrate.encodes[0].videoBitrate: must be a bit rate"]),
    (wowza_body([{"name": "x", "enable": True, "width": 0, "height": 100, "videoBitrate": 9000}]),
     ["encodes[0].height: gives 100, must be between 128"]),
    (wowza_body([{"name": "x", "enable": "yes", "width": 640, "height": 360, "videoBitrate": 9000}]),
     ["encodes[0].enable: must be true or false"]),
    (wowza_body([{"name": "${SourceStreamName} hd", "enable": True, "width": 640, "height": 360,
                  "videoBitrate": 9000}]), ["'cam1 hd' is not safe as a URL path segment"]),
]


@pytest.mark.parametrize("body, expected", BAD_BODIES)
def test_bad_bodies_name_the_field(body: object, expected: list[str]) -> None:
    with pytest.raises(FieldErrors) as caught:
        parse_create(body)
    for fragment in expected:
        assert any(fragment in error for error in caught.value.errors), (fragment, caught.value.errors)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FieldErrors) as caught:
        parse_create({"name": "", "extra": 1, "profiles": [{**GOOD_PROFILE, "width": 1, "fps": 0}]})
    assert set(caught.value.errors) >= {
        "extra: unknown field", "name: must be at least 1 character(s)",
        "profiles[0].width: must be >= 128", "profiles[0].fps: must be >= 1",
    }


@pytest.mark.parametrize(
    "extra, mode, record, errors",
    [
        ({}, None, False, []),  # the deployment's mode
        ({"segmentMode": "redirect"}, "redirect", False, []),
        ({"segmentMode": "mirror", "record": True}, "mirror", True, []),
        ({"record": True}, "mirror", True, []),  # a recording is mirrored unless told otherwise
        ({"record": True, "segmentMode": "redirect"}, "redirect", True, []),
        ({"record": True, "segmentMode": "direct"}, None, None, ["record: needs segmentMode mirror or redirect, not direct"]),
        ({"segmentMode": "copy"}, None, None, ["segmentMode: must be one of direct, redirect, mirror"]),
        ({"record": "yes"}, None, None, ["record: must be true or false"]),
    ],
)
def test_segment_mode_and_record(extra: dict, mode: str | None, record: bool | None, errors: list[str]) -> None:
    body = {"name": "cam", **extra}
    if errors:
        with pytest.raises(FieldErrors) as caught:
            parse_create(body)
        assert caught.value.errors == errors
        return
    spec = parse_create(body)
    assert (spec.segment_mode, spec.record) == (mode, record)
