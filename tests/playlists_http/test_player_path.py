"""The player path (edge.playlists.player_path) answers exactly as Starlette's routes would: for any
request (method, path, query, Accept-Encoding, If-None-Match), the app with its front paths and the
routed app without them send the same status, headers and body, and both count the request once in
the metrics and once in the access log under the same route."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from starlette.applications import Starlette

from edge.app import EdgeApp
from edge.observability import Recorder
from edge.playlists.player_path import PlayerPath
from tests.playlists_http.harness import Edge, open_edge

UNKNOWN = "00000000-0000-4000-8000-000000000000"
PRESET = "P360p30fps16x9"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Edge, str]]:
    async for edge in open_edge(tmp_path, access_log=True):
        fake = await edge.add_broadcaster("a")
        sid = (await edge.create_stream(presets=[PRESET]))["id"]
        await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
        fake.add(sid, "source", 0, 1, 2)

        async def served() -> bool:
            return (await edge.playlist(sid)).status_code == 200

        await edge.wait_for(served)
        yield edge, sid


class Exchange:
    """What one call of an ASGI app sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def answer(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        start = self.messages[0]
        return start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in self.messages[1:])


def scope_of(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
            "headers": [(b"host", b"edge.test"), *headers], "client": ("192.0.2.7", 50000),
            "server": ("edge.test", 80), "state": {}}


def counted(edge: Edge, recorder: Recorder) -> tuple[dict[tuple[str, str, str], int], list[str]]:
    assert recorder.access is not None
    stream = recorder.access.stream
    assert isinstance(stream, io.StringIO)
    recorder.access.flush()  # the lines waiting for the next batch too
    return dict(edge.svc.metrics.http._counts), stream.getvalue().splitlines()  # noqa: SLF001


ACCEPT = st.one_of(st.none(), st.sampled_from([
    "gzip", "identity", "gzip;q=0", "GZIP", "*", "*;q=0", "br, gzip;q=0.5", "deflate", "gzip;q=abc",
    " gzip ; q=1 ", "identity;q=0, gzip;q=0.001", "", ",,", "gzip;q=0, *",
]), st.text(alphabet="gzipdeflatbr*;q=0.1, ", max_size=20))
MATCH = st.one_of(st.none(), st.sampled_from(["{etag}", "W/{etag}", "*", '"nope"', '"nope", {etag}', "", " {etag} "]),
                  st.text(alphabet='"abc,W/ *', max_size=12))
PATHS = st.sampled_from([
    "/stream/{sid}/source.m3u8", "/stream/{sid}/source.m3u8", "/stream/{sid}.m3u8", f"/stream/{{sid}}/{PRESET}.m3u8",
    "/stream/{sid}/nope.m3u8", "/stream/{sid}/bad name.m3u8", f"/stream/{UNKNOWN}/source.m3u8",
    f"/stream/{UNKNOWN}.m3u8", "/stream/not-a-uuid/source.m3u8", "/stream/{sid}/source/x.m3u8",
    "/stream/{sid}/source.m3u8x", "/stream/.m3u8", "/stream//source.m3u8",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "GET", "HEAD", "POST", "OPTIONS"]), path=PATHS,
       query=st.sampled_from([b"", b"", b"t=17", b"_HLS_skip=YES", b"_HLS_msn=abc", b"&"]),
       accept=ACCEPT, match=MATCH, later=st.integers(0, 30))
@example(method="GET", path="/stream/{sid}/source.m3u8", query=b"", accept="gzip", match="{etag}", later=3)
@example(method="HEAD", path="/stream/{sid}.m3u8", query=b"", accept=None, match=None, later=0)
async def test_the_player_path_answers_and_counts_as_the_routes_do(
        live: tuple[Edge, str], method: str, path: str, query: bytes, accept: str | None, match: str | None,
        later: int) -> None:
    edge, sid = live
    app = edge.client._transport.app  # type: ignore[attr-defined]
    assert isinstance(app, EdgeApp)
    recorder = app.door.recorder
    assert recorder.access is not None
    recorder.access.stream = recorder.access.stream if isinstance(recorder.access.stream, io.StringIO) else io.StringIO()
    etag = edge.svc.playlists.feeds[sid].rendered["source"].etag
    headers = []
    if accept is not None:
        headers.append((b"accept-encoding", accept.encode()))
    if match is not None:
        headers.append((b"if-none-match", match.replace("{etag}", etag).encode()))
    path = path.replace("{sid}", sid)

    now = edge.svc.clock() + later  # a playlist version some seconds old: its Age
    real_clock, edge.svc.clock = edge.svc.clock, lambda: now  # the same for both
    try:
        answers, routes = [], []
        for call in (app, lambda *a: Starlette.__call__(app, *a)):  # front paths first, or only the router
            before, lines_before = counted(edge, recorder)
            exchange = Exchange()
            await call(scope_of(method, path, query, headers), exchange.receive, exchange.send)
            after, lines_after = counted(edge, recorder)
            grown = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
            assert list(grown.values()) == [1], grown  # counted once
            assert len(lines_after) == len(lines_before) + 1  # logged once
            routes.append(next(iter(grown))[0])
            answers.append(exchange.answer())
    finally:
        edge.svc.clock = real_clock
    assert answers[0] == answers[1]
    assert routes[0] == routes[1]


async def test_a_plain_reload_of_a_watched_stream_is_answered_before_the_router(live: tuple[Edge, str]) -> None:
    edge, sid = live
    app = edge.client._transport.app  # type: ignore[attr-defined]
    player = next(p for p in app.door.paths if isinstance(p, PlayerPath))
    for method, path in (("GET", f"/stream/{sid}/source.m3u8"), ("HEAD", f"/stream/{sid}/source.m3u8"),
                         ("GET", f"/stream/{sid}.m3u8")):
        found = player.ready(scope_of(method, path, b"", []))
        assert found is not None and found[0].status == 200
    for method, path, query in (("GET", f"/stream/{sid}/source.m3u8", b"t=1"), ("POST", f"/stream/{sid}.m3u8", b""),
                                ("GET", f"/stream/{UNKNOWN}/source.m3u8", b""),
                                ("GET", f"/stream/{sid}/nope.m3u8", b"")):
        assert player.ready(scope_of(method, path, query, [])) is None
