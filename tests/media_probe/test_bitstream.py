"""H.264 sequence parameter sets written field by field (any profile, size, cropping, frame or field
coding, picture order type, scaling lists), escaped as a NAL unit is, and read back exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.media.bitstream import HIGH_PROFILES, BitReader, h264_sps, unescape


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)  # rbsp_stop_one_bit, alignment
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def escaped(rbsp: bytes) -> bytes:
    """Emulation prevention as an encoder inserts it (H.264 7.4.1)."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@st.composite
def sps(draw: st.DrawFn) -> tuple[bytes, str, int, int]:
    profile = draw(st.sampled_from([66, 77, 88, 100, 110, 122, 244]))
    constraints, level = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    w = BitWriter()
    w.ue(draw(st.integers(0, 31)))  # seq_parameter_set_id
    chroma = 1
    if profile in HIGH_PROFILES:
        chroma = draw(st.integers(0, 3))
        w.ue(chroma)
        separate = 0
        if chroma == 3:
            separate = draw(st.integers(0, 1))
            w.u(1, separate)
        lists = 8 if chroma != 3 else 12  # by chroma_format_idc, separate planes or not
        chroma = 0 if separate else chroma  # ChromaArrayType, which sets the crop units
        w.ue(draw(st.integers(0, 6)))
        w.ue(draw(st.integers(0, 6)))
        w.u(1, draw(st.integers(0, 1)))
        scaling = draw(st.booleans())
        w.u(1, int(scaling))
        if scaling:
            for i in range(lists):
                present = draw(st.integers(0, 3)) == 0
                w.u(1, int(present))
                if present:  # deltas until the list is full or the next scale is 0 (7.3.2.1.1.1)
                    last = 8
                    for _ in range(16 if i < 6 else 64):
                        delta = draw(st.sampled_from([0, 1, -1, 7, -8, 100]))
                        w.se(delta)
                        last = (last + delta + 256) % 256
                        if last == 0:
                            break
    w.ue(draw(st.integers(0, 12)))
    poc = draw(st.integers(0, 2))
    w.ue(poc)
    if poc == 0:
        w.ue(draw(st.integers(0, 12)))
    elif poc == 1:
        w.u(1, 0)
        w.se(draw(st.integers(-100, 100)))
        w.se(draw(st.integers(-100, 100)))
        cycle = draw(st.integers(0, 5))
        w.ue(cycle)
        for _ in range(cycle):
            w.se(draw(st.integers(-100, 100)))
    w.ue(draw(st.integers(0, 16)))
    w.u(1, 0)
    mbs_w, units_h = draw(st.integers(1, 240)), draw(st.integers(1, 135))
    w.ue(mbs_w - 1)
    w.ue(units_h - 1)
    frame_only = draw(st.integers(0, 1))
    w.u(1, frame_only)
    if not frame_only:
        w.u(1, 0)
    w.u(1, 1)
    crop_x = 2 if chroma in (1, 2) else 1
    crop_y = (2 if chroma == 1 else 1) * (2 - frame_only)
    height_full = (2 - frame_only) * units_h * 16
    left, right = draw(st.integers(0, (mbs_w * 16 - 1) // crop_x // 2)), 0
    top = draw(st.integers(0, (height_full - 1) // crop_y // 2))
    w.u(1, 1)
    for value in (left, right, top, 0):
        w.ue(value)
    nal = b"\x67" + escaped(bytes([profile, constraints, level]) + w.rbsp())
    if chroma == 0:
        crop_x, crop_y = 1, 2 - frame_only
    return nal, f"avc1.{profile:02x}{constraints:02x}{level:02x}", mbs_w * 16 - crop_x * left, height_full - crop_y * top


@given(sps())
def test_any_sps_reads_back_its_codec_and_cropped_size(case: tuple[bytes, str, int, int]) -> None:
    nal, codec, width, height = case
    video = h264_sps(nal)
    assert video is not None
    assert (video.codec, video.width, video.height) == (codec, width, height)


@given(sps(), st.integers(0, 200))
def test_a_truncated_sps_is_unknown_or_right(case: tuple[bytes, str, int, int], cut: int) -> None:
    nal, codec, width, height = case
    video = h264_sps(nal[:cut])
    assert video is None or (video.codec, video.width, video.height) == (codec, width, height)


@given(st.binary(max_size=64))
def test_escaping_and_unescaping_are_inverse(data: bytes) -> None:
    assert unescape(escaped(data)) == data


@given(st.integers(0, 2**31), st.integers(-(2**30), 2**30))
def test_exp_golomb_codes_read_back(u: int, s: int) -> None:
    w = BitWriter()
    w.ue(u)
    w.se(s)
    r = BitReader(w.rbsp())
    assert (r.ue(), r.se()) == (u, s)
