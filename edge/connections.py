"""Connection hygiene at the socket, below HTTP: a deadline for a request's headers and a cap on the
connections one client address may hold, so that a client trickling headers (slowloris) or opening
thousands of idle connections cannot exhaust the server. uvicorn has neither: it times out idle
keep-alive connections, not ones that started a request and never finished its headers.

Both are a subclass of the HTTP protocol uvicorn would use anyway, made by `guarded_protocol`;
`server_config` is the one place the service's uvicorn configuration is built. The same subclass
sends a response whose length is known in one system call rather than two (`OneWrite`): uvicorn
writes the head and the body separately, which costs a second send and, on the client, a second
wake-up for every player reload.

The same subclass answers at once, without an ASGI request cycle, the requests a `FrontDoor` has an
answer ready for (a plain player reload, a plain `GET /api/broadcaster`): uvicorn's cycle, its task
and its two send messages cost about as much again as the answer itself. Only a request with nothing
unusual about it is offered to the door (GET or HEAD, no body, no upgrade, no 100-continue, nothing
in flight before it on the connection, the client reading); the bytes are those uvicorn would write
for the same status, headers and body.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any, Protocol

import httptools
import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from edge.settings import Settings
from geo.proxies import TrustedProxies

log = logging.getLogger("edge.connections")


_HEAD = b"HTTP/1.1 "
_KNOWN_LENGTH = b"\r\ncontent-length: "  # uvicorn writes header names in lower case


class Batch:
    """Whole responses given during one pass of the event loop over the sockets it found ready,
    written together once that pass is over: a client waiting on several connections is woken once
    for all of them, not once for each (on loopback and in virtual machines a wake-up costs the
    sender's kernel more than the write). Each connection's order is kept by its `OneWrite`."""

    __slots__ = ("loop", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: list[OneWrite] = []

    def add(self, connection: OneWrite) -> None:
        if not self._waiting:
            self.loop.call_soon(self._write)
        self._waiting.append(connection)

    def _write(self) -> None:
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            connection.deliver()


class OneWrite:
    """A connection's transport as uvicorn's HTTP protocol sees it: the head of a response with a
    Content-Length is held until the next write (its body), the end of the response (`flush`) or a
    close, and goes out with it in one system call; whole responses (`write_whole`) wait for the
    loop's pass to end (`Batch`), or until they add up to `waiting_max` bytes (a long pipeline in one
    read is written as it is answered, so flow control sees it); anything else passes straight
    through. Order is kept: whatever waits or is held goes out before any later write."""

    __slots__ = ("transport", "batch", "waiting_max", "_held", "_waiting", "_waiting_bytes")

    def __init__(self, transport: asyncio.Transport, batch: Batch | None = None, waiting_max: int = 65536) -> None:
        self.transport = transport
        self.batch = batch
        self.waiting_max = waiting_max
        self._held: bytes | None = None  # a head waiting for its body
        self._waiting: list[bytes] = []  # whole responses waiting for the pass to end (before `_held`)
        self._waiting_bytes = 0

    def write(self, data: bytes) -> None:
        if self._waiting:
            self._send_waiting()
        held = self._held
        if held is not None:
            self._held = None
            self.transport.writelines((held, data))
        elif data[:9] == _HEAD and data[9:10] != b"1" and _KNOWN_LENGTH in data:  # not an interim 1xx
            self._held = data
        else:
            self.transport.write(data)

    def write_whole(self, data: bytes) -> None:
        """A whole response, head and body: out after anything waiting or held, at the end of the
        loop's pass (with a batch) or at once."""
        if self._held is not None or self.batch is None:
            self.flush()
            self.transport.write(data)
            return
        if not self._waiting:
            self.batch.add(self)
        self._waiting.append(data)
        self._waiting_bytes += len(data)
        if self._waiting_bytes >= self.waiting_max:
            self._send_waiting()

    def _send_waiting(self) -> None:
        waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        if len(waiting) == 1:
            self.transport.write(waiting[0])
        else:
            self.transport.writelines(waiting)

    def flush(self) -> None:
        if self._waiting:
            self._send_waiting()
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held)

    def deliver(self) -> None:
        """What waited for the end of the loop's pass, unless the connection went meanwhile."""
        if self.transport.is_closing():
            self._waiting, self._waiting_bytes, self._held = [], 0, None
        elif self._waiting:
            self._send_waiting()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface, as it is
        return getattr(self.transport, name)


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Batch] = weakref.WeakKeyDictionary()


def _batch(loop: asyncio.AbstractEventLoop) -> Batch:
    """The loop's one `Batch`."""
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = Batch(loop)
    return batch


class Ready(Protocol):
    """A response known in full: what a front door answers with."""

    status: int
    headers: list[tuple[bytes, bytes]]  # lower-case names; Content-Length where there is a body
    body: bytes  # empty for HEAD


class FrontDoor(Protocol):
    def ready(self, scope: dict[str, Any]) -> tuple[Ready, str] | None:
        """The answer to this request (an ASGI HTTP scope) ready now, and the route it counts under;
        None to leave it to the app."""
        ...

    def answered(self, scope: dict[str, Any], route: str, status: int, elapsed: float) -> None:
        """Count and log a request answered from `ready`."""
        ...


_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class OneWriteProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol sending a response of known length in one write (`OneWrite`), and
    answering what `door` has ready without an ASGI cycle."""

    door: FrontDoor | None = None
    answered_now = 0  # requests this connection answered from the door
    _ready: tuple[Ready, str, float, bool] | None = None  # (answer, route, started, keep-alive) until the message ends
    _behind_close = False  # the message being read came after the connection was closed

    def on_body(self, body: bytes) -> None:
        if not self._behind_close:
            super().on_body(body)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control keeps the transport itself
        self.transport = OneWrite(transport, _batch(self.loop))

    def on_response_complete(self) -> None:
        self.transport.flush()  # a head with nothing after it (HEAD, an empty body)
        super().on_response_complete()

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            # An answer earlier in this read closed the connection while the parser read on (a door
            # answer to HTTP/1.0 with `Connection: keep-alive`, which uvicorn closes as well): what
            # the client pipelined behind it is neither run nor counted, as behind an app's answer.
            self._behind_close = True
            return
        if self.door is not None and self._plain():
            started = time.perf_counter()
            scope = self.scope
            parser = self.parser
            url = httptools.parse_url(self.url)
            path = url.path.decode("ascii")
            if "%" not in path and not self.root_path:  # anything to decode goes the usual way
                scope["method"] = parser.get_method().decode("ascii")
                http_version = parser.get_http_version()
                if http_version != "1.1":
                    scope["http_version"] = http_version
                scope["path"] = path
                scope["raw_path"] = url.path
                scope["query_string"] = url.query or b""
                try:
                    found = self.door.ready(scope)
                except Exception:  # a bug answers 500 through the app, as any other
                    log.exception("front door failed; the app answers")
                    found = None
                if found is not None:
                    keep_alive = http_version != "1.0" and parser.should_keep_alive()
                    self._ready = (*found, started, keep_alive)
                    return
        # A request for the app: no keep-alive timer while it is answered (one a door answer armed
        # earlier in the same read would close the connection under it).
        self._unset_keepalive_if_required()
        super().on_headers_complete()

    def _plain(self) -> bool:
        """Whether this request may be answered at once: GET or HEAD without a body or an upgrade,
        nothing before it on this connection still being answered, and the client reading."""
        method = self.parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        cycle = self.cycle
        if not (cycle is None or cycle.response_complete) or self.pipeline or self.flow.write_paused:
            return False
        if self.expect_100_continue or self.parser.should_upgrade():
            return False
        for name, _ in self.headers:
            if name in _BODY_HEADERS:
                return False
        return True

    def on_message_complete(self) -> None:
        if self._behind_close:
            return
        ready = self._ready
        if ready is None:
            super().on_message_complete()
            return
        self._ready = None
        answer, route, started, keep_alive = ready
        sent = not self.transport.is_closing()  # else the client left: nothing to send (as uvicorn)
        if sent:
            content = [STATUS_LINE[answer.status]]
            for name, value in self.server_state.default_headers:
                content += (name, b": ", value, b"\r\n")
            for name, value in answer.headers:
                content += (name, b": ", value, b"\r\n")
            if not keep_alive:
                content.append(b"connection: close\r\n")
            content.append(b"\r\n")
            if self.scope["method"] != "HEAD":
                content.append(answer.body)
            self.transport.write_whole(b"".join(content))
        self.answered_now += 1
        if sent:  # uvicorn counts a response it completed
            self.server_state.total_requests += 1
        assert self.door is not None
        try:
            self.door.answered(self.scope, route, answer.status, time.perf_counter() - started)
        except Exception:  # counting must not fail the connection (the parser would answer 400)
            log.exception("front door could not record a request")
        if not keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():
            self._unset_keepalive_if_required()  # one timer: the one armed by an answer before it in the same read goes
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


def guarded_protocol(header_timeout: float, per_client: int, exempt: TrustedProxies,
                     door: FrontDoor | None = None) -> type[asyncio.Protocol]:
    """The edge's HTTP protocol (OneWriteProtocol, answering what `door` has ready), closing a
    connection that has waited `header_timeout` seconds for a request's headers, and any connection
    beyond `per_client` (0: no cap) from one address outside `exempt` (proxies and CDNs carry many
    clients' connections)."""
    open_by_client: dict[str, int] = {}
    refused_logged: set[str] = set()
    # The door reads httptools' parser: without httptools uvicorn speaks h11, and every request goes the usual way.
    answering = door if issubclass(OneWriteProtocol, HttpToolsProtocol) else None

    class GuardedProtocol(OneWriteProtocol):
        door = answering
        _deadline: asyncio.TimerHandle | None = None
        _client_key: str | None = None
        _cycle_at_arming: Any = None
        _answered_at_arming = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and per_client and not exempt.contains(host):
                count = open_by_client.get(host, 0)
                if count >= per_client:
                    if host not in refused_logged:  # once per address, not per connection
                        refused_logged.add(host)
                        log.warning("client over its connection cap; new connections closed",
                                    extra={"fields": {"client": host, "cap": per_client}})
                    transport.close()
                    return
                open_by_client[host] = count + 1
                self._client_key = host
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            host = self._client_key
            if host is not None:
                self._client_key = None
                left = open_by_client.get(host, 1) - 1
                if left > 0:
                    open_by_client[host] = left
                else:
                    open_by_client.pop(host, None)
                    refused_logged.discard(host)
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._cycle_at_arming = self.cycle
            self._answered_at_arming = self.answered_now
            self._deadline = self.loop.call_later(header_timeout, self._check)

        def _check(self) -> None:
            """Close if no request's headers completed since the deadline was armed and none is
            being answered: the connection waited for headers (or idled) the whole time."""
            self._deadline = None
            cycle = self.cycle
            waiting = (cycle is self._cycle_at_arming and self.answered_now == self._answered_at_arming
                       and (cycle is None or cycle.response_complete))
            if waiting and not self.transport.is_closing():
                self.transport.close()
                return
            self._arm()

    return GuardedProtocol


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The service's uvicorn configuration: forwarding headers are judged by geo's trusted-proxy
    rules, not by uvicorn, so they are off here; access logs are the edge's own."""
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        http=guarded_protocol(
            settings.header_timeout, settings.max_connections_per_client, TrustedProxies(settings.trusted_proxies),
            getattr(app, "door", None),
        ),
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)
