"""Connection hygiene at the socket, below HTTP: a deadline for a request's headers and a cap on the
connections one client address may hold, so that a client trickling headers (slowloris) or opening
thousands of idle connections cannot exhaust the server. uvicorn has neither: it times out idle
keep-alive connections, not ones that started a request and never finished its headers.

Both are a subclass of the HTTP protocol uvicorn would use anyway, made by `guarded_protocol`;
`server_config` is the one place the service's uvicorn configuration is built. The same subclass
sends a response whose length is known in one system call rather than two (`OneWrite`): uvicorn
writes the head and the body separately, which costs a second send and, on the client, a second
wake-up for every player reload.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from edge.settings import Settings
from geo.proxies import TrustedProxies

log = logging.getLogger("edge.connections")


_HEAD = b"HTTP/1.1 "
_KNOWN_LENGTH = b"\r\ncontent-length: "  # uvicorn writes header names in lower case


class OneWrite:
    """A connection's transport as uvicorn's HTTP protocol sees it: the head of a response with a
    Content-Length is held until the next write (its body), the end of the response (`flush`) or a
    close, and goes out with it in one system call; anything else passes straight through. Order is
    kept: whatever is held goes out before any later write."""

    __slots__ = ("transport", "_held")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.writelines((held, data))
        elif data[:9] == _HEAD and data[9:10] != b"1" and _KNOWN_LENGTH in data:  # not an interim 1xx
            self._held = data
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface, as it is
        return getattr(self.transport, name)


class OneWriteProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol sending a response of known length in one write (`OneWrite`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control keeps the transport itself
        self.transport = OneWrite(transport)

    def on_response_complete(self) -> None:
        self.transport.flush()  # a head with nothing after it (HEAD, an empty body)
        super().on_response_complete()


def guarded_protocol(header_timeout: float, per_client: int, exempt: TrustedProxies) -> type[asyncio.Protocol]:
    """The edge's HTTP protocol (OneWriteProtocol), closing a connection that has waited
    `header_timeout` seconds for a request's headers, and any connection beyond `per_client` (0: no cap) from one address outside
    `exempt` (proxies and CDNs carry many clients' connections)."""
    open_by_client: dict[str, int] = {}
    refused_logged: set[str] = set()

    class GuardedProtocol(OneWriteProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _client_key: str | None = None
        _cycle_at_arming: Any = None

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
            self._deadline = self.loop.call_later(header_timeout, self._check)

        def _check(self) -> None:
            """Close if no request's headers completed since the deadline was armed and none is
            being answered: the connection waited for headers (or idled) the whole time."""
            self._deadline = None
            cycle = self.cycle
            waiting = cycle is self._cycle_at_arming and (cycle is None or cycle.response_complete)
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
        ),
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)
