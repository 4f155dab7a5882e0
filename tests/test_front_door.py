"""Answers ready at the front door (edge.connections: the HTTP protocol answering what a `FrontDoor`
has ready, without an ASGI cycle) are the bytes the app would have sent: for any sequence of
requests on one connection, sent one by one or pipelined in one write (GET, HEAD, POST, bodies,
queries, percent-encoded paths, HTTP/1.0, `Connection: close`, `Expect: 100-continue`), a real
server with a door and one without send the same bytes (but for the Date header), each request is
counted once, and the connection's own deadlines still hold."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from edge.connections import server_config
from tests.conftest import free_port, make_settings


class Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def answer_for(scope: dict[str, Any]) -> Answer:
    """What both the app and the door answer: depends on the method, path and query."""
    path, query = scope["path"], scope["query_string"]
    body = f"{scope['method']} {path} {query.decode('latin-1')} {scope['http_version']}".encode()
    if path.endswith("/304"):
        return Answer(304, [(b"etag", b'"v"')], b"")
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    return Answer(200, headers, b"" if scope["method"] == "HEAD" else body)


class App:
    """An ASGI app answering `answer_for`, reading the whole body first (echoed in a header)."""

    def __init__(self, door: "Door | None") -> None:
        self.door = door
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = answer_for(scope)
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [*answer.headers, (b"x-body", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": answer.body})


class Door:
    """Has answers ready for paths under /ready/ (what the app would send, its body length 0)."""

    def __init__(self) -> None:
        self.answered_routes: list[str] = []

    def ready(self, scope: dict[str, Any]) -> tuple[Answer, str] | None:
        if not scope["path"].startswith("/ready/"):
            return None
        answer = answer_for(scope)
        return Answer(answer.status, [*answer.headers, (b"x-body", b"0")], answer.body), "/ready/{x}"

    def answered(self, scope: dict[str, Any], route: str, status: int, elapsed: float) -> None:
        assert elapsed >= 0
        self.answered_routes.append(route)


async def serving(app: App, tmp_path: Path, **overrides: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = free_port()
    settings = make_settings(tmp_path / "data", host="127.0.0.1", port=port, **overrides)
    server = uvicorn.Server(server_config(app, settings, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, port


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[tuple[tuple[App, int], tuple[App, int], Door]]:
    door = Door()
    with_door, without = App(door), App(None)
    running = [await serving(with_door, tmp_path / "a"), await serving(without, tmp_path / "b")]
    try:
        yield (with_door, running[0][2]), (without, running[1][2]), door
    finally:
        for server, task, _ in running:
            server.should_exit = True
            await task


REQUEST = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "GET", "HEAD", "POST"]),
    "path": st.sampled_from(["/ready/a", "/ready/304", "/other", "/ready/a%20b", "/ready/%2e", "/x/304"]),
    "query": st.sampled_from(["", "", "?t=1", "?_HLS_msn=3&_HLS_part=1"]),
    "version": st.sampled_from(["1.1", "1.1", "1.1", "1.0"]),
    "close": st.booleans(),
    "body": st.sampled_from([None, None, b"", b"abc"]),
    "expect": st.booleans(),
})


def encode(request: dict[str, Any]) -> bytes:
    lines = [f"{request['method']} {request['path']}{request['query']} HTTP/{request['version']}", "Host: t"]
    if request["close"]:
        lines.append("Connection: close")
    elif request["version"] == "1.0":
        lines.append("Connection: keep-alive")
    body = request["body"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
        if request["expect"] and request["version"] == "1.1":
            lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


_DATE = re.compile(rb"date: [^\r]*\r\n")


async def conversation(port: int, requests: list[bytes], pipelined: bool) -> bytes:
    """Everything the server sent on one connection (until it closed or went quiet)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""

    async def drain(quiet: float) -> bool:
        nonlocal received
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), quiet)
            except asyncio.TimeoutError:
                return True
            if not chunk:
                return False
            received += chunk

    try:
        if pipelined:
            writer.write(b"".join(requests))
            await drain(0.3)
        else:
            for request in requests:
                writer.write(request)
                if not await drain(0.1):
                    break
    finally:
        writer.close()
    return _DATE.sub(b"", received)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(REQUEST, min_size=1, max_size=5), pipelined=st.booleans())
async def test_the_door_sends_what_the_app_would(
        servers: tuple[tuple[App, int], tuple[App, int], Door], requests: list[dict[str, Any]], pipelined: bool) -> None:
    (with_door, door_port), (without, plain_port), door = servers
    encoded = [encode(r) for r in requests]
    before_app, before_door = with_door.calls, len(door.answered_routes)
    plain_calls_before = without.calls
    assert await conversation(door_port, encoded, pipelined) == await conversation(plain_port, encoded, pipelined)
    # Each request the server read was answered once: by the door or by the app, never both.
    assert (with_door.calls - before_app) + (len(door.answered_routes) - before_door) == without.calls - plain_calls_before


async def test_plain_requests_are_answered_by_the_door_and_the_rest_by_the_app(
        servers: tuple[tuple[App, int], tuple[App, int], Door]) -> None:
    (with_door, port), _, door = servers
    cases = [
        (b"GET /ready/a HTTP/1.1\r\nHost: t\r\n\r\n", True),
        (b"HEAD /ready/a?t=1 HTTP/1.1\r\nHost: t\r\n\r\n", True),
        (b"GET /ready/a HTTP/1.0\r\nHost: t\r\n\r\n", True),  # answered, then closed
        (b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n", False),
        (b"POST /ready/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", False),
        (b"GET /ready/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", False),  # a body: the app reads it
        (b"GET /ready/a%20b HTTP/1.1\r\nHost: t\r\n\r\n", False),  # something to decode
    ]
    for request, by_door in cases:
        app_before, door_before = with_door.calls, len(door.answered_routes)
        received = await conversation(port, [request], pipelined=False)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received
        assert (len(door.answered_routes) - door_before, with_door.calls - app_before) == ((1, 0) if by_door else (0, 1))
    # Behind a request the app is still answering, a ready one waits its turn (pipelined, in order).
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /other HTTP/1.1\r\nHost: t\r\n\r\nGET /ready/a HTTP/1.1\r\nHost: t\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"HTTP/1.1"), 2)
    second = await asyncio.wait_for(reader.readuntil(b"GET /ready/a"), 2)
    writer.close()
    assert b"GET /other" in first + second and second.endswith(b"GET /ready/a")


async def test_a_connection_answered_by_the_door_keeps_its_deadlines(tmp_path: Path) -> None:
    """Requests answered at the door count as activity for the header deadline, and the keep-alive
    timeout closes an idle connection after them as after any answer."""
    app = App(Door())
    server, task, port = await serving(app, tmp_path, header_timeout=0.4)
    server.config.timeout_keep_alive = 1
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(8):  # 1.2 s of requests, longer than the header deadline
            writer.write(b"GET /ready/a HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"GET /ready/a  1.1"), 2)
            await asyncio.sleep(0.15)
        assert not reader.at_eof()
        # Then idle: closed by the deadline (the header one here, the shorter).
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
    finally:
        server.should_exit = True
        await task


async def test_an_idle_timer_armed_by_door_answers_never_closes_a_busy_connection(tmp_path: Path) -> None:
    """Door answers pipelined in one read arm one keep-alive timer, not one each, and none stays
    armed while a request after them is answered by the app: a connection kept busy stays open
    past the keep-alive timeout."""
    app = App(Door())
    server, task, port = await serving(app, tmp_path)
    server.config.timeout_keep_alive = 1
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ready/a HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"GET /other  1.1"), 2)
        for _ in range(8):  # 2 s of requests, twice the keep-alive timeout, none idle as long
            await asyncio.sleep(0.25)
            writer.write(b"GET /ready/a HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"GET /ready/a  1.1"), 2)
        writer.close()
    finally:
        server.should_exit = True
        await task


async def test_requests_pipelined_behind_a_closing_answer_are_not_run(
        servers: tuple[tuple[App, int], tuple[App, int], Door]) -> None:
    """After a door answer that closes the connection (`Connection: close`, HTTP/1.0), requests the
    client pipelined behind it are neither run by the app nor counted, as behind an answer of the app,
    also where the parser reads on behind it (HTTP/1.0 asking for keep-alive)."""
    (with_door, port), _, door = servers
    for first in (b"GET /ready/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", b"GET /ready/a HTTP/1.0\r\n\r\n",
                  # The parser reads on behind this one (keep-alive), though uvicorn closes HTTP/1.0.
                  b"GET /ready/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"):
        app_before, door_before = with_door.calls, len(door.answered_routes)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(first + b"POST /other HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                     + b"GET /ready/a HTTP/1.1\r\nHost: t\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 2)  # until the server closes
        writer.close()
        assert received.count(b"HTTP/1.1 200") == 1
        await asyncio.sleep(0.1)
        assert (with_door.calls - app_before, len(door.answered_routes) - door_before) == (0, 1)


async def test_thousands_of_requests_pipelined_in_one_send_are_all_answered_in_order(
        servers: tuple[tuple[App, int], tuple[App, int], Door]) -> None:
    """A client pipelining thousands of plain requests at once gets every answer, in order, with
    the app's answer to one in the middle in its place; the door's answers do not pile up in memory
    until the end of the loop's pass (they go out as they add up, under flow control)."""
    (with_door, port), _, door = servers
    count = 3000
    requests = [f"GET /ready/n{i}x HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(count)]
    requests[count // 2] = b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n"  # the app's, between the door's
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(requests) + b"GET /ready/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    received = await asyncio.wait_for(reader.read(), 30)  # until the server closes after the last
    writer.close()
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 ")[1:]]
    expected = [f"GET /ready/n{i}x  1.1".encode() for i in range(count)]
    expected[count // 2] = b"GET /other  1.1"
    assert bodies == [*expected, b"GET /ready/last  1.1"]
