"""Fetching broadcasters' playlists: one shared aiohttp session, a timeout and a size cap on every fetch.

This module only moves bytes. Which URL may be fetched is decided before it is called (a registered
broadcaster's origin + a validated stream id and rendition, see `playlist_url`); redirects are never
followed, so no answer can send the edge anywhere else. Every result is counted per broadcaster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram

from edge.streams.model import is_rendition_name, is_stream_id

log = logging.getLogger("edge.upstream")

Outcome = Literal["ok", "http_error", "timeout", "connect_error", "too_large"]


@dataclass(frozen=True, slots=True)
class FetchResult:
    broadcaster: str
    url: str
    outcome: Outcome
    status: int | None = None
    body: bytes = b""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def playlist_url(origin: str, stream_id: str, rendition: str) -> str:
    """`<origin>/stream/<id>/<rendition>.m3u8`, refusing anything that is not a checked id and name."""
    if not is_stream_id(stream_id) or not is_rendition_name(rendition):
        raise ValueError(f"refusing to build an upstream URL for {stream_id!r}/{rendition!r}")
    return f"{origin}/stream/{stream_id}/{rendition}.m3u8"


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


class UpstreamFetcher:
    def __init__(self, timeout_s: float, max_bytes: int, metrics: UpstreamMetrics) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=16, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": "hls-edge", "Accept": "application/vnd.apple.mpegurl, */*"},
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, broadcaster: str, url: str) -> FetchResult:
        result = await self._fetch(broadcaster, url)
        self.metrics.fetches.labels(broadcaster, result.outcome).inc()
        if not result.ok:
            log.debug("upstream fetch failed", extra={"fields": {
                "broadcaster": broadcaster, "url": url, "outcome": result.outcome, "detail": result.detail}})
        return result

    async def _fetch(self, broadcaster: str, url: str) -> FetchResult:
        if self._session is None:
            raise RuntimeError("UpstreamFetcher.start() was not awaited")
        started = time.perf_counter()
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    return FetchResult(broadcaster, url, "http_error", response.status, detail=f"HTTP {response.status}")
                declared = response.content_length
                if declared is not None and declared > self.max_bytes:
                    return FetchResult(broadcaster, url, "too_large", 200, detail=f"{declared} bytes declared")
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > self.max_bytes:
                        return FetchResult(broadcaster, url, "too_large", 200, detail=f"over {self.max_bytes} bytes")
                return FetchResult(broadcaster, url, "ok", 200, bytes(body))
        except asyncio.TimeoutError:
            return FetchResult(broadcaster, url, "timeout", detail=f"no answer within {self.timeout_s} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return FetchResult(broadcaster, url, "connect_error", detail=type(exc).__name__)
        finally:
            self.metrics.latency.labels(broadcaster).observe(time.perf_counter() - started)
