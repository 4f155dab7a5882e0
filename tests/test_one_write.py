"""A response of known length goes out in one write (edge.connections.OneWrite): whatever the writes,
the bytes reach the transport whole and in order, nothing stays held past the end of a response, and
a real server's answers (GET, HEAD, 304, streamed, 100-continue, pipelined) are unchanged. Whole
responses wait for the end of the loop's pass (edge.connections.Batch), each connection's bytes still
in order, none sent to a connection that closed meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import uvicorn
from hypothesis import given, strategies as st

from edge.connections import Batch, OneWrite, server_config
from tests.conftest import free_port, make_settings


class Recording:
    def __init__(self) -> None:
        self.calls: list[bytes] = []  # one entry per system call the transport would make
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.calls.append(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


HEADS = st.sampled_from([
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
])
BODIES = st.binary(max_size=40) | st.just(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n")
OPS = st.lists(st.one_of(st.tuples(st.just("write"), HEADS | BODIES), st.tuples(st.just("flush"), st.just(b"")),
                         st.tuples(st.just("close"), st.just(b""))), max_size=20)


@given(OPS)
def test_bytes_go_out_whole_in_order_and_nothing_stays_held(ops: list[tuple[str, bytes]]) -> None:
    transport = Recording()
    one = OneWrite(transport)  # type: ignore[arg-type]
    written = b""
    for op, data in ops:
        if op == "write":
            one.write(data)
            written += data
        elif op == "flush":
            one.flush()
            assert b"".join(transport.calls) == written  # the end of a response: everything out
        else:
            one.close()
            assert transport.closed and b"".join(transport.calls) == written
    one.flush()
    assert b"".join(transport.calls) == written


class Passes:
    """A loop as a Batch uses it: callbacks asked for with call_soon run when the test says."""

    def __init__(self) -> None:
        self.soon: list[Any] = []

    def call_soon(self, callback: Any) -> None:
        self.soon.append(callback)

    def end_pass(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


BATCH_OPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["write", "whole", "flush", "close", "gone", "pass"]),
                               HEADS | BODIES), max_size=30)


@given(BATCH_OPS, st.sampled_from([1, 60, 65536]))
def test_whole_responses_wait_for_the_end_of_the_pass_in_order(ops: list[tuple[int, str, bytes]], most: int) -> None:
    loop = Passes()
    batch = Batch(loop)  # type: ignore[arg-type]
    transports = [Recording() for _ in range(3)]
    connections = [OneWrite(t, batch, waiting_max=most) for t in transports]  # type: ignore[arg-type]
    written = [b""] * 3  # what each connection was given while open, in order
    for k, op, data in ops:
        one, transport = connections[k], transports[k]
        if op == "gone":  # the peer went: the transport closes under the protocol
            transport.closed = True
            continue
        if transport.closed:
            continue
        if op == "write":
            one.write(data)
            written[k] += data
        elif op == "whole":
            one.write_whole(data)
            written[k] += data
        elif op == "flush":
            one.flush()
            assert b"".join(transport.calls) == written[k]
        elif op == "close":
            one.close()
            assert b"".join(transport.calls) == written[k]
        else:
            loop.end_pass()
        # Never more than given, in order; never `most` bytes or more waiting for the pass.
        assert written[k].startswith(b"".join(transport.calls))
        assert one._waiting_bytes < most
    loop.end_pass()
    for k, transport in enumerate(transports):
        sent = b"".join(transport.calls)
        if transport.closed:
            assert written[k].startswith(sent)
        else:
            one = connections[k]
            one.flush()
            assert b"".join(transport.calls) == written[k]


def test_a_pass_writes_each_connections_whole_responses_in_one_call_after_all_were_given() -> None:
    loop = Passes()
    batch = Batch(loop)  # type: ignore[arg-type]
    a, b = Recording(), Recording()
    one_a, one_b = OneWrite(a, batch), OneWrite(b, batch)  # type: ignore[arg-type]
    one_a.write_whole(b"first")
    one_b.write_whole(b"other")
    one_a.write_whole(b"second")
    assert a.calls == b.calls == [] and len(loop.soon) == 1  # one callback for the pass
    loop.end_pass()
    assert a.calls == [b"firstsecond"] and b.calls == [b"other"]
    one_a.write_whole(b"third")
    b.closed = True  # gone before the pass ended: nothing written to it, the others still are
    one_b.write_whole(b"lost")
    loop.end_pass()
    assert a.calls == [b"firstsecond", b"third"] and b.calls == [b"other"]


def test_a_long_pipeline_answered_in_one_pass_is_written_as_it_is_answered() -> None:
    """Whole responses do not pile up until the pass ends (a client pipelining thousands of requests
    in one read): past `waiting_max` bytes they go out, so the transport's flow control sees them."""
    loop = Passes()
    transport = Recording()
    one = OneWrite(transport, Batch(loop), waiting_max=1000)  # type: ignore[arg-type]
    answers = [b"HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n" + bytes([65 + i % 26]) * 300 for i in range(40)]
    for answer in answers:
        one.write_whole(answer)
    assert len(transport.calls) >= 10 and all(len(call) < 2000 for call in transport.calls)
    loop.end_pass()
    assert b"".join(transport.calls) == b"".join(answers)


def test_a_head_of_known_length_goes_out_with_its_body_and_others_at_once() -> None:
    transport = Recording()
    one = OneWrite(transport)  # type: ignore[arg-type]
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
    one.write(head)
    assert transport.calls == []
    one.write(b"hello")
    assert transport.calls == [head + b"hello"]
    for passing in (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"):
        one.write(passing)
        assert transport.calls[-1] == passing


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/stream":  # the head at once, the body later
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-kind", b"stream")]})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})
        return
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    status = 304 if path == "/304" else 200
    body = b"" if status == 304 else b"hello"
    headers = [] if status == 304 else [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": status, "headers": [(b"etag", b'"v1"'), *headers]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[int]:
    port = free_port()
    settings = make_settings(tmp_path / "data", host="127.0.0.1", port=port)
    srv = uvicorn.Server(server_config(app, settings, lifespan="off"))
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        srv.should_exit = True
        await task


async def exchange(port: int, request: bytes, until: bytes, timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = b""
    try:
        while until not in data:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
    return data


async def test_a_real_server_answers_as_before(server: int) -> None:
    get = await exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"hello")
    assert get.startswith(b"HTTP/1.1 200 OK\r\n") and get.endswith(b"\r\n\r\nhello")
    head = await exchange(server, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", b"\r\n\r\n")  # no body write at all
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in head and head.endswith(b"\r\n\r\n")
    not_modified = await exchange(server, b"GET /304 HTTP/1.1\r\nHost: t\r\n\r\n", b"\r\n\r\n")
    assert not_modified.startswith(b"HTTP/1.1 304 ")
    # A streamed response's head arrives before its body is ready.
    early = await exchange(server, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", b"\r\n\r\n", timeout=0.3)
    assert early.startswith(b"HTTP/1.1 200 OK\r\n") and b"x-kind: stream" in early
    # 100-continue is sent before the client sends its body; then the answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(b"abc")
    answer = await asyncio.wait_for(reader.readuntil(b"abc"), 2)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    writer.close()
    # Pipelined requests: answers whole and in order.
    pipelined = await exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                               b"GET /304 HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 304")
    first, second = pipelined.index(b"HTTP/1.1 200"), pipelined.index(b"HTTP/1.1 200", 1)
    assert first == 0 and pipelined[:second].endswith(b"hello") and second < pipelined.index(b"HTTP/1.1 304")
    reader, writer = await asyncio.open_connection("127.0.0.1", server)  # a close right after a HEAD
    writer.write(b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    received = await asyncio.wait_for(reader.read(), 2)  # until the server closes
    writer.close()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"connection: close\r\n\r\n")
