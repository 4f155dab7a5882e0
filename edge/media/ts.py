"""What an MPEG-TS segment carries, from its first bytes: PAT -> PMT -> the elementary streams, and
for each the codec (RFC 6381) and, for video, the picture size. A small bounded reader, pure: any
input (truncated, garbage, hostile lengths) gives an answer or `None` (unknown), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from edge.media.bitstream import Video, adts, h264_sps, hevc_sps, nal_units

PACKET = 188
SYNC = 0x47
MAX_PROBE_BYTES = 1 << 20  # what is read of a segment: its first MiB holds the headers in practice
MAX_ES_BYTES = 256 * 1024  # of each elementary stream, enough for a keyframe's parameter sets

H264, HEVC = 0x1B, 0x24
# Audio stream types and their fixed codec strings; AAC (ADTS) is read from its header.
ADTS_AAC = 0x0F
FIXED_AUDIO = {0x03: "mp4a.40.34", 0x04: "mp4a.40.34", 0x81: "ac-3", 0x87: "ec-3"}
# Streams that carry no media a player must decode: timed ID3 metadata, SCTE-35 cues.
IGNORED = {0x15, 0x86}


@dataclass(frozen=True, slots=True)
class Probed:
    """The codecs of every elementary stream, video first, and the video's size if it has video."""

    codecs: tuple[str, ...]
    width: int | None = None
    height: int | None = None


def probe(data: bytes) -> Probed | None:
    """What the segment starting with `data` carries; None when any media stream in it cannot be
    named (a CODECS attribute must list every one, RFC 8216 §4.3.4.2) or it is not MPEG-TS."""
    data = data[:MAX_PROBE_BYTES]
    start = _sync(data)
    if start is None:
        return None
    streams = _elementary_streams(data, start)
    if not streams:
        return None
    video: Video | None = None
    codecs: list[str] = []
    audio: list[str] = []
    for stream_type, es in streams:
        if stream_type in IGNORED:
            continue
        if stream_type in (H264, HEVC):
            if video is not None:
                return None  # two video streams: not a rendition a variant can describe
            video = _video(stream_type, es)
            if video is None:
                return None
            codecs.insert(0, video.codec)
        elif stream_type == ADTS_AAC:
            codec = adts(es)
            if codec is None:
                return None
            audio.append(codec)
        elif stream_type in FIXED_AUDIO:
            audio.append(FIXED_AUDIO[stream_type])
        else:
            return None
    codecs += [c for i, c in enumerate(audio) if c not in audio[:i]]
    if not codecs:
        return None
    if video is None:
        return Probed(codecs=tuple(codecs))
    return Probed(codecs=tuple(codecs), width=video.width, height=video.height)


def _sync(data: bytes) -> int | None:
    """The offset of the first packet: a sync byte followed by another one packet later."""
    for offset in range(min(PACKET, len(data))):
        if data[offset] == SYNC and offset + PACKET < len(data) and data[offset + PACKET] == SYNC:
            return offset
    return None


def _packets(data: bytes, start: int) -> Iterator[tuple[int, bool, bytes]]:
    """(pid, payload_unit_start, payload) of each well-formed packet; stops at lost sync."""
    for offset in range(start, len(data) - PACKET + 1, PACKET):
        packet = data[offset : offset + PACKET]
        if packet[0] != SYNC:
            return
        if packet[1] & 0x80:  # transport_error_indicator
            continue
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control = (packet[3] >> 4) & 0x3
        if not control & 1:
            continue  # no payload
        begin = 4
        if control & 2:
            begin += 1 + packet[4]
        if begin >= PACKET:
            continue
        yield pid, bool(packet[1] & 0x40), packet[begin:]


def _section(payload: bytes) -> bytes | None:
    """The PSI section starting in this payload (after its pointer field), within its length."""
    pointer = payload[0]
    section = payload[1 + pointer :]
    if len(section) < 3:
        return None
    length = ((section[1] & 0x0F) << 8) | section[2]
    if length < 9 or 3 + length > len(section):
        return None  # spanning packets: headers of real segments fit in one
    return section[: 3 + length - 4]  # CRC left out (not checked: the media decides, not us)


def _elementary_streams(data: bytes, start: int) -> list[tuple[int, bytes]]:
    """(stream type, first bytes of its PES payloads) of the program's elementary streams."""
    pmt_pid: int | None = None
    types: dict[int, int] | None = None  # pid -> stream type, in PMT order
    es: dict[int, bytearray] = {}
    for pid, unit_start, payload in _packets(data, start):
        if pid == 0 and unit_start and pmt_pid is None:
            section = _section(payload)
            if section is not None and section[0] == 0x00:
                for i in range(8, len(section) - 3, 4):
                    program = (section[i] << 8) | section[i + 1]
                    if program != 0:
                        pmt_pid = ((section[i + 2] & 0x1F) << 8) | section[i + 3]
                        break
        elif pid == pmt_pid and unit_start and types is None:
            types = _pmt(payload)
        elif types is not None and pid in types:
            buffer = es.get(pid)
            if buffer is None:
                if not unit_start:
                    continue  # the middle of a PES packet started before this segment
                buffer = es[pid] = bytearray()
            if len(buffer) < MAX_ES_BYTES:
                buffer += _pes_payload(payload) if unit_start else payload
    if types is None:
        return []
    return [(stream_type, bytes(es.get(pid, b""))) for pid, stream_type in types.items()]


def _pmt(payload: bytes) -> dict[int, int] | None:
    section = _section(payload)
    if section is None or section[0] != 0x02 or len(section) < 12:
        return None
    info = ((section[10] & 0x0F) << 8) | section[11]
    types: dict[int, int] = {}
    i = 12 + info
    while i + 5 <= len(section):
        stream_type = section[i]
        pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
        types.setdefault(pid, stream_type)
        i += 5 + (((section[i + 3] & 0x0F) << 8) | section[i + 4])
    return types or None


def _pes_payload(payload: bytes) -> bytes:
    """The elementary stream bytes of a packet that starts a PES packet (its header skipped)."""
    if len(payload) < 9 or payload[:3] != b"\x00\x00\x01":
        return b""
    return payload[9 + payload[8] :]


def _video(stream_type: int, es: bytes) -> Video | None:
    for nal in nal_units(es):
        if not nal:
            continue
        if stream_type == H264 and nal[0] & 0x1F == 7:
            return h264_sps(nal)
        if stream_type == HEVC and len(nal) > 1 and (nal[0] >> 1) & 0x3F == 33:
            return hevc_sps(nal)
    return None
