"""Codec headers as RFC 6381 `CODECS` strings and a picture size: the H.264 and HEVC sequence
parameter sets and the AAC ADTS header. Pure functions of bytes; anything malformed, truncated or
out of range is `None` (unknown), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bounds on what a sequence parameter set may ask the reader to do: a hostile one cannot make it
# loop long or allocate much.
MAX_SPS_BYTES = 4096
MAX_POC_CYCLE = 255  # num_ref_frames_in_pic_order_cnt_cycle is at most 255 (H.264 7.4.2.1.1)
MAX_DIMENSION = 16384


class _End(Exception):
    """The bit reader ran past its data, or a value is out of range."""


class BitReader:
    """MSB-first bits of an RBSP (emulation prevention already removed), with Exp-Golomb codes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0  # in bits

    def u(self, n: int) -> int:
        if self.pos + n > len(self.data) * 8:
            raise _End
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:  # 32-bit codes at most (H.264 9.1): anything longer is garbage
                raise _End
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: every emulation prevention byte (00 00 03 -> 00 00) removed."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def nal_units(es: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 or 00 00 00 01)."""
    units = []
    start = es.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        end = es.find(b"\x00\x00\x01", begin)
        unit = es[begin:] if end == -1 else es[begin:end]
        units.append(unit.rstrip(b"\x00") if end != -1 else unit)
        start = end
    return units


@dataclass(frozen=True, slots=True)
class Video:
    codec: str  # RFC 6381, e.g. avc1.64001f
    width: int
    height: int


def h264_sps(nal: bytes) -> Video | None:
    """`avc1.PPCCLL` and the cropped picture size from an H.264 SPS NAL unit (type 7)."""
    if len(nal) < 4 or nal[0] & 0x1F != 7:
        return None
    rbsp = unescape(nal[1 : 1 + MAX_SPS_BYTES])
    if len(rbsp) < 4:
        return None
    profile, constraints, level = rbsp[0], rbsp[1], rbsp[2]
    try:
        size = _h264_size(BitReader(rbsp[3:]), profile)
    except _End:
        return None
    if size is None:
        return None
    return Video(codec=f"avc1.{profile:02x}{constraints:02x}{level:02x}", width=size[0], height=size[1])


HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _h264_size(r: BitReader, profile: int) -> tuple[int, int] | None:
    """H.264 7.3.2.1.1, as far as pic size and cropping."""
    r.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes = 1, 0
    if profile in HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            return None
        if chroma_format_idc == 3:
            separate_planes = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        cycle = r.ue()
        if cycle > MAX_POC_CYCLE:
            return None
        for _ in range(cycle):
            r.se()
    elif poc_type != 2:
        return None
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    left = right = top = bottom = 0
    if r.u(1):  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
    chroma_array_type = 0 if separate_planes else chroma_format_idc
    if chroma_array_type == 0:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        crop_x = 2 if chroma_format_idc in (1, 2) else 1
        crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (left + right)
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (top + bottom)
    return _size(width, height)


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = next_ = 8
    for _ in range(size):
        if next_ != 0:
            next_ = (last + r.se() + 256) % 256
        last = next_ if next_ != 0 else last


def _size(width: int, height: int) -> tuple[int, int] | None:
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        return None
    return width, height


def hevc_sps(nal: bytes) -> Video | None:
    """`hvc1.<profile>.<compat>.<tier><level>.<constraints>` (ISO/IEC 14496-15 Annex E) and the
    conformance-window size from an HEVC SPS NAL unit (type 33)."""
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F != 33:
        return None
    r = BitReader(unescape(nal[2 : 2 + MAX_SPS_BYTES]))
    try:
        r.u(4)  # sps_video_parameter_set_id
        sub_layers = r.u(3)
        r.u(1)
        space, tier, profile = r.u(2), r.u(1), r.u(5)
        compat = r.u(32)
        constraints = [r.u(8) for _ in range(6)]
        level = r.u(8)
        present = [(r.u(1), r.u(1)) for _ in range(sub_layers)]
        if sub_layers:
            r.u(2 * (8 - sub_layers))
        for profile_present, level_present in present:
            if profile_present:
                r.u(88)
            if level_present:
                r.u(8)
        r.ue()  # sps_seq_parameter_set_id
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            return None
        if chroma_format_idc == 3:
            r.u(1)
        width, height = r.ue(), r.ue()
        if r.u(1):  # conformance_window_flag
            left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
            sub_w = 2 if chroma_format_idc in (1, 2) else 1
            sub_h = 2 if chroma_format_idc == 1 else 1
            width -= sub_w * (left + right)
            height -= sub_h * (top + bottom)
    except _End:
        return None
    size = _size(width, height)
    if size is None:
        return None
    reversed_compat = int(f"{compat:032b}"[::-1], 2)
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [
        "hvc1",
        ("", "A", "B", "C")[space] + str(profile),
        f"{reversed_compat:X}",
        ("H" if tier else "L") + str(level),
        *(f"{c:X}" for c in constraints),
    ]
    return Video(codec=".".join(parts), width=size[0], height=size[1])


def adts(es: bytes) -> str | None:
    """`mp4a.40.<object type>` from the first ADTS header of an AAC elementary stream."""
    if len(es) < 7 or es[0] != 0xFF or es[1] & 0xF6 != 0xF0:  # syncword, layer 0
        return None
    object_type = (es[2] >> 6) + 1
    if (es[2] >> 2) & 0x0F >= 13:  # a sampling frequency index that is reserved or escape
        return None
    return f"mp4a.40.{object_type}"
