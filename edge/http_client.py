"""The edge's HTTP/1.1 client for its GETs to broadcasters: keep-alive connections per origin, the
response read by httptools (the parser uvicorn uses), and no more: no cookies, no redirects, no
proxies, no request bodies. It exists for cost: at a thousand streams the edge makes over a thousand
upstream requests a second, and a general-purpose client spent ~70 us of CPU on each where this
spends ~10 (bench: `python -m bench.bench_upstream`).

Where it may connect is not its decision: `connect` is given (edge.upstream.AddressGuard resolves
the name and judges every address). A response is read up to `max_bytes` and then dropped with its
connection, so a broadcaster cannot make the edge hold more.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# Headers kept from a response: what the edge reads of one (validators, size, encoding, framing).
_KEPT = frozenset({b"etag", b"last-modified", b"content-length", b"content-encoding", b"transfer-encoding"})
MAX_PER_ORIGIN = 16  # connections open at once to one broadcaster, and kept alive when idle
MAX_HEAD = 65_536  # bytes of a response's status line and headers
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class ResponseTooLarge(Exception):
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status  # of the answer, when its head was read


class ProtocolError(OSError):
    """The broadcaster's answer is not HTTP/1.1 this client can read."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names, the kept ones only
    body: bytes


Connect = Callable[[Callable[[], asyncio.Protocol], str, int, ssl.SSLContext | None], Awaitable[asyncio.Protocol]]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False  # it answered a request before: a failure may be a stale keep-alive
        self._waiter: asyncio.Future[Response] | None = None
        self._received = False  # any byte of the current response
        self._max_bytes = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._status = 0
        self._until_close = False
        self._keep_alive = False
        self._head_done = False  # the final answer's headers are read (what follows are trailers)
        self._head_bytes = 0  # bytes received before that
        self._final = False  # the final (not 1xx) answer to the current request came

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is no longer in step
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the broadcaster switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._fail(_reason(exc))
            return
        if not self._head_done and not self.closed:
            # httptools keeps a header whole however long it grows: a head that never ends must.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(ResponseTooLarge(f"headers over {MAX_HEAD} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._until_close and exc is None:  # delimited by the close (a reset cuts it short)
                waiter.set_result(Response(self._status, self._headers, bytes(self._body)))
            else:
                waiter.set_exception(ConnectionResetError("the broadcaster closed the connection"))

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        # A second answer in the same bytes (or after the final one) was not asked for: reading it
        # as the next request's would put every later answer one request off.
        if self._final or self._waiter is None or self._waiter.done():
            raise ProtocolError("an answer nobody asked for")
        self._head_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # a chunked body's trailers: they neither frame nor describe the answer
        name = name.lower()
        if name in _KEPT:
            self._headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._status = self.parser.get_status_code()
        declared = self._headers.get("content-length")
        bodiless = self._status < 200 or self._status in (204, 304)  # a 304 may state the full length
        # Neither a length nor chunks: the body ends when the server closes (RFC 9112 §6.3).
        self._until_close = (
            declared is None and "chunked" not in self._headers.get("transfer-encoding", "").lower() and not bodiless
        )
        if not bodiless and declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise ResponseTooLarge(f"{declared} bytes declared", self._status)

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self._max_bytes:
            raise ResponseTooLarge(f"over {self._max_bytes} bytes", self._status)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200 and self._status != 101:  # interim (100, 103): the final one follows
            self._headers, self._body, self._status, self._head_bytes = {}, bytearray(), 0, 0
            return
        self._final = True
        waiter = self._waiter
        self._until_close = False
        self._keep_alive = self.parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, bytes(self._body)))
        if not self._keep_alive:
            self.close()

    # --- the client's side ---

    def send(self, request: bytes, max_bytes: int) -> asyncio.Future[Response]:
        assert self.transport is not None
        if self.closed:
            raise ConnectionResetError("the connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._received = False
        self._max_bytes = max_bytes
        self._headers, self._body, self._status = {}, bytearray(), 0
        self._until_close = self._keep_alive = self._head_done = self._final = False
        self._head_bytes = 0
        self.transport.write(request)
        return self._waiter

    @property
    def stale(self) -> bool:
        """Closed before any byte of the answer came (a keep-alive the server had dropped)."""
        return self.used and not self._received

    def reusable(self) -> bool:
        return not self.closed and self._waiter is not None and self._waiter.done() and self._keep_alive

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """GETs over keep-alive connections, per origin (scheme, host, port)."""

    def __init__(self, connect: Connect, user_agent: str, accept: str) -> None:
        self._connect = connect
        self._head = f"User-Agent: {user_agent}\r\nAccept: {accept}\r\n"
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._open_ones: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        self._tls: ssl.SSLContext | None = None

    async def get(self, url: str, timeout_s: float, max_bytes: int, headers: dict[str, str] | None = None) -> Response:
        """GET `url`, the whole exchange within `timeout_s`. Raises asyncio.TimeoutError,
        ResponseTooLarge, OSError (connecting, a refused address, a broken answer) or ValueError
        (a URL it cannot ask)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = (parts.scheme, parts.hostname, port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        extra = "".join(f"{name}: {_header_value(value)}\r\n" for name, value in (headers or {}).items())
        host = parts.netloc.rpartition("@")[2]  # never credentials in a Host header
        request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{self._head}{extra}\r\n".encode("latin-1")
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(MAX_PER_ORIGIN)
        async with asyncio.timeout(timeout_s):  # waiting for a slot counts: the whole exchange
            async with slots:
                response = await self._exchange(origin, request, max_bytes)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if response.status == 200 and encoding not in ("", "identity"):  # only a 200's body is read
            response = Response(response.status, response.headers, _decoded(response.body, encoding, max_bytes))
        return response

    async def _exchange(self, origin: tuple[str, str, int], request: bytes, max_bytes: int) -> Response:
        # A kept connection the server closed meanwhile fails before any answer: try a new one once.
        for attempt in (0, 1):
            conn = self._take(origin) if attempt == 0 else None
            if conn is None:
                conn = await self._open(origin)
            try:
                response = await conn.send(request, max_bytes)
            except ConnectionResetError:
                if attempt == 0 and conn.stale:
                    continue
                raise
            except BaseException:
                conn.close()  # a timeout or a bad answer: the connection is out of step
                raise
            conn.used = True
            self._give_back(origin, conn)
            return response
        raise AssertionError("unreachable")

    def _take(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def _give_back(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        if self._closed or not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= MAX_PER_ORIGIN:
            conn.close()
        else:
            idle.append(conn)

    async def _open(self, origin: tuple[str, str, int]) -> _Connection:
        if self._closed:
            raise ConnectionAbortedError("the client is closed")
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        conn = await self._connect(_Connection, host, port, tls)
        assert isinstance(conn, _Connection)
        self._open_ones.add(conn)
        if self._closed:  # closed while this one was connecting
            conn.close()
            raise ConnectionAbortedError("the client is closed")
        return conn

    async def close(self) -> None:
        """Close every connection, idle or in use (a request under way fails), and open no more."""
        self._closed = True
        self._idle = {}
        for conn in list(self._open_ones):
            conn.close()


def _reason(exc: httptools.HttpParserError) -> Exception:
    """What a parser error means: a callback's own exception (httptools chains it), or an answer
    that is not HTTP."""
    cause = exc.__context__
    return cause if isinstance(cause, ResponseTooLarge) else ProtocolError(f"unreadable HTTP answer: {exc}")


def _header_value(value: str) -> str:
    """A request header value as sent: one line (validators come from a broadcaster's answer)."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a header value with a line break")
    return value


def _decoded(body: bytes, encoding: str, max_bytes: int) -> bytes:
    wbits = _DECODERS.get(encoding)
    if wbits is None:
        raise ProtocolError(f"content encoding {encoding!r} not supported")
    try:
        decoder = zlib.decompressobj(wbits)
        out = decoder.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ProtocolError(f"damaged {encoding} body: {exc}") from exc
    if len(out) > max_bytes or decoder.unconsumed_tail:
        raise ResponseTooLarge(f"over {max_bytes} bytes once decoded", 200)
    if not decoder.eof or decoder.unused_data:
        raise ProtocolError(f"{encoding} body cut short or followed by more data")
    return out
