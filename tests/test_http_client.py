"""The edge's upstream HTTP client against a raw server on loopback that answers exactly the bytes
each case needs: framing (length, chunked, close-delimited), keep-alive reuse and a kept connection
the server dropped, size caps (declared, streamed, decoded), timeouts, broken answers, encodings."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry

from broadcaster_registry.destinations import DestinationPolicy
from edge.http_client import HttpClient, ProtocolError, ResponseTooLarge
from edge.upstream import AddressGuard, UpstreamFetcher, UpstreamMetrics

LOOPBACK = DestinationPolicy.build(["127.0.0.0/8", "::1/128"])
PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n/stream/s/source/1.ts\n"


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


class RawServer:
    """Answers each request (each blank-line-terminated head) with `answer(n)`, n counting from 0
    over the server's life; None closes the connection without answering."""

    def __init__(self, answer: Callable[[int], bytes | None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                reply = self.answer(len(self.requests) - 1)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if b"\r\nConnection: close\r\n" in reply.partition(b"\r\n\r\n")[0] + b"\r\n":
                    break  # as it said
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


async def started(timeout_s: float) -> UpstreamFetcher:
    """A started fetcher allowed on loopback, with a 4096-byte cap."""
    f = UpstreamFetcher(timeout_s, 4096, UpstreamMetrics(CollectorRegistry()), AddressGuard(LOOPBACK))
    await f.start()
    return f


@pytest.fixture
async def fetcher() -> AsyncIterator[UpstreamFetcher]:
    f = await started(1.0)
    yield f
    await f.close()


async def serve(answer: Callable[[int], bytes | None]) -> tuple[RawServer, str]:
    server = RawServer(answer)
    return server, await server.start()


async def test_keep_alive_one_connection_for_many_requests(fetcher: UpstreamFetcher) -> None:
    server, url = await serve(lambda n: ok(PLAYLIST, 'ETag: "v1"'))
    try:
        for _ in range(5):
            result = await fetcher.fetch("b1", f"{url}/stream/s/source.m3u8")
            assert result.ok and result.body == PLAYLIST and result.validators is not None
            assert result.validators.etag == '"v1"'
        assert server.connections == 1
        head = server.requests[0].decode()
        assert head.startswith("GET /stream/s/source.m3u8 HTTP/1.1\r\n") and f"Host: {url[7:]}\r\n" in head
    finally:
        await server.stop()


async def test_chunked_and_close_delimited_bodies_arrive_whole(fetcher: UpstreamFetcher) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(PLAYLIST[i:i + 7]), PLAYLIST[i:i + 7]) for i in range(0, len(PLAYLIST), 7))
               + b"0\r\n\r\n")
    server, url = await serve(lambda n: chunked if n == 0 else b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PLAYLIST)
    try:
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).body == PLAYLIST
        assert (await fetcher.fetch("b1", f"{url}/b.m3u8")).body == PLAYLIST  # until the server closes
    finally:
        await server.stop()


async def test_a_kept_connection_the_server_dropped_is_replaced_once(fetcher: UpstreamFetcher) -> None:
    # The server answers, then drops the connection when the next request comes (as a keep-alive
    # timeout does): the client asks again on a new connection, unseen by the caller.
    server, url = await serve(lambda n: None if n == 1 else ok(PLAYLIST))
    try:
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).ok
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).ok
        assert server.connections == 2 and len(server.requests) == 3
    finally:
        await server.stop()


async def test_a_new_connection_closed_without_an_answer_is_a_connect_error(fetcher: UpstreamFetcher) -> None:
    server, url = await serve(lambda n: None)
    try:
        result = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert result.outcome == "connect_error" and len(server.requests) == 1  # not asked twice
    finally:
        await server.stop()


@pytest.mark.parametrize("reply, detail, connections", [
    (ok(b"x" * 5000), "5000 bytes declared", 2),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"y" * 2048 + b"\r\n" * 1
     + b"800\r\n" + b"y" * 2048 + b"\r\n" + b"800\r\n" + b"y" * 2048 + b"\r\n0\r\n\r\n", "over 4096 bytes", 2),
    # Small on the wire: read whole, the connection stays in step and is kept.
    (ok(gzip.compress(b"z" * 100_000), "Content-Encoding: gzip"), "over 4096 bytes once decoded", 1),
])
async def test_answers_over_the_cap_are_dropped(fetcher: UpstreamFetcher, reply: bytes, detail: str, connections: int) -> None:
    server, url = await serve(lambda n: reply if n == 0 else ok(PLAYLIST))
    try:
        result = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert result.outcome == "too_large" and result.detail == detail and result.body == b""
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).ok  # a connection in step
        assert server.connections == connections
    finally:
        await server.stop()


async def test_a_gzip_answer_is_decoded(fetcher: UpstreamFetcher) -> None:
    server, url = await serve(lambda n: ok(gzip.compress(PLAYLIST), "Content-Encoding: gzip"))
    try:
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).body == PLAYLIST
    finally:
        await server.stop()


@pytest.mark.parametrize("reply", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Encoding: br\r\n\r\nabc",
    ok(b"not gzip", "Content-Encoding: gzip"),
    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
])
async def test_a_broken_answer_is_a_connect_error_and_the_next_request_works(fetcher: UpstreamFetcher, reply: bytes) -> None:
    server, url = await serve(lambda n: reply if n == 0 else ok(PLAYLIST))
    try:
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).outcome == "connect_error"
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).ok
    finally:
        await server.stop()


async def test_a_silent_server_times_out_and_its_connection_is_not_reused() -> None:
    f = await started(0.2)
    # The first answer comes too late; were the connection kept, the next request would read it.
    server, url = await serve(lambda n: (b"" if n == 0 else ok(PLAYLIST)))
    try:
        result = await f.fetch("b1", f"{url}/slow.m3u8")
        assert result.outcome == "timeout"
        assert (await f.fetch("b1", f"{url}/a.m3u8")).body == PLAYLIST
        assert server.connections == 2
    finally:
        await f.close()
        await server.stop()


async def test_statuses_and_conditional_requests(fetcher: UpstreamFetcher) -> None:
    replies = [ok(PLAYLIST, 'ETag: "v1"', "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT"),
               b"HTTP/1.1 304 Not Modified\r\n\r\n", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]
    server, url = await serve(lambda n: replies[n])
    try:
        first = await fetcher.fetch("b1", f"{url}/a.m3u8")
        again = await fetcher.fetch("b1", f"{url}/a.m3u8", validators=first.validators)
        assert again.outcome == "unchanged" and again.validators == first.validators
        assert 'If-None-Match: "v1"' in server.requests[1].decode()
        assert "If-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT" in server.requests[1].decode()
        missing = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert missing.outcome == "http_error" and missing.status == 404 and missing.answered
    finally:
        await server.stop()


async def test_nothing_listening_is_a_connect_error(fetcher: UpstreamFetcher) -> None:
    server, url = await serve(lambda n: None)
    await server.stop()
    assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).outcome == "connect_error"


async def test_a_header_value_with_a_line_break_is_never_sent() -> None:
    client = HttpClient(lambda *a: asyncio.sleep(0), "t", "*/*")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="line break"):
        await client.get("http://127.0.0.1:1/a", 1.0, 100, {"If-None-Match": '"v1"\r\nX-Injected: 1'})


async def test_only_http_urls() -> None:
    client = HttpClient(lambda *a: asyncio.sleep(0), "t", "*/*")  # type: ignore[arg-type,return-value]
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "http:///nohost"):
        with pytest.raises(ValueError):
            await client.get(url, 1.0, 100)


def test_the_errors_say_what_happened() -> None:
    assert isinstance(ProtocolError("x"), OSError) and ResponseTooLarge("y").detail == "y"


async def test_at_most_a_few_connections_to_one_broadcaster_however_many_ask_at_once(fetcher: UpstreamFetcher) -> None:
    server, url = await serve(lambda n: ok(PLAYLIST))
    try:
        results = await asyncio.gather(*(fetcher.fetch("b1", f"{url}/s{i}.m3u8") for i in range(200)))
        assert all(r.ok for r in results)
        assert server.connections <= 16
    finally:
        await server.stop()


# Found by an adversarial review: each case once broke the client.

async def test_an_answer_nobody_asked_for_drops_the_connection_and_is_never_the_next_answer(fetcher: UpstreamFetcher) -> None:
    evil = b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "evil"\r\nContent-Encoding: gzip\r\n\r\nSTALE'
    server, url = await serve(lambda n: ok(b"ANSWER%d" % n, 'ETag: "v1"') + evil)
    try:
        for n in range(3):
            result = await fetcher.fetch("b1", f"{url}/a.m3u8")
            assert result.ok and result.body == b"ANSWER%d" % n and result.validators.etag == '"v1"'
        assert server.connections == 3  # each connection dropped once out of step
    finally:
        await server.stop()


async def test_an_interim_answer_is_not_the_answer(fetcher: UpstreamFetcher) -> None:
    server, url = await serve(lambda n: b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(b"ANSWER%d" % n))
    try:
        assert [(await fetcher.fetch("b1", f"{url}/a.m3u8")).body for _ in range(2)] == [b"ANSWER0", b"ANSWER1"]
    finally:
        await server.stop()


async def test_a_304_may_state_the_full_length_and_trailers_change_nothing(fetcher: UpstreamFetcher) -> None:
    replies = [ok(PLAYLIST, 'ETag: "v1"'), b'HTTP/1.1 304 Not Modified\r\nContent-Length: 99999\r\nETag: "v1"\r\n\r\n',
               b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "real"\r\n\r\n3\r\nabc\r\n0\r\n'
               b'ETag: "trailer"\r\nContent-Encoding: gzip\r\n\r\n']
    server, url = await serve(lambda n: replies[n])
    try:
        first = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8", validators=first.validators)).outcome == "unchanged"
        chunked = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert chunked.ok and chunked.body == b"abc" and chunked.validators.etag == '"real"'
    finally:
        await server.stop()


@pytest.mark.parametrize("body", [gzip.compress(PLAYLIST)[:-20], gzip.compress(b"PART1-") + gzip.compress(b"PART2")],
                         ids=["cut short", "two members"])
async def test_a_gzip_body_cut_short_or_of_several_members_is_refused(fetcher: UpstreamFetcher, body: bytes) -> None:
    server, url = await serve(lambda n: ok(body, "Content-Encoding: gzip"))
    try:
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).outcome == "connect_error"
    finally:
        await server.stop()


async def test_a_head_without_end_is_capped_and_a_large_error_keeps_its_status(fetcher: UpstreamFetcher) -> None:
    replies = [b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 200_000 + b"\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 404 Not Found\r\nContent-Length: 9999999\r\n\r\n"]
    server, url = await serve(lambda n: replies[n] if n < 2 else ok(PLAYLIST))
    try:
        big = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert big.outcome == "too_large" and big.detail == "headers over 65536 bytes"
        missing = await fetcher.fetch("b1", f"{url}/a.m3u8")
        assert missing.outcome == "too_large" and missing.status == 404 and missing.answered
        assert (await fetcher.fetch("b1", f"{url}/a.m3u8")).ok
    finally:
        await server.stop()


async def test_closing_the_fetcher_closes_the_connections_in_use_too() -> None:
    f = await started(5.0)
    server, url = await serve(lambda n: b"")  # never answers
    try:
        pending = [asyncio.ensure_future(f.fetch("b1", f"{url}/s{i}.m3u8")) for i in range(4)]
        while server.connections < 4:
            await asyncio.sleep(0.01)
        await f.close()
        results = await asyncio.wait_for(asyncio.gather(*pending), 2)
        assert [r.outcome for r in results] == ["connect_error"] * 4
        assert server.connections == 4
    finally:
        await server.stop()
