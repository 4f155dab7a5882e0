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
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# Headers kept from a response: what the edge reads of one (validators, size, encoding, framing).
_KEPT = frozenset({b"etag", b"last-modified", b"content-length", b"content-encoding", b"transfer-encoding"})
MAX_PER_ORIGIN = 16  # connections open at once to one broadcaster, and kept alive when idle
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class ResponseTooLarge(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
        except httptools.HttpParserError as exc:
            self._fail(_reason(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._until_close:  # an answer delimited by the close is complete now
                waiter.set_result(Response(self._status, self._headers, bytes(self._body)))
            else:
                waiter.set_exception(ConnectionResetError("the broadcaster closed the connection"))

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT:
            self._headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        declared = self._headers.get("content-length")
        # Neither a length nor chunks: the body ends when the server closes (RFC 9112 §6.3).
        self._until_close = (
            declared is None and "chunked" not in self._headers.get("transfer-encoding", "").lower()
            and self._status not in (204, 304) and self._status >= 200
        )
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise ResponseTooLarge(f"{declared} bytes declared")

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self._max_bytes:
            raise ResponseTooLarge(f"over {self._max_bytes} bytes")

    def on_message_complete(self) -> None:
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
        self._waiter = asyncio.get_running_loop().create_future()
        self._received = False
        self._max_bytes = max_bytes
        self._headers, self._body, self._status = {}, bytearray(), 0
        self._until_close = self._keep_alive = False
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
        if encoding not in ("", "identity"):
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
        if not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= MAX_PER_ORIGIN:
            conn.close()
        else:
            idle.append(conn)

    async def _open(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        conn = await self._connect(_Connection, host, port, tls)
        assert isinstance(conn, _Connection)
        return conn

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
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
        raise ResponseTooLarge(f"over {max_bytes} bytes once decoded")
    return out
