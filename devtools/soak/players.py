"""The soak's players and what they check.

One loop per (stream, rendition) reloads the merged playlist about every half target duration,
alternating between the edge nodes that are up, keeps the previous playlist and checks each new one
against it (devtools.playlist_rules), against the latest playlists of the stream's other renditions
(alignment), against the layout, and against what the broadcasters list (stall). Every URI is
downloaded when it is first seen. Findings are counted by kind; the first few are kept in detail.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Protocol

import aiohttp

from devtools.playlist_rules import (
    Problem,
    ReloadChecker,
    Seen,
    alignment_problems,
    ingest_number,
    layout_problem,
    stand_in_problems,
)
from devtools.soak.broadcaster import SoakBroadcaster


@dataclass(frozen=True)
class Violation:
    at: float  # seconds since the soak began
    stream: str
    rendition: str
    kind: str
    detail: str
    node: str = ""
    playlists: tuple[tuple[str, str], ...] = ()  # (label, text as served) of the playlists it is about


@dataclass
class Findings:
    """Everything the players counted, and the violations (deduplicated: one per broken thing)."""

    keep_per_kind: int = 3
    reloads: int = 0  # playlists received and checked
    changes: int = 0  # of those, new versions
    unavailable: Counter[str] = field(default_factory=Counter)  # tolerated non-answers, by reason
    downloads: int = 0
    downloads_lost_with_killed: int = 0  # on a broadcaster killed since: a known limit, not a violation
    misaligned_msns: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    kept: list[Violation] = field(default_factory=list)
    _seen_keys: set[Hashable] = field(default_factory=set)

    def first_time(self, key: Hashable) -> bool:
        if key in self._seen_keys:
            return False
        self._seen_keys.add(key)
        return True

    def violation(self, v: Violation, key: Hashable) -> None:
        if not self.first_time(key):
            return
        self.counts[v.kind] += 1
        if sum(1 for k in self.kept if k.kind == v.kind) < self.keep_per_kind:
            self.kept.append(v)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class World(Protocol):
    """What the players need to know of the soak around them."""

    findings: Findings
    broadcasters: list[SoakBroadcaster]
    streams: dict[str, tuple[str, ...]]  # stream id -> its renditions
    target_hint: float  # reload pace before a playlist said its target duration

    def elapsed(self) -> float: ...
    def nodes_up(self) -> list[str]: ...
    def disrupted(self, node: str) -> str | None: ...  # why a non-answer from `node` is expected now
    def store_disrupted(self) -> bool: ...  # publishing is impossible now (shared store restarting)
    def recently_killed(self, origin: str) -> bool: ...
    def faults_near(self, seconds: float) -> str: ...  # process faults of the last `seconds`, for reports


class Player:
    def __init__(self, world: World, sid: str, rendition: str, latest: dict[str, Seen],
                 downloads: "Downloads", rng: random.Random) -> None:
        self.world = world
        self.sid = sid
        self.rendition = rendition
        self.latest = latest  # rendition -> the newest playlist any player of this stream received
        self.downloads = downloads
        self.rng = rng
        self.checker = ReloadChecker()
        self.seen_uris: set[str] = set()
        self.last_change = 0.0
        self.pending: tuple[int, float] | None = None  # a newer number listed upstream, since when
        self.stalled = False
        self.last_node = ""
        self._turn = itertools.count()

    @property
    def ended(self) -> bool:
        return self.checker.last is not None and self.checker.last.ended

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.reload(http)
            target = self.checker.last.target if self.checker.last else self.world.target_hint
            try:
                await asyncio.wait_for(stop.wait(), target / 2 * self.rng.uniform(0.8, 1.2))
            except asyncio.TimeoutError:
                pass

    async def reload(self, http: aiohttp.ClientSession) -> None:
        nodes = self.world.nodes_up()
        if not nodes:
            self.world.findings.unavailable["no edge node up"] += 1
            return
        node = nodes[next(self._turn) % len(nodes)]
        url = f"{node}/stream/{self.sid}/{self.rendition}.m3u8"
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                status, text = response.status, await response.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._no_answer(node, f"{type(exc).__name__}", None)
            return
        if status == 404 and self.checker.last is None:
            return  # nothing published yet
        if status != 200:
            self._no_answer(node, f"HTTP {status}", text)
            return
        try:
            seen = Seen.of(text)
        except ValueError as exc:
            self.report(node, Problem("unparsable", str(exc)), None, text, key=("unparsable", text[:200]))
            return
        self.check(node, seen)

    def _no_answer(self, node: str, what: str, body: str | None) -> None:
        why = self.world.disrupted(node)
        if why is not None:
            self.world.findings.unavailable[why] += 1
        else:
            self.report(node, Problem("no_answer", f"{what} from {node}"), None, body,
                         key=("no_answer", node, int(self.world.elapsed())))

    # --- the checks on one received playlist ---

    def check(self, node: str, seen: Seen) -> None:
        world, findings = self.world, self.world.findings
        before = self.checker.last
        findings.reloads += 1
        labels = (f"previous reload (from {self.last_node})", f"this reload (from {node})")
        for problem in self.checker.check(seen):
            self.report(node, problem, before, seen.text, key=(problem.kind, before, seen), labels=labels)
        self.last_node = node
        now = world.elapsed()
        if before is None or (seen.msn, seen.segments, seen.ended) != (before.msn, before.segments, before.ended):
            findings.changes += 1
            self.last_change = now
            self.pending, self.stalled = None, False
        self.latest[self.rendition] = seen
        self._check_alignment(node, seen)
        self._check_uris(node, seen)
        self._check_stall(node, seen, now)

    def _check_alignment(self, node: str, seen: Seen) -> None:
        findings = self.world.findings
        for other_rendition, other in list(self.latest.items()):
            if other_rendition == self.rendition:
                continue
            pair = tuple(sorted((self.rendition, other_rendition)))
            for problem, offset in alignment_problems(seen, other):
                msn = problem.detail.split(":", 1)[0]
                if findings.first_time(("msn", problem.kind, self.sid, pair, msn)):
                    findings.misaligned_msns += 1
                # one violation per drift: the same offset on later MSNs is the same fault
                key = (problem.kind, self.sid, pair, offset if self.rendition == pair[0] else -offset)
                self.report(node, Problem(problem.kind, f"{self.rendition} vs {other_rendition}, {problem.detail}"),
                            other, seen.text, key=key, per_rendition=False,
                            labels=(f"latest {other_rendition}", f"this reload of {self.rendition}"))

    def _check_uris(self, node: str, seen: Seen) -> None:
        origins = [b.url for b in self.world.broadcasters]
        others = [r for r in self.world.streams[self.sid] if r != self.rendition]
        for problem in stand_in_problems(seen, self.rendition):
            self.report(node, problem, None, seen.text, key=(problem.kind, problem.detail))
        for segment in seen.segments:
            if segment.uri in self.seen_uris:
                continue
            self.seen_uris.add(segment.uri)
            problem = layout_problem(segment.uri, self.sid, self.rendition, origins, others)
            if problem is not None:
                self.report(node, problem, None, seen.text, key=(problem.kind, segment.uri))
            else:  # only ever fetch from our own broadcasters
                self.downloads.submit(self, node, segment.uri, seen)

    def _check_stall(self, node: str, seen: Seen, now: float) -> None:
        """Unchanged for more than 3 target durations while a broadcaster has listed a newer segment
        (in the layout, answering normally) for at least 1.5 target durations (the freshness rule)."""
        if seen.ended:
            return
        numbers = [n for s in seen.segments if (n := ingest_number(s.uri)) is not None]
        newest = max((n for b in self.world.broadcasters for n in b.visible_numbers(self.sid, self.rendition)),
                     default=None)
        if newest is None or (numbers and newest <= max(numbers)):
            self.pending = None
        elif self.pending is None:
            self.pending = (newest, now)
        if (self.pending is None or self.stalled or now - self.last_change <= 3 * seen.target
                or now - self.pending[1] < 1.5 * seen.target):
            return
        if self.world.store_disrupted():
            self.world.findings.unavailable["stall while the shared store restarted"] += 1
            return
        self.stalled = True
        faults = self.world.faults_near(now - self.last_change + 3 * seen.target)
        self.report(node, Problem("stall", (
            f"unchanged for {now - self.last_change:.1f} s (target {seen.target}) while segment {self.pending[0]} "
            f"has been listed upstream for {now - self.pending[1]:.1f} s"
            + (f" (process faults just before: {faults})" if faults else ""))), None, seen.text,
            key=("stall", self.sid, self.rendition, round(self.last_change, 1)))

    def report(self, node: str, problem: Problem, before: Seen | None, after: str | None, key: Hashable,
               per_rendition: bool = True, labels: tuple[str, str] = ("previous reload", "this reload")) -> None:
        """Count a violation once per `key` (per stream, and per rendition unless told otherwise),
        with the playlists it is about: `before` (the previous reload, or the other rendition) and
        `after` (what was just received)."""
        playlists = tuple((label, text) for label, text in zip(labels, (before.text if before else None, after)) if text)
        self.world.findings.violation(Violation(
            at=self.world.elapsed(), stream=self.sid, rendition=self.rendition, kind=problem.kind,
            detail=problem.detail, node=node, playlists=playlists,
        ), (self.sid, self.rendition, key) if per_rendition else (self.sid, key))


class Downloads:
    """Fetches every URI a player saw for the first time, a few at once (all on 127.0.0.1)."""

    def __init__(self, world: World, workers: int = 8) -> None:
        self.world = world
        self.workers = workers
        self.queue: asyncio.Queue[tuple[Player, str, str, Seen]] = asyncio.Queue()

    def submit(self, player: Player, node: str, uri: str, seen: Seen) -> None:
        self.queue.put_nowait((player, node, uri, seen))

    async def run(self, http: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self._worker(http) for _ in range(self.workers)))

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) until every submitted URI was fetched."""
        waiter = asyncio.ensure_future(self.queue.join())
        await asyncio.wait([waiter], timeout=timeout_s)
        waiter.cancel()

    async def _worker(self, http: aiohttp.ClientSession) -> None:
        while True:
            player, node, uri, seen = await self.queue.get()
            try:
                await self._fetch(http, player, node, uri, seen)
            finally:
                self.queue.task_done()

    async def _fetch(self, http: aiohttp.ClientSession, player: Player, node: str, uri: str, seen: Seen) -> None:
        findings = self.world.findings
        try:
            async with http.get(uri, timeout=aiohttp.ClientTimeout(total=5)) as response:
                await response.read()
                outcome = f"HTTP {response.status}" if response.status != 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            outcome = type(exc).__name__
        findings.downloads += 1
        if outcome is None:
            return
        origin = uri.split("/stream/", 1)[0]
        if self.world.recently_killed(origin):
            findings.downloads_lost_with_killed += 1
            return
        player.report(node, Problem("download_failed", f"{outcome}: {uri}"), None, seen.text,
                       key=("download_failed", uri))
