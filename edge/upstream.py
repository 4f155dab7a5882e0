"""Every request the edge makes to a broadcaster (playlist fetches, discovery, probes of the
static fleet, segment copies): one client with keep-alive connections (edge.http_client), a timeout
and a size cap on every fetch, and the address check right before each connection.

This module only moves bytes. Which URL may be fetched is decided before it is called (a registered
broadcaster's origin + a validated stream id and rendition, see `edge.playlists.layout`); redirects are never
followed, so no answer can send the edge anywhere else. Where the edge may connect is
broadcaster_registry.destinations' decision, applied here to the addresses a name resolves to now
(`AddressGuard`): a name registered while it pointed to a public address may point to 127.0.0.1 or a
metadata service later. Every result is counted per broadcaster.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from prometheus_client import CollectorRegistry, Counter, Histogram

from cachetools import LRUCache

from broadcaster_registry.destinations import DestinationPolicy
from broadcaster_registry.liveness import answered
from broadcaster_registry.model import Broadcaster
from edge.fetch_history import FetchHistory
from edge.http_client import HttpClient, ResponseTooLarge

log = logging.getLogger("edge.upstream")

DNS_TTL_S = 60.0  # how long a name's allowed addresses are used before it is resolved again

# "unchanged": a 304 to a conditional request, the playlist is the one the validators came with.
Outcome = Literal["ok", "unchanged", "http_error", "timeout", "connect_error", "too_large", "refused"]


@dataclass(frozen=True, slots=True)
class FetchResult:
    broadcaster: str
    url: str
    outcome: Outcome
    status: int | None = None
    body: bytes = b""
    detail: str = ""
    validators: Validators | None = None  # to ask for this URL again conditionally

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def answered(self) -> bool:
        """The broadcaster is up, even if it has nothing for this URL (liveness.answered)."""
        return answered(self.status)


@dataclass(frozen=True, slots=True)
class Validators:
    """What a broadcaster said identifies its answer (ETag, Last-Modified): asked again with them,
    it may answer 304 instead of the same playlist."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validators | None:
        """From a response's headers, by lower-case name."""
        etag, modified = headers.get("etag"), headers.get("last-modified")
        return cls(etag, modified) if etag or modified else None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


class AddressRefused(OSError):
    """The edge may not connect to this address (broadcaster_registry.destinations said why)."""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])  # an IPv6 zone says where, not what
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """A resolver that drops the addresses the policy refuses, and fails when none is left."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self.inner is None:  # created lazily: aiohttp's resolvers want a running loop
            self.inner = DefaultResolver()
        results = await self.inner.resolve(host, port, family)
        allowed, reasons = [], []
        for result in results:
            ip = _ip(result["host"])
            reason = self.policy.refuse_ip(ip) if ip is not None else f"{result['host']} is not an address"
            if reason is None:
                allowed.append(result)
            else:
                reasons.append(reason)
        if not allowed:
            raise AddressRefused(f"{host} resolves to {'; '.join(reasons) or 'nothing'}")
        return allowed

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


class AddressGuard:
    """The destination policy at connection time, and what this node learnt from applying it.

    Three layers, so that no path reaches a refused address: IP literals are judged before any
    request; names are judged on what they resolve to (GuardedResolver); and `check_ip` judges the
    exact address every connection is made to, whatever path led there.
    """

    def __init__(self, policy: DestinationPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.resolver = GuardedResolver(policy, resolver)
        self._verdicts: dict[str, bool] = {}  # registered address -> allowed (pure, so cached)
        self._ip_verdicts: LRUCache[str, str] = LRUCache(maxsize=4096)  # IP -> why refused ("" allowed)
        self._url_verdicts: LRUCache[str, str | None] = LRUCache(maxsize=4096)  # host -> why refused
        self._refused: dict[str, str] = {}
        # Broadcaster -> why its last fetch was refused: read-only, changed by refuse() and allow().
        self.refused: Mapping[str, str] = MappingProxyType(self._refused)
        # Moves whenever a name is newly refused: the only way admits() turns False for someone it
        # admitted (address verdicts are pure), so callers can skip asking again while it stays.
        self.refusals = 0

    def refuse_url(self, url: str) -> str | None:
        """Why `url` may not be fetched, judged on its literal host (names: see GuardedResolver)."""
        host = urlsplit(url).hostname or ""
        try:
            return self._url_verdicts[host]
        except KeyError:
            reason = self._url_verdicts[host] = self.policy.refuse_host(f"[{host}]" if ":" in host else host)
            return reason

    def check_ip(self, address: str) -> None:
        """Raise AddressRefused unless the edge may connect to `address` (an IP literal): the last
        check before every connection, whatever path led to the address."""
        verdict = self._ip_verdicts.get(address)
        if verdict is None:
            ip = _ip(address)
            verdict = self.policy.refuse_ip(ip) if ip is not None else f"{address} is not an IP address"
            self._ip_verdicts[address] = verdict or ""
        if verdict:
            raise AddressRefused(verdict)

    def admits(self, b: Broadcaster) -> bool:
        """Whether `b` may be handed out or fetched from: its registered address passes the policy
        (the settings may have changed since it registered) and its name did not resolve to a
        refused address at this node's last fetch."""
        allowed = self._verdicts.get(b.address)
        if allowed is None:
            allowed = self._verdicts[b.address] = self.policy.refuse_address(b.address) is None
        return allowed and b.name not in self.refused

    def refuse(self, broadcaster: str, reason: str) -> None:
        """Note that `broadcaster`'s last fetch was refused (its name resolved to a refused address)."""
        if broadcaster not in self._refused:
            self.refusals += 1
        self._refused[broadcaster] = reason

    def allow(self, broadcaster: str) -> None:
        """Note that `broadcaster`'s last fetch was not refused."""
        self._refused.pop(broadcaster, None)


class UpstreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fetches = Counter(
            "edge_upstream_fetches", "Playlist fetches from broadcasters, by result.",
            ["broadcaster", "outcome"], registry=registry,
        )
        self.latency = Histogram(
            "edge_upstream_fetch_duration_seconds", "Time of playlist fetches, by broadcaster.",
            ["broadcaster"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=registry,
        )
        # The labelled series, found once each: a label lookup costs more than the count itself.
        self._counted: dict[tuple[str, str], Any] = {}
        self._timed: dict[str, Any] = {}

    def counted(self, broadcaster: str, outcome: str) -> Any:
        child = self._counted.get((broadcaster, outcome))
        if child is None:
            child = self._counted[(broadcaster, outcome)] = self.fetches.labels(broadcaster, outcome)
        return child

    def timed(self, broadcaster: str) -> Any:
        child = self._timed.get(broadcaster)
        if child is None:
            child = self._timed[broadcaster] = self.latency.labels(broadcaster)
        return child


class UpstreamFetcher:
    def __init__(
        self, timeout_s: float, max_bytes: int, metrics: UpstreamMetrics, guard: AddressGuard,
        history: FetchHistory | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.history = history  # recent results per broadcaster, for operators
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.guard = guard
        self._client: HttpClient | None = None
        self._dns: LRUCache[tuple[str, int], tuple[float, list[str]]] = LRUCache(maxsize=4096)  # (name, port) -> (until, addresses)
        self._reported: set[tuple[str, str]] = set()  # (broadcaster, reason) refusals already logged

    async def start(self) -> None:
        self._client = HttpClient(self._connect, "hls-edge", "application/vnd.apple.mpegurl, */*")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _connect(self, factory: Callable[[], asyncio.Protocol], host: str, port: int,
                       tls: ssl.SSLContext | None) -> asyncio.Protocol:
        """A connection to `host`: an address literal as it is, a name by what it resolves to
        (GuardedResolver: refused addresses dropped, the answer kept DNS_TTL_S), each address
        judged again right before connecting to it (the socket layer of AddressGuard)."""
        loop = asyncio.get_running_loop()
        if _ip(host) is not None:
            addresses = [host]
        else:
            cached = self._dns.get((host, port))
            if cached is not None and cached[0] > loop.time():
                addresses = cached[1]
            else:
                results = await self.guard.resolver.resolve(host, port, socket.AF_UNSPEC)
                addresses = list(dict.fromkeys(str(r["host"]) for r in results))
                self._dns[(host, port)] = (loop.time() + DNS_TTL_S, addresses)
        error: OSError | None = None
        for address in addresses:
            self.guard.check_ip(address)
            try:
                _, protocol = await loop.create_connection(
                    factory, address, port, ssl=tls, server_hostname=host if tls is not None else None,
                )
                return protocol
            except OSError as exc:
                error = exc
        raise error or OSError(f"{host} resolves to nothing")

    async def fetch(
        self, broadcaster: str, url: str, timeout_s: float | None = None, max_bytes: int | None = None,
        validators: Validators | None = None,
    ) -> FetchResult:
        """GET `url` from `broadcaster` within `timeout_s` (default: the upstream timeout), reading at
        most `max_bytes` (default: the playlist cap; segments are larger); with `validators` (from an
        earlier result for this URL), conditionally: "unchanged" when the broadcaster answers 304."""
        refused = self.guard.refuse_url(url)
        started = time.perf_counter()
        if refused is not None:
            result = FetchResult(broadcaster, url, "refused", detail=refused)
        else:
            result = await self._fetch(
                broadcaster, url, timeout_s or self.timeout_s, max_bytes or self.max_bytes, validators,
            )
        self.metrics.counted(broadcaster, result.outcome).inc()
        if self.history is not None:
            self.history.record(broadcaster, result.outcome, result.status, time.perf_counter() - started)
        if result.outcome == "refused":
            self.guard.refuse(broadcaster, result.detail)
            if (broadcaster, result.detail) not in self._reported:  # once, not every poll
                self._reported.add((broadcaster, result.detail))
                log.warning("refused to fetch from a broadcaster at a forbidden address", extra={"fields": {
                    "broadcaster": broadcaster, "url": url, "reason": result.detail}})
            return result
        self.guard.allow(broadcaster)
        if not result.ok:
            log.debug("upstream fetch failed", extra={"fields": {
                "broadcaster": broadcaster, "url": url, "outcome": result.outcome, "detail": result.detail}})
        return result

    async def _fetch(
        self, broadcaster: str, url: str, timeout_s: float, max_bytes: int, validators: Validators | None,
    ) -> FetchResult:
        if self._client is None:
            raise RuntimeError("UpstreamFetcher.start() was not awaited")
        started = time.perf_counter()
        try:
            response = await self._client.get(
                url, timeout_s, max_bytes, validators.headers() if validators is not None else None,
            )
            if response.status == 304 and validators is not None:
                return FetchResult(broadcaster, url, "unchanged", 304, validators=validators)
            if response.status != 200:
                return FetchResult(broadcaster, url, "http_error", response.status, detail=f"HTTP {response.status}")
            return FetchResult(broadcaster, url, "ok", 200, response.body, validators=Validators.of(response.headers))
        except asyncio.TimeoutError:
            return FetchResult(broadcaster, url, "timeout", detail=f"no answer within {timeout_s:g} s")
        except ResponseTooLarge as exc:
            return FetchResult(broadcaster, url, "too_large", exc.status, detail=exc.detail)
        except AddressRefused as exc:
            return FetchResult(broadcaster, url, "refused", detail=str(exc))
        except (OSError, ValueError) as exc:
            return FetchResult(broadcaster, url, "connect_error", detail=type(exc).__name__)
        finally:
            self.metrics.timed(broadcaster).observe(time.perf_counter() - started)
