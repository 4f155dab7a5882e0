"""Stream and rendition values, and their JSON in the API (the stored form is in codec.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

SOURCE = "source"
# One URL path segment, safe everywhere: 1-100 characters, starting with a letter or digit, not
# ending with a dot, no slashes. Written in the syntax Python and JSON Schema (ECMA-262) share: the
# API description publishes it as it is.
RENDITION_PATTERN = "^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9_-])?$"
RENDITION_RULE = (
    "must be safe as one URL path segment: 1-100 letters, digits, '_', '-' and '.', starting with a "
    "letter or digit, not ending with '.'; 'source' is reserved for the untranscoded input"
)
RENDITION_NAME = re.compile(RENDITION_PATTERN)
STREAM_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_stream_id(value: str) -> bool:
    return STREAM_ID.match(value) is not None


def is_rendition_name(value: str) -> bool:
    return RENDITION_NAME.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Profile:
    """One transcoded rendition, as Livepeer's API describes it."""

    name: str
    width: int
    height: int
    bitrate: int
    fps: int
    fps_den: int | None = None
    gop: str | None = None
    encoder_profile: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's JSON of the profile (Livepeer's shape)."""
        out: dict[str, Any] = {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "bitrate": self.bitrate,
            "fps": self.fps,
        }
        if self.fps_den is not None:
            out["fpsDen"] = self.fps_den
        if self.gop is not None:
            out["gop"] = self.gop
        if self.encoder_profile is not None:
            out["profile"] = self.encoder_profile
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Profile":
        """A profile from the API's JSON (as an ingest tool reads our answers)."""
        return cls(
            name=doc["name"],
            width=doc["width"],
            height=doc["height"],
            bitrate=doc["bitrate"],
            fps=doc["fps"],
            fps_den=doc.get("fpsDen"),
            gop=doc.get("gop"),
            encoder_profile=doc.get("profile"),
        )


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the ingest said of its source, when it said it (LivepeerWowza does)."""

    width: int
    height: int
    fps: float

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "fps": self.fps}


# An RFC 6381 codec string as the probe writes them ("avc1.64001f", "hvc1.2.4.L60.90", "mp4a.40.2"):
# nothing that could break out of a quoted CODECS attribute is ever stored, so all of it can be served.
CODEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class RenditionMedia:
    """What one rendition's segments were found to carry: probed by the edge from its first
    segments, once, and stored with the stream so that every node's master playlist names it."""

    rendition: str
    codecs: tuple[str, ...]  # video first, as CODECS lists them
    width: int | None = None
    height: int | None = None
    bandwidth: int | None = None  # bit/s: the peak of the segments measured
    average_bandwidth: int | None = None  # bit/s: their total size over their total duration

    def __post_init__(self) -> None:
        if not is_rendition_name(self.rendition):
            raise ValueError("rendition: " + RENDITION_RULE)
        if not self.codecs or not all(isinstance(c, str) and CODEC.match(c) for c in self.codecs):
            raise ValueError("codecs must be RFC 6381 codec strings")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        for name in ("width", "height", "bandwidth", "average_bandwidth"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"codecs": list(self.codecs)}
        if self.width is not None:
            doc["width"], doc["height"] = self.width, self.height
        if self.bandwidth is not None:
            doc["bandwidth"] = self.bandwidth
        if self.average_bandwidth is not None:
            doc["averageBandwidth"] = self.average_bandwidth
        return doc

    @classmethod
    def from_json(cls, rendition: str, doc: dict[str, Any]) -> "RenditionMedia":
        """ValueError (or TypeError) when `doc` is not what to_json writes."""
        if not isinstance(doc, dict) or not isinstance(doc["codecs"], list):
            raise TypeError("media: an object with a list of codecs")
        return cls(
            rendition=rendition, codecs=tuple(doc["codecs"]), width=doc.get("width"), height=doc.get("height"),
            bandwidth=doc.get("bandwidth"), average_bandwidth=doc.get("averageBandwidth"),
        )


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A validated create request: everything the client chose."""

    name: str
    profiles: tuple[Profile, ...]
    presets: tuple[str, ...] = ()
    source_info: SourceInfo | None = None
    dvr_window_seconds: int | None = None
    segment_mode: str | None = None  # direct, redirect or mirror; None: the deployment's
    record: bool = False


SEGMENT_MODES = ("direct", "redirect", "mirror")


@dataclass(frozen=True, slots=True)
class Stream:
    id: str
    name: str
    profiles: tuple[Profile, ...]
    created_at: int  # milliseconds since the epoch, as Livepeer's API
    presets: tuple[str, ...] = ()
    source_info: SourceInfo | None = None
    ended_at: int | None = None
    dvr_window_seconds: int | None = None  # a longer playlist window than the edge's default
    segment_mode: str | None = None  # one of SEGMENT_MODES; None: the deployment's
    record: bool = False  # keep every segment; the ended playlists are the recording (VOD)
    media: tuple[RenditionMedia, ...] = ()  # what the renditions were found to carry, once probed

    def media_of(self, rendition: str) -> RenditionMedia | None:
        return next((m for m in self.media if m.rendition == rendition), None)

    def with_media(self, media: RenditionMedia) -> "Stream":
        """This stream with `media` stored for its rendition (replacing what was there)."""
        kept = tuple(m for m in self.media if m.rendition != media.rendition)
        return replace(self, media=(*kept, media))

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def rendition_names(self) -> tuple[str, ...]:
        return (SOURCE, *(p.name for p in self.profiles))

    def renditions(self) -> dict[str, str]:
        return {name: rendition_path(self.id, name) for name in self.rendition_names}

    def api_json(self) -> dict[str, Any]:
        """The API's JSON of the stream (Livepeer's shape); the stored form is edge/streams/codec.py's."""
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "profiles": [p.to_json() for p in self.profiles],
            "presets": list(self.presets),
            "createdAt": self.created_at,
            "endedAt": self.ended_at,
        }
        if self.source_info is not None:
            doc["sourceInfo"] = self.source_info.to_json()
        if self.dvr_window_seconds is not None:
            doc["dvrWindowSeconds"] = self.dvr_window_seconds
        if self.segment_mode is not None:
            doc["segmentMode"] = self.segment_mode
        doc["kind"] = "stream"
        doc["renditions"] = self.renditions()
        doc["playbackUrl"] = f"/stream/{self.id}.m3u8"
        doc["ended"] = self.ended
        doc["isActive"] = not self.ended
        doc["record"] = self.record
        if self.record:
            # The same playlists: live while the stream is, the whole recording (VOD) once ended.
            doc["recording"] = {"playbackUrl": doc["playbackUrl"], "renditions": self.renditions(),
                                "ready": self.ended}
        return doc


def ended(stream: Stream, ended_at: int) -> Stream:
    """The stream marked ended at `ended_at`; idempotent: the first end time stays."""
    return stream if stream.ended_at is not None else replace(stream, ended_at=ended_at)


def rendition_path(stream_id: str, rendition: str) -> str:
    return f"/stream/{stream_id}/{rendition}.m3u8"
