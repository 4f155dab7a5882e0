"""Property tests of the stream-wide decision: over random per-rendition arrivals, transcodes failing
in one rendition only, renditions dying, duplicates, failing broadcasters and hostile entries, every
rendition keeps every reload rule, all renditions agree on every MSN (RFC 8216 §6.2.4), no URI
outside the broadcaster layout is ever published, and no rendition holds the others back."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import m3u8
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge.playlists.codec import dump_state, load_state
from edge.playlists.layout import Layout
from edge.playlists.merge import BroadcasterRef, FetchedPlaylist, Policy, PublishedState, renditions_agree
from edge.playlists.render import render_media
from edge.playlists.round import StreamPolicy, decide, substitutes_by_bitrate
from edge.playlists.upstream_parse import parse_upstream
from tests.playlists.test_merge_properties import check_transition, rounded

SID = "8c5f6b5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
RENDITIONS = ("source", "P360p30fps16x9", "P144p30fps16x9")
BITRATES = {"source": 6_000_000, "P360p30fps16x9": 1_000_000, "P144p30fps16x9": 400_000}
LAYOUT = Layout()
HOSTILE = (
    "../../../../etc/{n}.ts",
    "/admin/{n}.ts",
    "/stream/{sid}/{r}/%2e%2e/{n}.ts",
    "/stream/{sid}/{r}/{n}.ts?x=../",
    "/stream/00000000-0000-4000-8000-000000000000/{r}/{n}.ts",
    "//evil.test/stream/{sid}/{r}/{n}.ts",
    "{n}.ts",
    "/stream/{sid}/{r}//{n}.ts",
)
VALID = re.compile(r"http://b[0-9]\.test/stream/" + SID + r"/([A-Za-z0-9]+)/([0-9]+)\.ts")


@dataclass(frozen=True)
class Copy:
    broadcaster: int
    rendition: str
    number: int
    duration: float
    arrival: float
    marked: bool = False  # an EXT-X-DISCONTINUITY precedes it upstream (an encoder reset)


@dataclass(frozen=True)
class Scenario:
    renditions: tuple[str, ...]
    policy: Policy
    target_duration: int
    copies: tuple[Copy, ...]
    hostile: tuple[tuple[int, str, int, str], ...]  # (broadcaster, rendition, number, template)
    steps: tuple[tuple[float, frozenset[int]], ...]
    dead: str | None  # a rendition that stops producing
    ended_at: float | None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    td = draw(st.sampled_from([2, 3]))
    policy = Policy(
        window_seconds=draw(st.sampled_from([1.0, 8.0, 15.0])),
        hole_wait_seconds=draw(st.sampled_from([0.0, 1.0, 2.5])),
        restart_margin=3,
    )
    renditions = RENDITIONS[: draw(st.integers(1, 3))]
    count = draw(st.integers(1, 3))
    segments = draw(st.integers(3, 24))
    offset = draw(st.integers(0, 30))
    dead = draw(st.none() | st.sampled_from(renditions)) if len(renditions) > 1 else None
    dies_at = draw(st.integers(0, segments)) if dead else segments
    copies = []
    for index in range(segments):
        number = index + offset
        holders = draw(st.sets(st.integers(0, count - 1), max_size=count))  # empty: lost everywhere
        for b in sorted(holders):
            arrival = 2.0 * index + draw(st.sampled_from([0.0, 0.3, 1.0, 2.5, 6.0]))
            for r in renditions:
                if r == dead and index >= dies_at:
                    continue
                if r != "source" and draw(st.integers(0, 9)) == 0:
                    continue  # this transcode failed on this broadcaster
                lag = draw(st.sampled_from([0.0, 0.0, 0.4, 1.5, 4.0]))  # transcodes finish apart
                duration = draw(st.sampled_from([2.0, td - 0.5, td + 0.6]))  # the last is too long
                marked = draw(st.integers(0, 14)) == 0
                copies.append(Copy(b, r, number, duration, arrival + lag, marked))
    hostile = tuple(
        (draw(st.integers(0, count - 1)), draw(st.sampled_from(renditions)),
         offset + draw(st.integers(0, segments + 2)), draw(st.sampled_from(HOSTILE)))
        for _ in range(draw(st.integers(0, 6)))
    )  # fmt: skip
    horizon = max((c.arrival for c in copies), default=0.0) + 10.0
    now, steps = 0.0, []
    while now < horizon and len(steps) < 70:
        now += draw(st.sampled_from([0.1, 0.5, 1.0, 2.0]))
        failing = frozenset(draw(st.sets(st.integers(0, count - 1), max_size=count)) if draw(st.booleans()) else ())
        steps.append((now, failing))
    ended_at = draw(st.none() | st.none() | st.sampled_from([t for t, _ in steps]))
    return Scenario(renditions, policy, td, tuple(copies), hostile, tuple(steps), dead, ended_at)


def ref(b: int) -> BroadcasterRef:
    return BroadcasterRef(f"b{b}", f"http://b{b}.test", rank=b % 2)


def playlist_text(scenario: Scenario, b: int, r: str, now: float) -> str:
    arrived = sorted(
        (c for c in scenario.copies if c.broadcaster == b and c.rendition == r and c.arrival <= now),
        key=lambda c: c.arrival,
    )[-6:]
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:9"]
    for c in arrived:
        if c.marked:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{c.duration:.3f},", f"/stream/{SID}/{r}/{c.number}.ts"]
    for hb, hr, n, template in scenario.hostile:
        if hb == b and hr == r:
            lines += ["#EXTINF:2.000,", template.format(n=n, sid=SID, r=r)]
    return "\n".join(lines) + "\n"


def fetch_round(scenario: Scenario, now: float, failing: frozenset[int]) -> dict[str, list[FetchedPlaylist]]:
    count = 1 + max([c.broadcaster for c in scenario.copies] + [h[0] for h in scenario.hostile] + [0])
    fetched: dict[str, list[FetchedPlaylist]] = {r: [] for r in scenario.renditions}
    for r in scenario.renditions:
        place = LAYOUT.segment_place(SID, r)
        for b in range(count):
            source = ref(b)
            if b in failing:
                fetched[r].append(FetchedPlaylist(broadcaster=source, error="timeout"))
                continue
            text = playlist_text(scenario, b, r, now)
            url = LAYOUT.playlist_url(source.origin, SID, r)
            playlist = parse_upstream(text, url, source.origin, place)
            fetched[r].append(FetchedPlaylist(broadcaster=source, playlist=playlist, status=200))
    return fetched


def play(scenario: Scenario, shuffle: random.Random | None = None) -> list[tuple[float, dict[str, list[FetchedPlaylist]], dict[str, PublishedState]]]:
    policy = StreamPolicy(
        merge=scenario.policy,
        fixed_target_duration=scenario.target_duration,
        substitutes=substitutes_by_bitrate({r: BITRATES[r] for r in scenario.renditions}),
    )
    states: dict[str, PublishedState] = {}
    history = []
    listed: dict[int, float] = {}  # when each number was first listed (the feed's StreamHistory)
    epoch, epoch_since = None, float("-inf")  # as the feed: listings before an ingest restart are not this epoch's
    for now, failing in scenario.steps:
        fetched = fetch_round(scenario, now, failing)
        if shuffle is not None:
            for items in fetched.values():
                shuffle.shuffle(items)
        for items in fetched.values():
            for f in items:
                for segment in f.playlist.segments if f.playlist is not None else ():
                    listed.setdefault(segment.number, now)
        restarts = max((s.counts.restarts for s in states.values()), default=0)
        if restarts != epoch:
            epoch, epoch_since = restarts, now
        seen = {n: at for n, at in listed.items() if at >= epoch_since}
        states = dict(decide(states, fetched, now, policy, ended_at=scenario.ended_at, seen=seen).states)
        # A merge that found a restart waits for the new epoch's numbers from now.
        restarted = max((s.counts.restarts for s in states.values()), default=0) != epoch
        history.append((now, fetched, states, {} if restarted else seen))
    return history


def check_uris(states: dict[str, PublishedState], renditions: tuple[str, ...]) -> None:
    for r, state in states.items():
        for s in state.segments:
            match = VALID.fullmatch(s.uri)
            assert match is not None, f"a URI outside the layout was published: {s.uri}"
            assert int(match.group(2)) == s.number
            assert match.group(1) == (s.substitute or r), "a copy of another rendition, not marked as a stand-in"
            assert s.substitute is None or s.substitute in renditions


def check_decided(states: dict[str, PublishedState], fetched: dict[str, list[FetchedPlaylist]], now: float, policy: Policy,
                  seen: dict[int, float]) -> None:
    """The stream is never held back: a number offered anywhere is published unless its wait runs."""
    any_state = next(iter(states.values()), None)
    if any_state is None or any_state.ended or any_state.next_number is None:
        return
    td = any_state.target_duration
    stale = any_state.stale_numbers
    offered = {
        s.number
        for items in fetched.values()
        for f in items
        if f.playlist is not None
        for s in f.playlist.segments
        if rounded(s.duration) <= td and not (stale and stale[0] <= s.number <= stale[1])
    }
    waiting = {n for n in offered if n >= any_state.next_number}
    if waiting:
        assert any_state.waiting_since is not None, "an offered number was neither published nor waited for"
        assert now - any_state.waiting_since < policy.longest_wait, "waited too long"
    if any_state.restart_watch is None:
        # Waits run side by side: nothing waits longer than the longest wait from when it was first
        # listed (a hole and a number a rendition lacked after it were waited for one after another).
        overdue = sorted(n for n in waiting if now - seen.get(n, now) >= policy.longest_wait)
        assert not overdue, f"numbers {overdue} listed for {now - seen[overdue[0]]:.2f} s still waited for"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(), st.randoms(use_true_random=False))
def test_every_rendition_keeps_the_rules_and_all_agree_on_every_msn(scenario: Scenario, shuffler: random.Random) -> None:
    history = play(scenario)
    marked = {(f"b{c.broadcaster}", c.rendition, c.number) for c in scenario.copies if c.marked}
    first_msn: int | None = None
    previous: dict[str, PublishedState] = {}
    uri_of: dict[tuple[str, int], str] = {}
    for now, fetched, states, seen in history:
        assert set(states) <= set(scenario.renditions)
        if states:
            assert set(states) == set(scenario.renditions), "every rendition is published together"
        assert renditions_agree(states.values()), "renditions disagree on an MSN"
        check_uris(states, scenario.renditions)
        check_decided(states, fetched, now, scenario.policy, seen)
        for r, state in states.items():
            if r in previous:
                check_transition(previous[r], state)
            for s in state.segments:
                assert uri_of.setdefault((r, s.msn), s.uri) == s.uri, "an MSN changed its URI"
                first_msn = s.msn if first_msn is None else min(first_msn, s.msn)
                if (s.broadcaster, s.substitute or r, s.number) in marked and s.msn != first_msn:
                    assert s.discontinuity, "an upstream DISCONTINUITY was dropped"
            for before, s in zip(state.segments, state.segments[1:]):
                if s.number != before.number + 1:
                    assert s.discontinuity, f"numbers {before.number} to {s.number} without a DISCONTINUITY"
        previous = states
    final = history[-1][2]
    for state in final.values():
        assert load_state(dump_state(state)) == state
        parsed = m3u8.loads(render_media(state).decode())
        assert [(s.uri, s.discontinuity) for s in parsed.segments] == [(s.uri, s.discontinuity) for s in state.segments]
    stand_ins = sum(s.substitute is not None for st_ in final.values() for s in st_.segments)
    event(f"stand-ins shown={min(stand_ins, 3)}")
    event(f"dead rendition={scenario.dead is not None}")
    event(f"hostile entries={len(scenario.hostile) > 0}")
    # Determinism: the same offers fetched in another order give the same states, step by step.
    assert [s for _, _, s, _ in play(scenario, shuffler)] == [s for _, _, s, _ in history]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_hostile_entries_change_nothing(scenario: Scenario) -> None:
    """The same scenario without its hostile entries publishes exactly the same playlists: a hostile
    entry neither reaches the output nor displaces a real copy nor delays one."""
    clean = Scenario(**{**scenario.__dict__, "hostile": ()})
    assert [s for _, _, s, _ in play(scenario)] == [s for _, _, s, _ in play(clean)]
