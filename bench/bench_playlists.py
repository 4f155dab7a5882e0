"""Benchmark of merged live playlists (issue 4): serving under load beside a bare uvicorn app, the
upstream load with 1 and with many players, the cost of merge / parse / render by window length and
broadcaster count, and a feed refreshing live: its freshness, upstream requests and rounds.

    .venv/bin/python -m bench.bench_playlists [--requests 20000] [--rounds 3] [--concurrency 32] [--players 500]
                                              [--only serve,upstream,merge,refresh,workers] [--workers 1,2]
                                              [--segments 20] [--refresh-segment 1]

1. Serving: a real `edge serve` process (EDGE_* environment, production defaults otherwise: access
   log on, poll interval 1 s) merges a live stream carried by 3 fake broadcasters (tests/fakes.py,
   real aiohttp servers in this process) while an ingest adds a 2 s segment every 2 s and moves to
   the next broadcaster every 3 segments. One answer of its merged playlist (body and headers) is
   fetched once and served constant, at the same path, by a bare uvicorn app with the same uvicorn
   settings (`bench.common:constant_app`), and, as a second baseline, by the same app on the edge's
   HTTP protocol (one write per response, edge.connections.OneWriteProtocol): the first is the
   issue's baseline, the second isolates the edge's own code. All are driven by the same lean keep-alive client
   (bench.common.drive), `--rounds` times alternately: `--requests` GETs on `--concurrency`
   connections after a warm-up, with `Accept-Encoding: identity` and `gzip` (the edge serves
   pre-compressed bytes). Server CPU time per request is reported too: it depends far less on how
   fast the client is. The tables pool the rounds; the summary's requests/s and p99 ratios are the
   median over rounds of edge / baseline, each round's servers measured back to back.
2. Upstream load: 1, then `--players` players each re-fetching a rendition's playlist every second;
   the fake broadcasters count the playlist requests they get over `--window` seconds.
3. Merge: pure functions timed in-process (median of batches, time.perf_counter): merge() of one new
   segment into a full steady-state window of 6, 60 and 3,600 segments with 1, 3 and 20 broadcasters
   (each listing the last 6 segments it received, as go-livepeer does), merge() of a round with
   nothing new, parse_upstream of one broadcaster's playlist, and what a change costs downstream
   (render_media, gzip + ETag, the stored form).
4. Refresh: a stream's feed in-process as a node runs it (real SQLite store, real fetcher, production
   settings, its own schedule: a carrier is asked when its next segment is due, cadence.py), 2
   renditions on loopback fakes, from a full stored window of 15 or 3,600 segments, while an ingest
   lists a segment every `--refresh-segment` seconds in real time (1 s by default, to keep the run
   short) to 3 carriers, moving as in section 1, or to 1. Freshness: from a segment being listed by
   a carrier to a player's blocking reload getting it (issue 13 item 3: p95 <= 0.5 s); upstream
   playlist requests per segment duration per carrier per rendition (item 3: <= 1.5); and what each
   kind of round costs (fetch + parse + merge, and render + gzip + store when it changed). Segments
   come no faster than their durations say, as from a real broadcaster: the feed asks at that pace,
   so its rounds cannot be driven back to back in compressed time (they would find nothing due).
5. Workers: section 1's serving (gzip) by an `edge serve --workers N` for each N of `--workers`
   (SQLite shared by the workers, one of them polling), beside a bare uvicorn app with N workers;
   server CPU is the supervisor's and its workers' together.

Not a test: nothing is asserted beyond sanity, and the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import aiohttp

from bench.common import (
    LoadResult,
    Ratio,
    ServerProcess,
    clean_env,
    drive,
    machine,
    percentile,
    pooled,
    response_headers,
    run,
    summary,
    table,
    uvicorn_command,
)
from edge.playlists.codec import dump_state
from edge.playlists.feed import Feed, Rendered
from edge.playlists.merge import (
    BroadcasterRef,
    FetchedPlaylist,
    Policy,
    PublishedSegment,
    PublishedState,
    choose_target_duration,
    merge,
)
from edge.playlists.render import render_media
from edge.playlists.round import TARGET_HEADROOM_S
from edge.playlists.layout import Layout, SegmentPlace
from edge.playlists.upstream_parse import parse_upstream
from edge.services import Services
from edge.tasks import cancel
from tests.fakes import FakeBroadcaster
from tests.processes import free_port

API_KEY = "bench-api-key"
BROADCASTER_TOKEN = "bench-broadcaster-token"
ADMIN_TOKEN = "bench-admin-token"
MPEGURL = "application/vnd.apple.mpegurl"

SEGMENT_S = 2.0  # go-livepeer's usual segment length
MOVE_EVERY = 3  # the ingest moves to the next broadcaster every 3 segments
UPSTREAM_WINDOW = 6  # segments a go-livepeer broadcaster lists
PRESET = "P360p30fps16x9"
RENDITIONS = ("source", PRESET)
SECTIONS = ("serve", "upstream", "merge", "refresh", "workers")


def target_for(segment_s: float) -> int:
    """The target duration the edge chooses for segments of `segment_s` (round.TARGET_HEADROOM_S)."""
    return choose_target_duration([segment_s], minimum=1, headroom=TARGET_HEADROOM_S)


TARGET_DURATION = target_for(SEGMENT_S)


# --- the ingest: which broadcaster holds which segment numbers ---------------------------------


def holders_of(number: int, broadcasters: int) -> list[int]:
    """Indexes of the broadcasters that received `number`: the ingest's current one, and at each
    move the previous one too (an upload retried after the move), as in the HTTP tests."""
    current = (number // MOVE_EVERY) % broadcasters
    if number % MOVE_EVERY == 0 and broadcasters > 1:
        return [current, (current - 1) % broadcasters]
    return [current]


def ingest(fakes: Sequence[FakeBroadcaster], stream_id: str, number: int,
           renditions: Sequence[str] = RENDITIONS) -> None:
    for i in holders_of(number, len(fakes)):
        for rendition in renditions:
            fakes[i].add(stream_id, rendition, number)


async def live_ingest(fakes: Sequence[FakeBroadcaster], stream_id: str, first: int, segment_s: float = SEGMENT_S,
                      listed: Callable[[int], None] | None = None) -> None:
    """One new segment every `segment_s`, in real time, until cancelled; `listed` is told each
    number as soon as the broadcasters list it."""
    number = first
    next_at = time.monotonic()
    while True:
        ingest(fakes, stream_id, number)
        if listed is not None:
            listed(number)
        number += 1
        next_at += segment_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


# --- 1 and 2: a real edge process, fake broadcasters, players --------------------------------


@dataclass
class LiveSetup:
    edge: ServerProcess
    fakes: list[FakeBroadcaster]
    stream_id: str
    tmp: Path

    def playlist_url(self, rendition: str = "source") -> str:
        return f"{self.edge.url}/stream/{self.stream_id}/{rendition}.m3u8"

    def upstream_requests(self) -> list[dict[str, int]]:
        return [{r: fake.requests[f"/stream/{self.stream_id}/{r}.m3u8"] for r in RENDITIONS} for fake in self.fakes]


async def start_live(tmp: Path, access_log: bool, workers: int = 1) -> tuple[LiveSetup, asyncio.Task[None]]:
    fakes = [FakeBroadcaster(f"b{i}", segment_duration=SEGMENT_S, window=UPSTREAM_WINDOW) for i in range(3)]
    for fake in fakes:
        await fake.start()
    port = free_port()
    env = clean_env(
        EDGE_DATA_DIR=str(tmp / "edge-data"),
        EDGE_API_KEYS=API_KEY,
        EDGE_BROADCASTER_TOKENS=BROADCASTER_TOKEN,
        EDGE_SHARED_BROADCASTER_TOKEN="true",  # the fakes share one token
        EDGE_BROADCASTER_NETWORKS="127.0.0.0/8",  # and run on this machine
        EDGE_ADMIN_TOKENS=ADMIN_TOKEN,
        EDGE_POLL_INTERVAL="1.0",
        EDGE_UPSTREAM_TIMEOUT="2.0",
        EDGE_HEARTBEAT_TTL="3600",  # no heartbeats during the run: keep the carriers alive
        EDGE_ACCESS_LOG="true" if access_log else "false",
        EDGE_LOG_LEVEL="info",  # the default; at "warning" the access log would be filtered out
        EDGE_WORKERS=str(workers),
    )
    edge = ServerProcess.start([sys.executable, "-m", "edge", "serve", "--port", str(port)], env,
                               tmp / "edge.log", port, "/healthz")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{edge.url}/api/stream", headers={"Authorization": f"Bearer {API_KEY}"},
                                json={"name": "bench", "presets": [PRESET]}) as response:
            if response.status != 201:
                raise RuntimeError(f"create stream: {response.status} {await response.text()}")
            stream_id = (await response.json())["id"]
        for fake in fakes:  # a heartbeat naming the stream makes the broadcaster one of its carriers
            async with session.put(f"{edge.url}/api/broadcasters/{fake.name}",
                                   headers={"Authorization": f"Bearer {BROADCASTER_TOKEN}"},
                                   json={"address": fake.url, "streams": [stream_id]}) as response:
                if response.status not in (200, 201):
                    raise RuntimeError(f"register {fake.name}: {response.status} {await response.text()}")
    # What the broadcasters would list after 36 s of ingest; then the ingest goes on live.
    history = 18
    for number in range(history):
        ingest(fakes, stream_id, number)
    task = asyncio.create_task(live_ingest(fakes, stream_id, history))
    setup = LiveSetup(edge, fakes, stream_id, tmp)
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 10
        while True:
            async with session.get(setup.playlist_url()) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no merged playlist within 10 s:\n{edge.log()}")
            await asyncio.sleep(0.2)
    return setup, task


@dataclass
class UpstreamLoad:
    players: int
    player_rps: float
    player_errors: int
    player_p99_ms: float
    seconds: float
    per_broadcaster: list[float]  # playlist requests/s each broadcaster received (all renditions)
    per_rendition: float  # mean requests/s per (broadcaster, rendition)


async def measure_upstream(setup: LiveSetup, players: int, window_s: float, seed: int) -> UpstreamLoad:
    """`players` loops re-fetching a playlist every second (staggered), counting what the fake
    broadcasters receive over `window_s` seconds once every player has started."""
    rng = random.Random(seed)
    stop = asyncio.Event()
    done = 0
    errors = 0
    latencies: list[float] = []
    counting = False

    async def player(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal done, errors
        url = setup.playlist_url(RENDITIONS[index % len(RENDITIONS)])
        await asyncio.sleep(rng.uniform(0, 1.0))
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            elapsed = time.perf_counter() - started
            if counting:
                done += 1
                errors += not ok
                latencies.append(elapsed * 1000)
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - elapsed))
            except asyncio.TimeoutError:
                pass

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers={"Accept-Encoding": "gzip"}) as session:
        tasks = [asyncio.create_task(player(session, i)) for i in range(players)]
        await asyncio.sleep(1.5)  # every player has made its first request
        before = setup.upstream_requests()
        counting = True
        started = time.perf_counter()
        await asyncio.sleep(window_s)
        counting = False
        seconds = time.perf_counter() - started
        after = setup.upstream_requests()
        stop.set()
        await asyncio.gather(*tasks)
    per_broadcaster = [sum(a[r] - b[r] for r in RENDITIONS) / seconds for a, b in zip(after, before)]
    return UpstreamLoad(
        players=players,
        player_rps=done / seconds,
        player_errors=errors,
        player_p99_ms=statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else float("nan"),
        seconds=seconds,
        per_broadcaster=per_broadcaster,
        per_rendition=statistics.fmean(per_broadcaster) / len(RENDITIONS),
    )


async def fetch_raw(url: str, encoding: str) -> tuple[bytes, list[list[str]]]:
    """One response's body, undecoded, and its headers (all but Date and Server)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": encoding}) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status}")
            return await response.read(), response_headers(response.raw_headers)


@dataclass
class Serving:
    """One encoding's pooled runs: the bare app, the edge, and (optionally) the bare app on the
    edge's HTTP protocol, which sends a response of known length in one write where stock uvicorn
    makes two (edge.connections.OneWriteProtocol): what the edge's own code costs beyond that."""

    bare: LoadResult
    edge: LoadResult
    one_write: LoadResult | None = None
    rounds: list[tuple[LoadResult, LoadResult | None, LoadResult]] = field(default_factory=list)  # (bare, one write, edge)

    def paired(self, figure: Callable[[LoadResult], float], one_write: bool = False) -> float:
        """The median over rounds of edge / baseline for `figure`, each round's servers measured back
        to back: steadier than the pooled figures when other work comes and goes on the machine."""
        return statistics.median(figure(edge) / figure(one if one_write else bare)  # type: ignore[arg-type]
                                 for bare, one, edge in self.rounds)


async def measure_serving(setup: LiveSetup, args: argparse.Namespace, workers: int = 1,
                          encodings: Sequence[str] = ("identity", "gzip"), one_write: bool = True) -> list[Serving]:
    """One `Serving` per encoding, each server driven in turn by the same client; the bare apps
    run as many uvicorn workers as the edge."""
    url = setup.playlist_url()
    # The bare app sends what the edge sent for one request: the same body and the same headers
    # (Age included, its value frozen), for the same path; uvicorn adds Date to both.
    for encoding, name in (("identity", "body"), ("gzip", "body.gz")):
        body, headers = await fetch_raw(url, encoding)
        (setup.tmp / name).write_bytes(body)
        (setup.tmp / f"{name}.headers").write_text(json.dumps(headers))
    port = free_port()
    env = clean_env(BENCH_BODY_FILE=str(setup.tmp / "body"), BENCH_GZIP_FILE=str(setup.tmp / "body.gz"),
                    BENCH_HEADERS_FILE=str(setup.tmp / "body.headers"),
                    BENCH_GZIP_HEADERS_FILE=str(setup.tmp / "body.gz.headers"))
    servers = [("bare uvicorn app", ServerProcess.start(uvicorn_command("bench.common:constant_app", port, workers),
                                                         env, setup.tmp / "bare.log", port))]
    try:
        if one_write:
            port = free_port()
            servers.append(("bare app, one write", ServerProcess.start(
                uvicorn_command("bench.common:constant_app", port, workers, http="edge.connections:OneWriteProtocol"),
                env, setup.tmp / "bare-one-write.log", port)))
        servers.append(("edge", setup.edge))
        path = url.removeprefix(setup.edge.url)
        measured = []
        for encoding in encodings:
            headers = {"Accept-Encoding": encoding}
            rounds: list[list[LoadResult]] = [[] for _ in servers]
            for _ in range(args.rounds):  # in turn, so that all meet the same background load
                for (name, server), runs in zip(servers, rounds):
                    result = await drive(f"{name}, {encoding}", server.url + path, args.requests, args.concurrency,
                                         args.warmup, headers, server)
                    if result.errors:
                        raise RuntimeError(f"{result.name}: {result.errors} requests failed: {result.statuses}")
                    runs.append(result)
            pooled_runs = [pooled(runs) for runs in rounds]
            measured.append(Serving(pooled_runs[0], pooled_runs[-1], pooled_runs[1] if one_write else None,
                                    [(r[0], r[1] if one_write else None, r[-1]) for r in zip(*rounds)]))
    finally:
        for name, server in servers:
            if server is not setup.edge:
                server.stop()
    return measured


# --- 3: pure functions -------------------------------------------------------------------------


def per_call_us(fn: Callable[[], object], budget_s: float, clock: Callable[[], float] = time.process_time) -> float:
    """Median time of one call in microseconds, over batches of at least ~10 ms each.

    Timed by default with this process's CPU time rather than time.perf_counter: on a shared
    machine, wall time also counts the time other processes held the CPU. Both clocks agree on
    an idle machine (`--clock perf_counter` to check)."""
    calls = 1
    while True:
        started = clock()
        for _ in range(calls):
            fn()
        if clock() - started >= 0.01:
            break
        calls *= 2
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < 5 or (len(samples) < 50 and time.perf_counter() < deadline):
        started = clock()
        for _ in range(calls):
            fn()
        samples.append((clock() - started) / calls)
    return statistics.median(samples) * 1e6


@dataclass
class Steady:
    """A full window just before number `arriving`, and the broadcasters' playlists without and
    with that number."""

    state: PublishedState
    policy: Policy
    before: list[FetchedPlaylist]
    after: list[FetchedPlaylist]
    texts: list[tuple[str, str, str, SegmentPlace]]  # parse_upstream's arguments per broadcaster, after


def fetched_from(fakes: Sequence[FakeBroadcaster], stream_id: str, rendition: str) -> tuple[
        list[FetchedPlaylist], list[tuple[str, str, str, SegmentPlace]]]:
    fetched, texts = [], []
    place = Layout().segment_place(stream_id, rendition)  # go-livepeer's, as the fakes serve
    for fake in fakes:
        url = f"{fake.url}/stream/{stream_id}/{rendition}.m3u8"
        text = fake.playlist_text(stream_id, rendition)
        texts.append((text, url, fake.url, place))
        fetched.append(FetchedPlaylist(broadcaster=BroadcasterRef(fake.name, fake.url),
                                       playlist=parse_upstream(text, url, fake.url, place)))
    return fetched, texts


def steady_state(fakes: Sequence[FakeBroadcaster], stream_id: str, window: int, rendition: str = "source",
                 media_sequence: int = 1000, first: int = 10_000,
                 segment_s: float = SEGMENT_S) -> tuple[PublishedState, Policy, int]:
    """The published state once `window` segments (first..) are out and the window is full, built
    directly (as the merge would have chosen: the lowest (rank, origin, name) copy), with the fakes
    holding what go-livepeer would list by then. Returns (state, policy, next number)."""
    arriving = first + window
    by_index = sorted(range(len(fakes)), key=lambda i: (0, fakes[i].url, fakes[i].name))
    segments = []
    for k, number in enumerate(range(first, arriving)):
        holders = holders_of(number, len(fakes))
        chosen = fakes[min(holders, key=by_index.index)]
        segments.append(PublishedSegment(
            msn=media_sequence + k, number=number, uri=f"{chosen.url}/stream/{stream_id}/{rendition}/{number}.ts",
            duration=segment_s, broadcaster=chosen.name))
    for number in range(arriving - UPSTREAM_WINDOW * len(fakes) * 2, arriving):
        ingest(fakes, stream_id, number, [rendition])
    state = PublishedState(target_duration=target_for(segment_s), media_sequence=media_sequence,
                           segments=tuple(segments), next_number=arriving, version=window)
    return state, Policy(window_seconds=window * segment_s), arriving


def build_steady(window: int, broadcasters: int) -> Steady:
    stream_id = "8c5f6b5e-0000-4000-8000-000000000000"
    fakes = [FakeBroadcaster(f"b{i:02d}", segment_duration=SEGMENT_S, window=UPSTREAM_WINDOW)
             for i in range(broadcasters)]
    for i, fake in enumerate(fakes):
        fake.url = f"https://b{i:02d}.example.net:8935"
    state, policy, arriving = steady_state(fakes, stream_id, window)
    before, _ = fetched_from(fakes, stream_id, "source")
    ingest(fakes, stream_id, arriving, ["source"])
    after, texts = fetched_from(fakes, stream_id, "source")
    return Steady(state, policy, before, after, texts)


@dataclass
class MergeRow:
    window: int
    broadcasters: int
    merge_new_us: float
    merge_idle_us: float
    parse_us: float  # every broadcaster's playlist, one round


@dataclass
class RenderRow:
    window: int
    render_us: float
    rendered_us: float  # render + gzip + ETag (Rendered.of)
    dump_us: float
    body_bytes: int
    gzip_bytes: int


def measure_pure(windows: Sequence[int], counts: Sequence[int], budget_s: float,
                 clock: Callable[[], float]) -> tuple[list[MergeRow], list[RenderRow], float]:
    def timed(fn: Callable[[], object]) -> float:
        return per_call_us(fn, budget_s, clock)

    now = 1_700_000_000.0
    merge_rows, render_rows = [], []
    for window in windows:
        for broadcasters in counts:
            s = build_steady(window, broadcasters)
            # The state as idle polls leave it: with old numbers still listed far below the next
            # one, the first idle round starts a restart watch; later idle rounds change nothing.
            idle = merge(s.state, s.before, now, s.policy, TARGET_DURATION)
            if merge(idle, s.before, now + 1, s.policy, TARGET_DURATION) is not idle:
                raise RuntimeError(f"idle rounds keep changing the state ({window}, {broadcasters})")
            new = merge(idle, s.after, now + 1, s.policy, TARGET_DURATION)
            # Sanity: one segment appended, one trimmed, nothing else.
            if (len(new.segments) != window or new.segments[-1].number != s.state.next_number
                    or new.media_sequence != s.state.media_sequence + 1):
                raise RuntimeError(f"merge did not advance the steady state as expected ({window}, {broadcasters})")
            merge_rows.append(MergeRow(
                window, broadcasters,
                merge_new_us=timed(lambda: merge(idle, s.after, now + 1, s.policy, TARGET_DURATION)),
                merge_idle_us=timed(lambda: merge(idle, s.before, now + 1, s.policy, TARGET_DURATION)),
                parse_us=timed(lambda: [parse_upstream(*t) for t in s.texts]),
            ))
        rendered = Rendered.of(new, now)
        render_rows.append(RenderRow(
            window,
            render_us=timed(lambda: render_media(new)),
            rendered_us=timed(lambda: Rendered.of(new, now)),
            dump_us=timed(lambda: dump_state(new)),
            body_bytes=len(rendered.body),
            gzip_bytes=len(rendered.gzipped),
        ))
    one = build_steady(6, 1).texts[0]
    return merge_rows, render_rows, timed(lambda: parse_upstream(*one))


# --- 4: a feed refreshing in real time, in-process ------------------------------------------------

# The production defaults (edge.settings) where the tests' harness shortens them for speed; and, as
# in section 1, no heartbeats during the run: the carriers are kept alive by a long heartbeat TTL.
PRODUCTION = dict(poll_interval=1.0, discovery_interval=10.0, hole_wait=1.0, rendition_wait=3.0, upstream_timeout=2.0,
                  idle_timeout=120.0, max_dvr_window=7200.0, heartbeat_ttl=3600.0)
# A round publishes a new segment; or asks carriers and finds nothing new (a segment a little late,
# a carrier waiting for the ingest to come back); or asks nobody (lease, discovery, a wait on time).
ROUND_KINDS = ("publishing", "asking, nothing new", "asking nothing")
# Segments listed before measuring: one ingest cycle over 3 broadcasters, every carrier's cadence learnt.
WARMUP = 3 * MOVE_EVERY
# (window, carriers): with 3 the ingest moves unannounced every MOVE_EVERY segments (and at each move
# the previous carrier lists one more, as in section 1); with 1 it stays, as a stream usually does.
REFRESH_CASES = ((15, 3), (15, 1), (3600, 3))


@dataclass
class RefreshRow:
    window: int
    carriers: int
    durations: float  # segment durations measured
    freshness_s: list[float]  # per measured (rendition, segment): listed by a carrier -> in a player's reload
    asks: float  # upstream playlist requests per segment duration per carrier per rendition
    asks_holding: float  # the same, to the carrier the ingest was sent to at the time
    asks_waiting: float | None  # the same, to each of the others (None: there is none)
    rounds_ms: dict[str, list[float]]  # each round's wall time, by kind (ROUND_KINDS)
    saves_per_segment: float  # store writes (each of every changed rendition) per new segment


async def measure_refresh(tmp: Path, cases: Sequence[tuple[int, int]], segments: int,
                          segment_s: float) -> list[RefreshRow]:
    """Per (window, carriers): a stream whose full window is stored (as a node finds it after a
    restart), its feed started by the playlist service as a player's first request starts it, then
    left to its own schedule while `live_ingest` lists a segment every `segment_s` in real time."""
    from tests.playlists_http.harness import open_edge  # the tests' in-process edge with fakes

    rows = []
    for window, carriers in cases:
        async for edge in open_edge(tmp / f"refresh-{window}-{carriers}", **PRODUCTION):
            svc = edge.svc
            fakes = [await edge.add_broadcaster(f"b{i}", segment_duration=segment_s, window=UPSTREAM_WINDOW)
                     for i in range(carriers)]
            seconds = window * segment_s
            dvr = int(seconds) if seconds > svc.settings.playlist_window else None
            body = {"presets": [PRESET], **({"dvrWindowSeconds": dvr} if dvr else {})}
            stream_id = (await edge.create_stream(**body))["id"]
            for fake in fakes:
                await svc.store.registry.note_carrier(stream_id, fake.name, svc.clock())
            stored = {}
            for rendition in RENDITIONS:
                state, _, arriving = steady_state(fakes, stream_id, window, rendition, segment_s=segment_s)
                stored[rendition] = dump_state(state)
            if await svc.store.playlists.save(stream_id, stored, 0) is None:
                raise RuntimeError("could not store the steady state")
            feed = await svc.playlists.watch(stream_id)
            rows.append(await follow_live(svc, feed, fakes, arriving, window, segments, segment_s))
            print(f"refresh, window {window}, {carriers} carrier(s): done", file=sys.stderr)
    return rows


async def follow_live(svc: Services, feed: Feed, fakes: Sequence[FakeBroadcaster], first: int, window: int,
                      segments: int, segment_s: float) -> RefreshRow:
    """The live ingest from `first` on: WARMUP segments unmeasured, then `segments` measured. Each
    rendition has a player whose blocking reload waits for the next version, which is also what
    keeps the feed polling. Nothing is driven: the rounds come when the feed schedules them, and
    are only timed."""
    stream_id = feed.stream.id
    start = first + WARMUP
    stop = start + segments  # numbers start..stop-1 are measured
    listed: dict[int, float] = {}  # number -> when the broadcasters listed it
    asked: dict[int, list[int]] = {}  # number -> playlist requests each fake had answered by then
    appeared: dict[tuple[str, int], float] = {}  # (rendition, number) -> when a player got it
    rounds: dict[str, list[float]] = {kind: [] for kind in ROUND_KINDS}
    saves = 0
    measuring = False

    def requests() -> list[int]:
        return [sum(fake.requests[f"/stream/{stream_id}/{r}.m3u8"] for r in RENDITIONS) for fake in fakes]

    def on_listed(number: int) -> None:
        nonlocal measuring
        listed[number], asked[number] = time.perf_counter(), requests()
        measuring = start <= number < stop

    def newest() -> list[int]:
        return [state.segments[-1].number for state in feed.states.values() if state.segments]

    refresh, store_save = feed.refresh, svc.store.playlists.save

    async def timed_refresh() -> None:
        if not measuring:
            return await refresh()
        before, answered = newest(), sum(requests())
        started = time.perf_counter()
        await refresh()
        elapsed = (time.perf_counter() - started) * 1000
        published, asked_any = newest() != before, sum(requests()) != answered
        rounds[ROUND_KINDS[0 if published else 1 if asked_any else 2]].append(elapsed)

    async def counting_save(stream_id: str, states: dict[str, bytes], expected_revision: int) -> int | None:
        nonlocal saves
        saves += len(states) if measuring else 0
        return await store_save(stream_id, states, expected_revision)

    async def player(rendition: str) -> None:
        known = await svc.playlists.media(stream_id, rendition)
        seen = feed.states[rendition].segments[-1].number
        while True:
            known = await svc.playlists.next_version(stream_id, rendition, known, 3 * segment_s)
            now = time.perf_counter()
            # The states are adopted with the version served, so they tell what the player just got.
            for segment in reversed(feed.states[rendition].segments):
                if segment.number <= seen:
                    break
                appeared[(rendition, segment.number)] = now
            seen = max(seen, feed.states[rendition].segments[-1].number)

    feed.refresh = timed_refresh  # type: ignore[method-assign]
    svc.store.playlists.save = counting_save  # type: ignore[method-assign]
    tasks = [asyncio.create_task(player(rendition)) for rendition in RENDITIONS]
    tasks.append(asyncio.create_task(live_ingest(fakes, stream_id, first, segment_s, on_listed)))
    try:
        wanted = [(rendition, n) for n in range(start, stop) for rendition in RENDITIONS]
        deadline = time.perf_counter() + (stop + 1 - first) * segment_s + 10 * PRODUCTION["poll_interval"]
        while (stop not in listed or not all(key in appeared for key in wanted)) and time.perf_counter() < deadline:
            await asyncio.sleep(segment_s / 10)
        for task in tasks:  # the players' errors, if any, before the sanity checks
            if task.done():
                task.result()
    finally:
        for task in tasks:
            await cancel(task)
    missing = [key for key in wanted if key not in appeared]
    if missing:
        raise RuntimeError(f"refresh did not publish {len(missing)} of {len(wanted)} segments, e.g. {missing[0]}")
    for rendition in RENDITIONS:
        if len(feed.states[rendition].segments) != window:
            raise RuntimeError(f"refresh did not keep a full window of {window} ({rendition})")
    durations = (listed[stop] - listed[start]) / segment_s
    holding = waiting = 0
    for n in range(start, stop):  # between the listings of n and n + 1, the ingest's carrier is that of n
        current = holders_of(n, len(fakes))[0]
        for i, (before, after) in enumerate(zip(asked[n], asked[n + 1])):
            if i == current:
                holding += after - before
            else:
                waiting += after - before
    per = durations * len(RENDITIONS)
    return RefreshRow(
        window, len(fakes), durations,
        freshness_s=[appeared[(rendition, n)] - listed[n] for rendition, n in wanted],
        asks=(holding + waiting) / per / len(fakes), asks_holding=holding / per,
        asks_waiting=waiting / per / (len(fakes) - 1) if len(fakes) > 1 else None, rounds_ms=rounds,
        saves_per_segment=saves / segments / len(RENDITIONS),
    )


# --- report ------------------------------------------------------------------------------------


def fmt_us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


SERVING_COLUMNS = ["server, Accept-Encoding", "header / body bytes", "requests/s", "p50 ms", "p99 ms",
                   "server CPU us/request", "server CPU busy", "client CPU busy"]


def serving_rows(serving: Serving, ratio_label: str) -> list[list[str]]:
    """The runs' rows and the edge / bare ratios, in SERVING_COLUMNS."""
    rows = []
    bare, edge = serving.bare, serving.edge
    for r in (bare, *([serving.one_write] if serving.one_write else []), edge):
        cpu = r.server_cpu_us_per_request
        rows.append([r.name, f"{r.head_bytes_per_response:,} / {r.bytes_per_response:,}", f"{r.rps:,.0f}", f"{r.p(50):.2f}", f"{r.p(99):.2f}",
                     "n/a" if cpu is None else f"{cpu:,.0f}",
                     "n/a" if r.server_busy is None else f"{r.server_busy:.0%}",
                     f"{r.client_cpu_s / r.seconds:.0%}"])
    for base, label in ((bare, ratio_label), (serving.one_write, ratio_label.replace("bare", "bare one write"))):
        if base is None:
            continue
        rows.append([f"**{label}**", "", f"**{edge.rps / base.rps:.2f}**", f"{edge.p(50) / base.p(50):.2f}x",
                     f"{edge.p(99) / base.p(99):.2f}x",
                     "" if None in (edge.server_cpu_s, base.server_cpu_s) else
                     f"{edge.server_cpu_us_per_request / base.server_cpu_us_per_request:.2f}x",  # type: ignore[operator]
                     "", ""])
    return rows


def report_serving(measured: list[Serving], args: argparse.Namespace) -> str:
    rows = []
    for serving in measured:
        rows += serving_rows(serving, f"edge / bare, {serving.edge.name.split(', ')[1]}")
    head = (f"Merged playlist `GET /stream/{{id}}/source.m3u8`, warm, 3 broadcasters carrying a live stream "
            f"(2 renditions, a new 2 s segment every 2 s), edge access log {'on' if args.access_log else 'off'}; "
            f"{args.rounds} alternating rounds per server of {args.requests:,} requests after {args.warmup:,} "
            f"warm-up on {args.concurrency} keep-alive connections (one client process), pooled; the bare app "
            f"is asked for the same path and sends the same body and headers (those of one edge response, "
            f"Date added by uvicorn to both); the bare app runs on stock uvicorn and, as a second baseline, on "
            f"the edge's HTTP protocol, which sends a response of known length in one write rather than two "
            f"(`edge.connections.OneWriteProtocol`). Server CPU: user+system "
            f"time of the server process per request, and its share of one core; client CPU: the load "
            f"generator's share of one core (near 100%: the client, not the server, set the pace).\n")
    return head + "\n" + table(SERVING_COLUMNS, rows)


def report_workers(runs: list[tuple[int, Serving]], args: argparse.Namespace) -> str:
    rows = []
    for workers, serving in runs:
        suffix = f", {workers} worker{'s' if workers > 1 else ''}"
        named = Serving(replace(serving.bare, name=serving.bare.name + suffix),
                        replace(serving.edge, name=serving.edge.name + suffix))
        rows += serving_rows(named, f"edge / bare{suffix}")
    head = (f"`edge serve --workers N` on SQLite (one worker polls, all serve) against a bare uvicorn app "
            f"with as many workers, the same merged playlist and headers, {args.rounds} alternating rounds of "
            f"{args.requests:,} requests after "
            f"{args.warmup:,} warm-up on {args.concurrency} keep-alive connections from one client process. "
            f"Server CPU: user+system time of the supervisor and its workers per request, and their share "
            f"of one core.\n")
    return head + "\n" + table(SERVING_COLUMNS, rows)


def serving_ratios(measured: list[Serving], suffix: str = "") -> list[Ratio]:
    ratios = []
    for serving in measured:
        edge = serving.edge
        encoding = edge.name.split(", ")[1] + suffix
        for base, name in ((serving.bare, "bare app"), (serving.one_write, "bare app with one write")):
            if base is None:
                continue
            one = base is serving.one_write
            rounds = f"median of {len(serving.rounds)} paired rounds"
            ratios.append(Ratio(f"merged playlist requests/s, edge / {name}, {encoding} ({rounds})",
                                serving.paired(lambda r: r.rps, one), 1.0))
            ratios.append(Ratio(f"merged playlist p99, edge / {name}, {encoding} ({rounds})",
                                serving.paired(lambda r: r.p(99), one), 1.0))
            if edge.server_cpu_us_per_request and base.server_cpu_us_per_request:
                ratios.append(Ratio(f"server CPU per request, edge / {name}, {encoding}",
                                    edge.server_cpu_us_per_request, base.server_cpu_us_per_request, "us"))
    return ratios


def upstream_ratios(loads: list[UpstreamLoad]) -> list[Ratio]:
    # Per-request fetching sends each broadcaster one request per player request (the table's last column).
    return [Ratio(f"upstream requests/s each broadcaster, {u.players:,} players / per-request fetching",
                  sum(u.per_broadcaster) / len(u.per_broadcaster), u.player_rps, "requests/s") for u in loads]


def report_upstream(loads: list[UpstreamLoad], window_s: float) -> str:
    rows = [[f"{u.players:,}", f"{u.player_rps:,.0f}", f"{u.player_p99_ms:.1f}", str(u.player_errors),
             " / ".join(f"{x:.2f}" for x in u.per_broadcaster), f"{u.per_rendition:.2f}",
             f"{u.player_rps:,.0f}"] for u in loads]
    head = (f"Players re-fetch a rendition's merged playlist every second (half of them each rendition); "
            f"the 3 fake broadcasters count the playlist requests they receive over {window_s:.0f} s. "
            f"Last column: what fetching upstream on every request (the original Worker) would send "
            f"each broadcaster.\n")
    return head + "\n" + table(["players", "player requests/s", "player p99 ms", "player errors",
                                "upstream requests/s, each broadcaster", "per broadcaster per rendition",
                                "per-request fetching would be"], rows)


def report_pure(merge_rows: list[MergeRow], render_rows: list[RenderRow], parse_one: float, clock: str) -> str:
    merge_table = table(
        ["window (segments)", "broadcasters", "merge, one new segment (us)", "merge, nothing new (us)",
         "parse_upstream, every broadcaster (us)"],
        [[f"{r.window:,}", r.broadcasters, fmt_us(r.merge_new_us), fmt_us(r.merge_idle_us), fmt_us(r.parse_us)]
         for r in merge_rows], right_from=0)
    render_table = table(
        ["window (segments)", "render_media (us)", "render + gzip + ETag (us)", "stored form, dump_state (us)",
         "body bytes", "gzip bytes"],
        [[f"{r.window:,}", fmt_us(r.render_us), fmt_us(r.rendered_us), fmt_us(r.dump_us), f"{r.body_bytes:,}",
          f"{r.gzip_bytes:,}"] for r in render_rows], right_from=0)
    return (f"Pure functions, in-process, median per call (time.{clock}). Each broadcaster lists the last 6 segments it "
            f"received (ingest moving every {MOVE_EVERY} segments, one retried upload at each move); "
            f"parse_upstream of one 6-segment go-livepeer playlist: {fmt_us(parse_one)} us.\n\n"
            + merge_table + "\n\nWhat a change costs after the merge, by window length:\n\n" + render_table)


def report_refresh(rows: list[RefreshRow], segments: int, segment_s: float) -> str:
    def ms(values: list[float]) -> str:
        return f"{percentile(values, 50):.2f} / {percentile(values, 90):.2f}" if values else "n/a"

    def asks(r: RefreshRow) -> str:
        waiting = "" if r.asks_waiting is None else f" ({r.asks_holding:.2f} / {r.asks_waiting:.2f})"
        return f"{r.asks:.2f}{waiting}"

    body = table(
        ["window (segments)", "carriers", "freshness p50 / p95 / max (s)",
         "upstream requests per segment duration per carrier per rendition (holding the ingest / waiting)",
         "rounds per segment duration: " + " / ".join(ROUND_KINDS),
         *(f"round {kind}, median / p90 ms" for kind in ROUND_KINDS), "stored versions per new segment and rendition"],
        [[f"{r.window:,}", f"{r.carriers}{', moving' if r.carriers > 1 else ''}",
          " / ".join(f"{percentile(r.freshness_s, p):.2f}" for p in (50, 95, 100)), asks(r),
          " / ".join(f"{len(r.rounds_ms[kind]) / r.durations:.2f}" for kind in ROUND_KINDS),
          *(ms(r.rounds_ms[kind]) for kind in ROUND_KINDS), f"{r.saves_per_segment:.2f}"] for r in rows],
        right_from=0)
    return (f"A stream's feed in-process on its own schedule (production settings: poll interval "
            f"{PRODUCTION['poll_interval']:g} s), 2 renditions on loopback fakes, from a full stored window, while "
            f"an ingest lists a {segment_s:g} s segment every {segment_s:g} s in real time: to 3 carriers, moving "
            f"to the next every {MOVE_EVERY} segments unannounced (the previous one lists one more, as in the "
            f"serving section), or to 1; {segments} segments measured after {WARMUP} (the carriers' cadence "
            f"learnt). Freshness: from the broadcasters listing a segment to a player's blocking reload getting "
            f"it, each rendition (issue 13 item 3: p95 <= 0.5 s); when the ingest moves unannounced, the carriers "
            f"waiting for it follow the stream's own pace (cadence.py): asked once the stream's next segment is "
            f"late: a step after it was due, then at intervals of half its lateness, and when the one after it "
            f"is due (if it was lost). Upstream requests: the playlist "
            f"requests the fakes answered per carrier (item 3: <= 1.5), split between the carrier the ingest went "
            f"to at the time and those waiting for it to come back (asked when the stream is late, otherwise "
            f"every 5 s). Rounds: wall time of each `Feed.refresh()` (fetches over "
            f"loopback to the fakes in this process included, parse, merge; on a new state also render, gzip "
            f"and save to SQLite), by kind.\n\n" + body)


# --- main --------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    sections = set(args.only)
    out: list[str] = [f"_{machine()}._"]
    ratios: list[Ratio] = []  # the pure-function sections have no baseline: they report absolute times
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-playlists-") as name:
        tmp = Path(name)
        if sections & {"serve", "upstream"}:
            setup, ingest_task = await start_live(tmp, args.access_log)
            try:
                loads = []
                if "upstream" in sections:  # first: it also fills the window to its steady length
                    for players in (1, args.players):
                        loads.append(await measure_upstream(setup, players, args.window, args.seed))
                        print(f"upstream, {players} players: done", file=sys.stderr)
                else:
                    await asyncio.sleep(12)  # let the merged window grow to its steady length
                pairs = []
                if "serve" in sections:
                    pairs = await measure_serving(setup, args)
                    print("serving: done", file=sys.stderr)
            finally:
                ingest_task.cancel()
                setup.edge.stop()
                for fake in setup.fakes:
                    await fake.stop()
            if pairs:
                out += ["### Serving the merged playlist", report_serving(pairs, args)]
            if loads:
                out += ["### Upstream load against players", report_upstream(loads, args.window)]
            ratios += serving_ratios(pairs) + upstream_ratios(loads)
        if "workers" in sections:
            runs = []
            for workers in args.workers:
                (tmp / f"workers-{workers}").mkdir()
                setup, ingest_task = await start_live(tmp / f"workers-{workers}", args.access_log, workers)
                try:
                    await asyncio.sleep(6)  # every worker up, the window grown
                    (serving,) = await measure_serving(setup, args, workers, ("gzip",), one_write=False)
                    runs.append((workers, serving))
                    print(f"workers {workers}: done", file=sys.stderr)
                finally:
                    ingest_task.cancel()
                    setup.edge.stop()
                    for fake in setup.fakes:
                        await fake.stop()
            out += ["### Serving with several worker processes", report_workers(runs, args)]
            for workers, serving in runs:
                ratios += serving_ratios([serving], f", {workers} worker(s) each")
        if "merge" in sections:
            merge_rows, render_rows, parse_one = measure_pure((6, 60, 3600), (1, 3, 20), args.budget,
                                                               getattr(time, args.clock))
            out += ["### Merge, parse and render", report_pure(merge_rows, render_rows, parse_one, args.clock)]
            print("merge: done", file=sys.stderr)
        if "refresh" in sections:
            rows = await measure_refresh(tmp, REFRESH_CASES, args.segments, args.refresh_segment)
            out += ["### A feed refreshing live: freshness, upstream requests, rounds",
                    report_refresh(rows, args.segments, args.refresh_segment)]
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if ratios:
        out.append(summary(ratios))
    print("\n\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests per server and encoding")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5,
                        help="serving: alternate rounds of --requests per server and encoding, pooled")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--players", type=int, default=500)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of counting upstream requests")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per pure-function figure")
    parser.add_argument("--segments", type=int, default=20,
                        help=f"refresh: segments measured per case, after {WARMUP} unmeasured")
    parser.add_argument("--refresh-segment", type=float, default=1.0,
                        help="refresh: segment duration in seconds, listed at that pace in real time "
                             "(2: go-livepeer's usual, a run twice as long)")
    parser.add_argument("--clock", choices=("process_time", "perf_counter"), default="process_time",
                        help="clock of the pure-function timings (CPU time: immune to other processes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2],
                        help="worker counts compared in the 'workers' section (default 1,2)")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="the edge's JSON access log (on by default, as in production)")
    parser.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=list(SECTIONS),
                        help=f"comma-separated sections: {','.join(SECTIONS)}")
    args = parser.parse_args()
    bounds = {"requests": (1, 1_000_000), "warmup": (0, 100_000), "concurrency": (1, 1000), "players": (1, 5000),
              "window": (1, 120), "budget": (0.01, 10), "segments": (1, 1000), "refresh_segment": (0.5, 10)}
    for key, (low, high) in bounds.items():
        if not low <= getattr(args, key) <= high:
            parser.error(f"--{key.replace('_', '-')} must be between {low} and {high}")
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown sections {sorted(unknown)}")
    run(main_async(args))


if __name__ == "__main__":
    main()
