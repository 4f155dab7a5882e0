"""What to probe and what the samples say: the pure half of edge/playlists/probing.py."""

from __future__ import annotations

from edge.media.ts import Probed
from edge.playlists.merge import PublishedSegment, PublishedState
from edge.playlists.probing import Candidate, Sample, candidates, measure

H264 = Probed(("avc1.64001f", "mp4a.40.2"), 1280, 720)


def segment(msn: int, substitute: str | None = None) -> PublishedSegment:
    return PublishedSegment(msn=msn, number=msn + 100, uri=f"https://b/{msn}.ts", duration=2.0, substitute=substitute)


def test_candidates_are_the_newest_own_segments_on_offer() -> None:
    state = PublishedState(target_duration=2, segments=tuple(segment(i) for i in range(5))
                           + (segment(5, substitute="low"),))
    offers = {("hd", n): [("a", f"u{n}")] for n in (100, 102, 103, 104, 105)}
    assert candidates("hd", state, offers) == [
        Candidate(102, 2.0, (("a", "u102"),)), Candidate(103, 2.0, (("a", "u103"),)), Candidate(104, 2.0, (("a", "u104"),))]
    assert candidates("other", state, offers) == []


def test_measure_takes_peak_and_average_of_whole_segments() -> None:
    media = measure("hd", [Sample(2.0, 500_000, H264), Sample(2.0, 700_000, H264), Sample(1.0, None, H264)])
    assert media is not None and media.codecs == H264.codecs and (media.width, media.height) == (1280, 720)
    assert (media.bandwidth, media.average_bandwidth) == (2_800_000, 2_400_000)


def test_measure_names_nothing_when_samples_disagree_or_none_probed() -> None:
    other = Probed(("avc1.42c01e",), 640, 360)
    assert measure("hd", [Sample(2.0, 1, H264), Sample(2.0, 1, other)]) is None
    assert measure("hd", [Sample(2.0, 1, None)]) is None
    assert measure("hd", []) is None
    audio = measure("hd", [Sample(2.0, None, Probed(("mp4a.40.2",)))])
    assert audio is not None and audio.width is None and audio.bandwidth is None
