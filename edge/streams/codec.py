"""The stored form of a Stream (SQLite row, Redis value): a JSON document with a version, apart
from the API's JSON (Stream.api_json), so either can change without the other. A node reads the
previous version too, so nodes of two versions can share a store during a rolling upgrade, and
readers ignore fields they do not know, so the older node reads the newer documents.
"""

from __future__ import annotations

from typing import Any

from edge.streams.model import Profile, RenditionMedia, SourceInfo, Stream

VERSION = 2  # bump on any change of layout, and keep reading the one before
READABLE = (1, 2)  # 1: the same fields, before documents carried a version


def to_document(stream: Stream) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": VERSION,
        "id": stream.id,
        "name": stream.name,
        "profiles": [_profile(p) for p in stream.profiles],
        "presets": list(stream.presets),
        "createdAt": stream.created_at,
        "endedAt": stream.ended_at,
    }
    if stream.source_info is not None:
        info = stream.source_info
        doc["sourceInfo"] = {"width": info.width, "height": info.height, "fps": info.fps}
    if stream.dvr_window_seconds is not None:
        doc["dvrWindowSeconds"] = stream.dvr_window_seconds
    # Added fields, no new version: a node that does not know them reads the stream as direct,
    # not recorded, with nothing probed (during a rolling upgrade only).
    if stream.segment_mode is not None:
        doc["segmentMode"] = stream.segment_mode
    if stream.record:
        doc["record"] = True
    if stream.media:
        doc["media"] = {m.rendition: m.to_json() for m in stream.media}
    return doc


def from_document(doc: dict[str, Any]) -> Stream:
    """The stream `to_document` wrote, in this version or the previous one; ValueError otherwise."""
    version = doc.get("version", 1)
    if version not in READABLE:
        raise ValueError(f"stream document of version {version!r}: this node reads {READABLE}")
    source = doc.get("sourceInfo")
    return Stream(
        id=doc["id"],
        name=doc["name"],
        profiles=tuple(
            Profile(
                name=p["name"], width=p["width"], height=p["height"], bitrate=p["bitrate"], fps=p["fps"],
                fps_den=p.get("fpsDen"), gop=p.get("gop"), encoder_profile=p.get("profile"),
            )
            for p in doc["profiles"]
        ),
        presets=tuple(doc.get("presets", ())),
        created_at=doc["createdAt"],
        source_info=SourceInfo(width=source["width"], height=source["height"], fps=source["fps"]) if source else None,
        ended_at=doc.get("endedAt"),
        dvr_window_seconds=doc.get("dvrWindowSeconds"),
        segment_mode=doc.get("segmentMode"),
        record=bool(doc.get("record", False)),
        media=_media(doc.get("media")),
    )


def _media(doc: Any) -> tuple[RenditionMedia, ...]:
    """The probed media of the renditions; an entry this node cannot read is left out: it is only
    knowledge, probed again by the feed that misses it."""
    if not isinstance(doc, dict):
        return ()
    out = []
    for rendition, entry in doc.items():
        try:
            out.append(RenditionMedia.from_json(rendition, entry))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(out)


def _profile(p: Profile) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": p.name, "width": p.width, "height": p.height, "bitrate": p.bitrate, "fps": p.fps}
    if p.fps_den is not None:
        doc["fpsDen"] = p.fps_den
    if p.gop is not None:
        doc["gop"] = p.gop
    if p.encoder_profile is not None:
        doc["profile"] = p.encoder_profile
    return doc
