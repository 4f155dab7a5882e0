"""The chaos soak (devtools.soak): a short run on clean streams finds nothing, and its checker
catches hand-made broken playlists (MSN going back, a URI changing, renditions misaligned, URIs
outside the layout, a stall)."""

from __future__ import annotations

import random
from urllib.parse import urljoin

from devtools.playlist_rules import (
    ReloadChecker,
    Seen,
    alignment_problems,
    layout_problem,
    reload_problems,
    stand_in_problems,
)
from devtools.soak.broadcaster import SoakBroadcaster
from devtools.soak.players import Downloads, Findings, Player
from devtools.soak.run import Soak, SoakConfig
from devtools.soak.script import hostile_uris

B = "http://127.0.0.1:9001"
SID = "s1"


def playlist(msn: int, numbers: list[int], rendition: str = "source", dseq: int = 0, target: int = 2,
             discontinuity_before: tuple[int, ...] = (), ended: bool = False, origin: str = B) -> Seen:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{msn}",
             f"#EXT-X-DISCONTINUITY-SEQUENCE:{dseq}"]
    for n in numbers:
        if n in discontinuity_before:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += ["#EXTINF:1.000,", f"{origin}/stream/{SID}/{rendition}/{n}.ts"]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return Seen.of("\n".join(lines) + "\n")


def kinds(problems: list) -> set[str]:
    return {p.kind for p in problems}


# --- the rules, on hand-made pairs ---


def test_a_good_reload_passes() -> None:
    before = playlist(10, [20, 21, 22, 23, 24, 25])
    after = playlist(12, [22, 23, 24, 25, 26, 27, 28])
    assert reload_problems(before, after) == []


def test_msn_going_back_is_caught() -> None:
    assert "msn_decreased" in kinds(reload_problems(playlist(10, [20, 21, 22]), playlist(8, [18, 19, 20, 21, 22])))


def test_msn_growing_by_other_than_the_number_removed_is_caught() -> None:
    # one segment removed from the front, but MEDIA-SEQUENCE grew by two: every MSN now names another segment
    assert "segment_changed" in kinds(reload_problems(playlist(10, [20, 21, 22]), playlist(12, [21, 22, 23])))


def test_a_published_uri_changing_is_caught() -> None:
    before = playlist(10, [20, 21, 22])
    after = playlist(10, [20, 21, 22], origin="http://127.0.0.1:9002")
    assert "segment_changed" in kinds(reload_problems(before, after))


def test_renumbered_discontinuities_and_target_changes_are_caught() -> None:
    before = playlist(10, [20, 21, 22], discontinuity_before=(21,))
    assert "discontinuity_numbering" in kinds(reload_problems(before, playlist(11, [21, 22, 23], dseq=0)))
    assert reload_problems(before, playlist(11, [21, 22, 23], discontinuity_before=(21,))) == []
    assert "target_changed" in kinds(reload_problems(before, playlist(10, [20, 21, 22], target=3, discontinuity_before=(21,))))


def test_changes_after_endlist_and_a_shrinking_window_are_caught() -> None:
    ended = playlist(10, [20, 21, 22], ended=True)
    assert "changed_after_endlist" in kinds(reload_problems(ended, playlist(10, [20, 21, 22, 23], ended=True)))
    checker = ReloadChecker()
    assert checker.check(playlist(0, list(range(8)))) == []  # 8 s listed: 3 x target reached
    assert kinds(checker.check(playlist(6, [6, 7, 8]))) == {"window_shrank"}


def test_misaligned_renditions_are_caught() -> None:
    source = playlist(10, [20, 21, 22, 23])
    low = playlist(10, [20, 21, 23, 24], rendition="low", discontinuity_before=(23,))  # passed 22 alone
    found = alignment_problems(low, source)
    assert {p.kind for p, _ in found} == {"misaligned", "discontinuity_misaligned"}
    assert alignment_problems(playlist(10, [20, 21, 22, 23], rendition="low"), source) == []


def test_every_hostile_uri_of_the_script_is_outside_the_layout() -> None:
    playlist_url = f"{B}/stream/{SID}/source.m3u8"
    for uri in hostile_uris(SID, "source", "s2", "low", 16):
        problem = layout_problem(urljoin(playlist_url, uri), SID, "source", [B])
        assert problem is not None and problem.kind in ("uri_outside_layout", "uri_foreign_host"), uri
    assert layout_problem(f"{B}/stream/{SID}/source/16.ts", SID, "source", [B]) is None


def test_a_stand_in_from_another_rendition_must_be_framed_by_discontinuities() -> None:
    own, other = f"{B}/stream/{SID}/low/", f"{B}/stream/{SID}/source/"
    assert layout_problem(other + "16.ts", SID, "low", [B], ["source"]) is None
    assert layout_problem(other + "16.ts", SID, "low", [B]) is not None  # not a rendition of the stream

    def seen(*entries: tuple[str, bool]) -> Seen:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
        for uri, mark in entries:
            lines += (["#EXT-X-DISCONTINUITY"] if mark else []) + ["#EXTINF:1.000,", uri]
        return Seen.of("\n".join(lines) + "\n")

    framed = seen((own + "1.ts", False), (other + "2.ts", True), (other + "3.ts", False), (own + "4.ts", True))
    assert stand_in_problems(framed, "low") == []
    unframed_in = seen((own + "1.ts", False), (other + "2.ts", False), (own + "3.ts", True))
    unframed_out = seen((own + "1.ts", False), (other + "2.ts", True), (own + "3.ts", False))
    assert kinds(stand_in_problems(unframed_in, "low")) == kinds(stand_in_problems(unframed_out, "low")) == {"stand_in_unframed"}


# --- the soak's own player path ---


class FakeWorld:
    def __init__(self) -> None:
        self.findings = Findings()
        self.broadcasters = [SoakBroadcaster("b")]
        self.target_hint = 2.0
        self.clock = 0.0
        self.streams = {SID: ("source", "low")}

    def elapsed(self) -> float:
        return self.clock

    def nodes_up(self) -> list[str]:
        return ["http://edge"]

    def disrupted(self, node: str) -> str | None:
        return None

    def store_disrupted(self) -> bool:
        return False

    def recently_killed(self, origin: str) -> bool:
        return False

    def faults_near(self, seconds: float) -> str:
        return "edge node http://edge SIGKILLed at t=1.0s" if self.clock - 1.0 <= seconds else ""


async def test_the_soak_player_reports_a_broken_pair_with_both_playlists() -> None:
    world = FakeWorld()
    world.broadcasters[0].port = 9001
    latest: dict[str, Seen] = {}
    players = {r: Player(world, SID, r, latest, Downloads(world), random.Random(1)) for r in ("source", "low")}
    players["source"].check("http://edge", playlist(10, [20, 21, 22]))
    players["low"].check("http://edge", playlist(10, [20, 21, 23], rendition="low", discontinuity_before=(23,)))
    players["source"].check("http://edge", playlist(9, [19, 20, 21, 22]))  # MSN back
    counts = world.findings.counts
    assert counts["msn_decreased"] == 1 and counts["misaligned"] == 1, counts
    broken = next(v for v in world.findings.kept if v.kind == "msn_decreased")
    assert [label for label, _ in broken.playlists] == ["previous reload (from http://edge)", "this reload (from http://edge)"]
    assert "MEDIA-SEQUENCE:10" in broken.playlists[0][1] and "MEDIA-SEQUENCE:9" in broken.playlists[1][1]


async def test_a_stall_while_a_broadcaster_lists_newer_segments_is_reported() -> None:
    world = FakeWorld()
    b = world.broadcasters[0]
    await b.start()
    try:
        player = Player(world, SID, "source", {}, Downloads(world), random.Random(1))
        for n in range(3):
            b.receive(SID, "source", n, 1.0)
        for second in range(12):  # the edge keeps serving 0..2 while 3.. arrive upstream
            world.clock = float(second)
            b.receive(SID, "source", 3 + second, 1.0)
            player.check("http://edge", playlist(0, [0, 1, 2], origin=b.url))
    finally:
        await b.kill()
    assert dict(world.findings.counts) == {"stall": 1}
    # The report names the process faults just before, to tell a takeover from a slow poll.
    stall = next(v for v in world.findings.kept if v.kind == "stall")
    assert "process faults just before: edge node http://edge SIGKILLed at t=1.0s" in stall.detail


# --- a real soak, faults off ---


async def test_a_short_soak_of_clean_streams_finds_no_violation() -> None:
    soak = Soak(SoakConfig(minutes=20 / 60, streams=2, seed=3, faults=False))
    report = await soak.run()
    text = report.render()
    assert report.findings.total == 0, text
    assert report.findings.reloads >= 2 * 3 * 15, text  # 2 streams x 3 renditions, ~1 reload/s
    assert report.findings.downloads >= 2 * 3 * 15, text
    assert all(p is None or p.poll() is not None for p in (n.process.proc if n.process else None for n in soak.nodes))
    assert "result: PASS" in text
