"""Create-stream bodies -> a validated `StreamSpec`: the generic, presets and LivepeerWowza shapes.

The shape of a body is declared once, as jsonfields rules (`create_rule`): the parser reads with
them and the API description publishes their schema. Rules no schema can say (unique rendition
names, the ladder's size, Wowza's template choice and derived sizes) are checked here after the
read. Every problem is reported at once, each naming its field, so a client fixes its body in one
round trip. Limits follow Livepeer's schema (width and height >= 128, bitrate >= 400, fps >= 1,
name 1-500 characters, unknown fields refused).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from edge.streams.model import (
    RENDITION_PATTERN,
    RENDITION_RULE,
    SEGMENT_MODES,
    SOURCE,
    Profile,
    SourceInfo,
    StreamSpec,
    is_rendition_name,
)
from edge.streams.presets import PRESETS
from jsonfields.errors import FieldErrors, collect
from jsonfields.rules import Array, Boolean, Check, Integer, Number, Object, Text

MAX_PROFILES = 20
MIN_SIDE, MAX_SIDE = 128, 8192
MIN_BITRATE, MAX_BITRATE = 400, 200_000_000
MIN_FPS, MAX_FPS = 1, 240
ENCODER_PROFILES = ("H264Baseline", "H264Main", "H264High", "H264ConstrainedHigh")
MAX_DVR_WINDOW = 86_400  # the edge's own max_dvr_window setting may be lower
SOURCE_STREAM_NAME = "${SourceStreamName}"
# Wowza stream names carry a container prefix ("mp4:name"); the rendition is the name after it.
CONTAINER_PREFIX = re.compile(r"^[A-Za-z0-9]+:")
MAX_ENCODES = 64
MAX_TEMPLATES = 64

PROFILE = Object(
    {
        "name": Text(1, 100, pattern=RENDITION_PATTERN, reserved=(SOURCE,), message=RENDITION_RULE,
                     doc="The rendition's name, in its playlist's path; `source` is the untranscoded input."),
        "width": Integer(MIN_SIDE, MAX_SIDE),
        "height": Integer(MIN_SIDE, MAX_SIDE),
        "bitrate": Integer(MIN_BITRATE, MAX_BITRATE, doc="bit/s"),
        "fps": Integer(MIN_FPS, MAX_FPS),
        "fpsDen": Integer(1, 1001),
        "gop": Text(1, 20),
        "profile": Text(choices=ENCODER_PROFILES),
    },
    required=("name", "width", "height", "bitrate", "fps"),
)


BITRATE_TEXT = Text(0, 200)
BITRATE_NUMBER = Integer(0, MAX_BITRATE * 10, message="must be a bit rate in bit/s, as a number or a string of digits")


def _video_bitrate(value: Any, path: str) -> int | str:
    """A bit rate in bit/s (a number or a string of digits), or kept as text: a Wowza placeholder
    (`${SourceVideoBitrate}`) is fine for a PassThru encode, which has no bit rate of its own."""
    if isinstance(value, str):
        digits = BITRATE_TEXT.read(value, path).strip()
        return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 12 else value
    return BITRATE_NUMBER.read(value, path)


ENCODE = Object(
    {
        "name": Text(1, 600),
        "streamName": Text(1, 600, doc="Wins over name; `${SourceStreamName}` is the stream's name."),
        "enable": Boolean(),
        "width": Integer(0, MAX_SIDE, doc="0 follows the source's aspect ratio"),
        "height": Integer(0, MAX_SIDE, doc="0 follows the source's aspect ratio"),
        "videoBitrate": Check(_video_bitrate, {
            "anyOf": [BITRATE_NUMBER.schema(), BITRATE_TEXT.schema()],
            "description": "bit/s, a number or a string of digits (`${SourceVideoBitrate}` for PassThru)",
        }),
        "videoCodec": Text(0, 100),
        "implementation": Text(0, 100),
    },
    others=True,  # the rest of Wowza's encode settings: not ours to judge
    any_of_names=(("name", "streamName"),),
)
TEMPLATE = Object({"encodes": Array(ENCODE, MAX_ENCODES)}, required=("encodes",), others=True)
WOWZA = Object(
    {
        "transcoderAppConfig": Object({"templatesInUse": Text(0, 2000)}, others=True),
        "transcoderTemplateAppConfig": Object(others=TEMPLATE, max_fields=MAX_TEMPLATES,
                                              doc="Transcoder templates by name"),
        "sourceInfo": Object(
            {"width": Integer(1, MAX_SIDE), "height": Integer(1, MAX_SIDE), "fps": Number(0.5, MAX_FPS)},
            required=("width", "height", "fps"),
        ),
    },
    required=("transcoderTemplateAppConfig", "sourceInfo"),
    others=True,  # LivepeerWowza sends its whole configuration
    doc="LivepeerWowza's transcoder configuration; each enabled encode of the template in use is a rendition.",
)


@lru_cache(maxsize=8)
def create_rule(max_dvr_window: int = MAX_DVR_WINDOW) -> Object:
    """The shape of a `POST /api/stream` body, for an edge whose longest DVR window is `max_dvr_window`."""
    return Object(
        {
            "name": Text(1, 500),
            "profiles": Array(PROFILE, MAX_PROFILES),
            "presets": Array(Text(choices=tuple(PRESETS)), MAX_PROFILES, unique=True),
            "wowza": WOWZA,
            "dvrWindowSeconds": Integer(1, max_dvr_window, doc="A longer live window than the edge's default"),
            "segmentMode": Text(choices=SEGMENT_MODES, doc="Segment URIs: on the broadcasters (direct), the "
                                "edge's redirecting route (redirect) or stored copies (mirror); default: the edge's"),
            "record": Boolean(doc="Keep every segment; once ended, the playlists are the recording (VOD)"),
        },
        required=("name",),
    )


def parse_create(body: Any, max_dvr_window: int = MAX_DVR_WINDOW) -> StreamSpec:
    """Validate a `POST /api/stream` body; raises FieldErrors listing every problem.

    `dvrWindowSeconds` (our extension) asks for a longer live window, up to `max_dvr_window`."""
    errors: list[str] = []
    obj = collect(errors, create_rule(max_dvr_window).read, body, "")
    if "wowza" in (body if isinstance(body, dict) else {}) and ("profiles" in body or "presets" in body):
        errors.append("wowza: cannot be combined with profiles or presets")
    if obj is None or errors:
        raise FieldErrors(errors)
    name: str = obj["name"]
    source_info: SourceInfo | None = None
    presets: tuple[str, ...] = tuple(obj.get("presets", ()))
    if "wowza" in obj:
        profiles, source_info = _wowza_profiles(obj["wowza"], name, errors)
    else:
        profiles = [PRESETS[p] for p in presets] + [_profile(p) for p in obj.get("profiles", ())]
    _check_names(profiles, errors, "wowza" if "wowza" in obj else "profiles")
    if len(profiles) > MAX_PROFILES:
        errors.append(f"profiles: at most {MAX_PROFILES} renditions")
    segment_mode: str | None = obj.get("segmentMode")
    record: bool = obj.get("record", False)
    if record and segment_mode == "direct":
        # A recording must outlive the broadcasters: its URIs point at the store or at the edge.
        errors.append("record: needs segmentMode mirror or redirect, not direct")
    if record and segment_mode is None:
        segment_mode = "mirror"
    if errors:
        raise FieldErrors(errors)
    return StreamSpec(name=name, profiles=tuple(profiles), presets=presets, source_info=source_info,
                      dvr_window_seconds=obj.get("dvrWindowSeconds"), segment_mode=segment_mode,
                      record=record)


def _profile(fields: Mapping[str, Any]) -> Profile:
    return Profile(fields["name"], fields["width"], fields["height"], fields["bitrate"], fields["fps"],
                   fields.get("fpsDen"), fields.get("gop"), fields.get("profile"))


def _check_names(profiles: list[Profile], errors: list[str], path: str) -> None:
    seen: set[str] = set()
    for profile in profiles:
        if profile.name == SOURCE:
            errors.append(f"{path}: rendition name '{SOURCE}' is reserved for the untranscoded source")
        elif not is_rendition_name(profile.name):
            errors.append(f"{path}: rendition name {profile.name!r} is not safe as a URL path segment; it {RENDITION_RULE}")
        elif profile.name in seen:
            errors.append(f"{path}: rendition name {profile.name!r} is used twice")
        seen.add(profile.name)


# --- LivepeerWowza -------------------------------------------------------------------------------


def _wowza_profiles(wowza: Mapping[str, Any], stream_name: str, errors: list[str]) -> tuple[list[Profile], SourceInfo]:
    """Enabled Wowza encodes -> profiles; a PassThru encode is the `source` rendition itself."""
    source = SourceInfo(**wowza["sourceInfo"])
    template_path, template = _template(wowza, stream_name, errors)
    if template is None:
        return [], source
    profiles = []
    for i, encode in enumerate(template["encodes"]):
        profile = _encode_profile(encode, f"{template_path}.encodes[{i}]", stream_name, source, errors)
        if profile is not None:
            profiles.append(profile)
    return profiles, source


def _template(wowza: Mapping[str, Any], stream_name: str, errors: list[str]) -> tuple[str, Mapping[str, Any] | None]:
    """The transcoder template in use: named by templatesInUse, or the only one given."""
    base = "wowza.transcoderTemplateAppConfig"
    templates: Mapping[str, Any] = wowza["transcoderTemplateAppConfig"]
    if not templates:
        errors.append(f"{base}: no template given")
        return base, None
    chosen = None
    in_use = wowza.get("transcoderAppConfig", {}).get("templatesInUse", "")
    if in_use.strip():
        for entry in in_use.split(","):
            candidate = entry.strip().replace(SOURCE_STREAM_NAME, stream_name).removesuffix(".xml")
            if candidate in templates:
                chosen = candidate
                break
        if chosen is None:
            errors.append(f"wowza.transcoderAppConfig.templatesInUse: none of {in_use!r} is in {base}")
            return base, None
    elif len(templates) == 1:
        chosen = next(iter(templates))
    else:
        errors.append(
            f"wowza.transcoderAppConfig.templatesInUse: required to choose among {', '.join(sorted(templates))}"
        )
        return base, None
    return f"{base}.{chosen}", templates[chosen]


def _encode_profile(
    encode: Mapping[str, Any], path: str, stream_name: str, source: SourceInfo, errors: list[str]
) -> Profile | None:
    if not encode.get("enable", True) or _is_passthru(encode):
        return None  # the untranscoded source is always served as the `source` rendition
    raw_name = encode.get("streamName", encode.get("name", ""))
    name = CONTAINER_PREFIX.sub("", raw_name.replace(SOURCE_STREAM_NAME, stream_name), count=1)
    bitrate = encode.get("videoBitrate")
    if not isinstance(bitrate, int):
        errors.append(f"{path}.videoBitrate: must be a bit rate in bit/s, as a number or a string of digits")
        return None
    width, height = _fill_dimensions(encode.get("width", 0), encode.get("height", 0), source)
    profile = Profile(name=name, width=width, height=height, bitrate=bitrate, fps=max(1, round(source.fps)))
    for field_name, value, low, high in (
        ("width", profile.width, MIN_SIDE, MAX_SIDE),
        ("height", profile.height, MIN_SIDE, MAX_SIDE),
        ("videoBitrate", profile.bitrate, MIN_BITRATE, MAX_BITRATE),
    ):
        if not low <= value <= high:
            errors.append(f"{path}.{field_name}: gives {value}, must be between {low} and {high}")
    return profile


def _is_passthru(encode: Mapping[str, Any]) -> bool:
    return any(
        isinstance(encode.get(key), str) and encode[key].strip().lower() == "passthru"
        for key in ("videoCodec", "videoBitrate", "implementation")
    )


def _fill_dimensions(width: int, height: int, source: SourceInfo) -> tuple[int, int]:
    """A 0 side follows the source aspect ratio; both sides are rounded down to even numbers."""
    if width == 0 and height == 0:
        width, height = source.width, source.height
    elif width == 0:
        width = height * source.width // source.height
    elif height == 0:
        height = width * source.height // source.width
    return width - width % 2, height - height % 2


# --- go-livepeer's auth webhook ------------------------------------------------------------------

HOOK = Object({"url": Text(1, 2048, doc="The ingest URL: `.../live/<stream id>/...`")}, required=("url",))


def parse_hook(body: Any) -> str:
    """The ingest URL of a `POST /api/stream/hook` body; raises FieldErrors."""
    return HOOK.read(body, "")["url"]
