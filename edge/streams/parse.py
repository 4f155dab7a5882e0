"""Create-stream bodies -> a validated `StreamSpec`: the generic, presets and LivepeerWowza shapes.

Pure functions over decoded JSON. Every problem is reported at once, each naming its field, so a
client fixes its body in one round trip. Limits follow Livepeer's schema (width and height >= 128,
bitrate >= 400, fps >= 1, name 1-500 characters, unknown fields refused).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from edge.jsonbody import (
    FieldErrors,
    array,
    boolean,
    collect,
    integer,
    number,
    refuse_unknown,
    require_object,
    string,
)
from edge.streams.model import SEGMENT_MODES, SOURCE, Profile, SourceInfo, StreamSpec, is_rendition_name
from edge.streams.presets import PRESETS

MAX_PROFILES = 20
MIN_SIDE, MAX_SIDE = 128, 8192
MIN_BITRATE, MAX_BITRATE = 400, 200_000_000
MIN_FPS, MAX_FPS = 1, 240
ENCODER_PROFILES = frozenset({"H264Baseline", "H264Main", "H264High", "H264ConstrainedHigh"})

CREATE_FIELDS = frozenset({"name", "profiles", "presets", "wowza", "dvrWindowSeconds", "segmentMode", "record"})
MAX_DVR_WINDOW = 86_400  # the edge's own max_dvr_window setting may be lower
PROFILE_FIELDS = frozenset({"name", "width", "height", "bitrate", "fps", "fpsDen", "gop", "profile"})
SOURCE_STREAM_NAME = "${SourceStreamName}"
# Wowza stream names carry a container prefix ("mp4:name"); the rendition is the name after it.
CONTAINER_PREFIX = re.compile(r"^[A-Za-z0-9]+:")


def parse_create(body: Any, max_dvr_window: int = MAX_DVR_WINDOW) -> StreamSpec:
    """Validate a `POST /api/stream` body; raises FieldErrors listing every problem.

    `dvrWindowSeconds` (our extension) asks for a longer live window, up to `max_dvr_window`."""
    obj = require_object(body, "")
    errors = refuse_unknown(obj, CREATE_FIELDS, "")
    if "name" not in obj:
        errors.append("name: required")
    name = collect(errors, string, obj.get("name", ""), "name", min_length=1, max_length=500)
    if "wowza" in obj and ("profiles" in obj or "presets" in obj):
        errors.append("wowza: cannot be combined with profiles or presets")
        raise FieldErrors(errors)

    source_info: SourceInfo | None = None
    presets: tuple[str, ...] = ()
    if "wowza" in obj:
        profiles, source_info = _wowza_profiles(obj["wowza"], name or "", errors)
    else:
        presets = _presets(obj.get("presets", []), errors)
        profiles = [PRESETS[p] for p in presets]
        profiles += _profiles(obj.get("profiles", []), errors)
    _check_names(profiles, errors, "wowza" if "wowza" in obj else "profiles")
    if len(profiles) > MAX_PROFILES:
        errors.append(f"profiles: at most {MAX_PROFILES} renditions")
    dvr_window = None
    if "dvrWindowSeconds" in obj:
        dvr_window = collect(errors, integer, obj["dvrWindowSeconds"], "dvrWindowSeconds", minimum=1,
                             maximum=max_dvr_window)
    segment_mode = None
    if "segmentMode" in obj:
        segment_mode = obj["segmentMode"]
        if segment_mode not in SEGMENT_MODES:
            errors.append(f"segmentMode: must be one of {', '.join(SEGMENT_MODES)}")
            segment_mode = None
    record = bool(collect(errors, boolean, obj["record"], "record")) if "record" in obj else False
    if record and segment_mode == "direct":
        # A recording must outlive the broadcasters: its URIs point at the store or at the edge.
        errors.append("record: needs segmentMode mirror or redirect, not direct")
    if record and segment_mode is None:
        segment_mode = "mirror"
    if errors or name is None:
        raise FieldErrors(errors)
    return StreamSpec(name=name, profiles=tuple(profiles), presets=presets, source_info=source_info,
                      dvr_window_seconds=dvr_window, segment_mode=segment_mode, record=record)


def _presets(value: Any, errors: list[str]) -> tuple[str, ...]:
    items = collect(errors, array, value, "presets", max_items=MAX_PROFILES)
    if items is None:
        return ()
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or item not in PRESETS:
            errors.append(f"presets[{i}]: {item!r} is not one of {', '.join(PRESETS)}")
        elif item in out:
            errors.append(f"presets[{i}]: {item} is listed twice")
        else:
            out.append(item)
    return tuple(out)


def _profiles(value: Any, errors: list[str]) -> list[Profile]:
    items = collect(errors, array, value, "profiles", max_items=MAX_PROFILES)
    if items is None:
        return []
    out = []
    for i, item in enumerate(items):
        profile = _profile(item, f"profiles[{i}]", errors)
        if profile is not None:
            out.append(profile)
    return out


def _profile(item: Any, path: str, errors: list[str]) -> Profile | None:
    obj = collect(errors, require_object, item, path)
    if obj is None:
        return None
    found = refuse_unknown(obj, PROFILE_FIELDS, path)
    found += [f"{path}.{key}: required" for key in ("name", "width", "height", "bitrate", "fps") if key not in obj]
    if found:
        errors.extend(found)
        return None
    before = len(errors)
    name = collect(errors, string, obj["name"], f"{path}.name", min_length=1, max_length=100)
    width = collect(errors, integer, obj["width"], f"{path}.width", minimum=MIN_SIDE, maximum=MAX_SIDE)
    height = collect(errors, integer, obj["height"], f"{path}.height", minimum=MIN_SIDE, maximum=MAX_SIDE)
    bitrate = collect(errors, integer, obj["bitrate"], f"{path}.bitrate", minimum=MIN_BITRATE, maximum=MAX_BITRATE)
    fps = collect(errors, integer, obj["fps"], f"{path}.fps", minimum=MIN_FPS, maximum=MAX_FPS)
    fps_den = None
    if "fpsDen" in obj:
        fps_den = collect(errors, integer, obj["fpsDen"], f"{path}.fpsDen", minimum=1, maximum=1001)
    gop = None
    if "gop" in obj:
        gop = collect(errors, string, obj["gop"], f"{path}.gop", min_length=1, max_length=20)
    encoder_profile = None
    if "profile" in obj:
        encoder_profile = obj["profile"]
        if encoder_profile not in ENCODER_PROFILES:
            errors.append(f"{path}.profile: must be one of {', '.join(sorted(ENCODER_PROFILES))}")
    if len(errors) > before:
        return None
    return Profile(name, width, height, bitrate, fps, fps_den, gop, encoder_profile)


def _check_names(profiles: list[Profile], errors: list[str], path: str) -> None:
    seen: set[str] = set()
    for profile in profiles:
        if profile.name == SOURCE:
            errors.append(f"{path}: rendition name '{SOURCE}' is reserved for the untranscoded source")
        elif not is_rendition_name(profile.name):
            errors.append(
                f"{path}: rendition name {profile.name!r} is not safe as a URL path segment "
                "(letters, digits, '_', '-', '.'; starting with a letter or digit; at most 100)"
            )
        elif profile.name in seen:
            errors.append(f"{path}: rendition name {profile.name!r} is used twice")
        seen.add(profile.name)


# --- LivepeerWowza -------------------------------------------------------------------------------


def _wowza_profiles(value: Any, stream_name: str, errors: list[str]) -> tuple[list[Profile], SourceInfo | None]:
    """Enabled Wowza encodes -> profiles; a PassThru encode is the `source` rendition itself."""
    wowza = collect(errors, require_object, value, "wowza")
    if wowza is None:
        return [], None
    source = _source_info(wowza.get("sourceInfo"), errors)
    template_path, template = _template(wowza, stream_name, errors)
    if template is None:
        return [], source
    encodes = collect(errors, array, template.get("encodes"), f"{template_path}.encodes", max_items=64)
    if encodes is None:
        return [], source
    profiles = []
    for i, encode in enumerate(encodes):
        profile = _encode_profile(encode, f"{template_path}.encodes[{i}]", stream_name, source, errors)
        if profile is not None:
            profiles.append(profile)
    return profiles, source


def _source_info(value: Any, errors: list[str]) -> SourceInfo | None:
    if value is None:
        errors.append("wowza.sourceInfo: required (width, height and fps of the source)")
        return None
    obj = collect(errors, require_object, value, "wowza.sourceInfo")
    if obj is None:
        return None
    before = len(errors)
    width = collect(errors, integer, obj.get("width"), "wowza.sourceInfo.width", minimum=1, maximum=MAX_SIDE)
    height = collect(errors, integer, obj.get("height"), "wowza.sourceInfo.height", minimum=1, maximum=MAX_SIDE)
    fps = collect(errors, number, obj.get("fps"), "wowza.sourceInfo.fps", minimum=0.5, maximum=MAX_FPS)
    if len(errors) > before:
        return None
    return SourceInfo(width=width, height=height, fps=fps)


def _template(wowza: Mapping[str, Any], stream_name: str, errors: list[str]) -> tuple[str, Mapping[str, Any] | None]:
    """The transcoder template in use: named by templatesInUse, or the only one given."""
    base = "wowza.transcoderTemplateAppConfig"
    templates = collect(errors, require_object, wowza.get("transcoderTemplateAppConfig"), base)
    if templates is None:
        return base, None
    if not templates:
        errors.append(f"{base}: no template given")
        return base, None
    chosen = None
    app_config = wowza.get("transcoderAppConfig")
    in_use = app_config.get("templatesInUse") if isinstance(app_config, dict) else None
    if isinstance(in_use, str) and in_use.strip():
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
    path = f"{base}.{chosen}"
    return path, collect(errors, require_object, templates[chosen], path)


def _encode_profile(
    encode: Any, path: str, stream_name: str, source: SourceInfo | None, errors: list[str]
) -> Profile | None:
    obj = collect(errors, require_object, encode, path)
    if obj is None:
        return None
    enabled = collect(errors, boolean, obj.get("enable", True), f"{path}.enable")
    if not enabled:
        return None
    raw_name = obj.get("streamName", obj.get("name"))
    name_path = f"{path}.streamName" if "streamName" in obj else f"{path}.name"
    raw_name = collect(errors, string, raw_name, name_path, min_length=1, max_length=600)
    if raw_name is None:
        return None
    if _is_passthru(obj):
        return None  # the untranscoded source is always served as the `source` rendition
    name = CONTAINER_PREFIX.sub("", raw_name.replace(SOURCE_STREAM_NAME, stream_name), count=1)
    before = len(errors)
    width = collect(errors, integer, obj.get("width", 0), f"{path}.width", minimum=0, maximum=MAX_SIDE)
    height = collect(errors, integer, obj.get("height", 0), f"{path}.height", minimum=0, maximum=MAX_SIDE)
    bitrate = _video_bitrate(obj.get("videoBitrate"), f"{path}.videoBitrate", errors)
    if len(errors) > before or source is None:
        return None
    width, height = _fill_dimensions(width, height, source)
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


def _video_bitrate(value: Any, path: str, errors: list[str]) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{path}: must be a bit rate in bit/s, as a number or a string of digits")
        return 0
    return int(value)


def _fill_dimensions(width: int, height: int, source: SourceInfo) -> tuple[int, int]:
    """A 0 side follows the source aspect ratio; both sides are rounded down to even numbers."""
    if width == 0 and height == 0:
        width, height = source.width, source.height
    elif width == 0:
        width = height * source.width // source.height
    elif height == 0:
        height = width * source.height // source.width
    return width - width % 2, height - height % 2
