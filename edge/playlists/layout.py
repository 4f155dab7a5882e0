"""Where a broadcaster serves a stream's playlists and segments: the one description of the URL
layout, used both to build the URLs the edge fetches and to accept only the segment URIs that sit
where that layout puts them (go-livepeer: `/stream/<id>/<rendition>.m3u8` and
`/stream/<id>/<rendition>/<n>.ts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.streams.model import is_rendition_name, is_stream_id

GO_LIVEPEER_PLAYLIST = "/stream/{stream}/{rendition}.m3u8"
GO_LIVEPEER_SEGMENT = "/stream/{stream}/{rendition}/{n}.ts"

# Unreserved characters and "/" only: no query, fragment, percent-escape or dot segment can hide in
# a template, so the literal prefix and suffix compared below are what a player resolves too.
_TEMPLATE_CHARS = re.compile(r"[A-Za-z0-9\-._~/{}]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class SegmentPlace:
    """The segment path of one (stream, rendition): `prefix` + decimal number + `suffix`."""

    prefix: str
    suffix: str

    def number_of(self, path: str) -> int | None:
        """The ingest number of a segment at `path`, or None if `path` is not in this place.

        Only plain decimal digits: "+7", "0x7", " 7" or "٧" (other Unicode digits) are not numbers here.
        """
        if not (path.startswith(self.prefix) and path.endswith(self.suffix)):
            return None
        digits = path[len(self.prefix) : len(path) - len(self.suffix)]
        if not digits or not digits.isascii() or not digits.isdigit():
            return None
        return int(digits) if len(digits) <= 20 else None


@dataclass(frozen=True, slots=True)
class Layout:
    """A broadcaster's URL layout, as path templates with `{stream}`, `{rendition}` and `{n}`."""

    playlist: str = GO_LIVEPEER_PLAYLIST
    segment: str = GO_LIVEPEER_SEGMENT

    def __post_init__(self) -> None:
        _check_template("playlist", self.playlist, {"stream", "rendition"})
        _check_template("segment", self.segment, {"stream", "rendition", "n"})
        if "/" in self.segment.partition("{n}")[2]:
            raise ValueError("segment: {n} must be in the last path segment")

    def playlist_url(self, origin: str, stream_id: str, rendition: str) -> str:
        """The rendition's media playlist on `origin`, refusing anything but a checked id and name."""
        _check_names(stream_id, rendition)
        return origin + self.playlist.format(stream=stream_id, rendition=rendition)

    def segment_place(self, stream_id: str, rendition: str) -> SegmentPlace:
        _check_names(stream_id, rendition)
        prefix, _, suffix = self.segment.partition("{n}")
        return SegmentPlace(
            prefix=prefix.format(stream=stream_id, rendition=rendition),
            suffix=suffix.format(stream=stream_id, rendition=rendition),
        )


def _check_names(stream_id: str, rendition: str) -> None:
    if not is_stream_id(stream_id) or not is_rendition_name(rendition):
        raise ValueError(f"refusing to build an upstream path for {stream_id!r}/{rendition!r}")


def _check_template(name: str, template: str, required: set[str]) -> None:
    if not template.startswith("/") or _TEMPLATE_CHARS.fullmatch(template) is None:
        raise ValueError(f"{name}: {template!r} must be a path of letters, digits, '-._~/' and placeholders")
    if "//" in template or "/./" in template or "/../" in template or template.endswith(("/.", "/..")):
        raise ValueError(f"{name}: {template!r} must not contain empty or dot segments")
    found = _PLACEHOLDER.findall(template)
    unknown = set(found) - required
    if unknown:
        raise ValueError(f"{name}: unknown placeholder(s) {sorted(unknown)}; use {sorted(required)}")
    for placeholder in sorted(required):
        if found.count(placeholder) != 1:
            raise ValueError(f"{name}: {template!r} must contain {{{placeholder}}} exactly once")
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        raise ValueError(f"{name}: {template!r} has an unmatched brace")
