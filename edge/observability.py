"""Request metrics (Prometheus) and one structured JSON access-log line per request.

A plain ASGI middleware sees every response the app gives, including errors and 404s, and costs one
dict lookup and two metric updates a request; the player path, which answers before the app,
reports to the same `Recorder`. It logs method, route, path, status and timing, never
headers or query strings (they can carry credentials).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import sys
import time
from bisect import bisect_left
from typing import Any, Iterator, TextIO

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # the *_created series only double the exposition size


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestMetrics:
    """`edge_http_requests_total{route,method,status}` and `edge_http_request_duration_seconds{route}`
    kept as plain numbers and turned into Prometheus families when scraped (a custom collector).

    Counted on every request, player reloads included: prometheus_client's own Counter and Histogram
    take a lock and several calls per update, a sixth of a bare ASGI request; one event loop
    updates these, so a dict increment and a bisect do."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, list[float]] = {}  # route -> per-bucket counts (+Inf last), then the sum
        registry.register(self)

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        cells = self._latency.get(route)
        if cells is None:
            cells = self._latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        cells[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # buckets are "less than or equal"
        cells[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("edge_http_requests", "HTTP requests by route, method and status.",
                                       labels=["route", "method", "status"])
        for labels, count in list(self._counts.items()):
            requests.add_metric(labels, count)
        yield requests
        latency = HistogramMetricFamily("edge_http_request_duration_seconds", "Time to answer, by route.",
                                        labels=["route"])
        for route, cells in list(self._latency.items()):
            cumulative = list(itertools.accumulate(cells[:-1]))
            bounds = [str(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]
            latency.add_metric([route], buckets=list(zip(bounds, cumulative)), sum_value=cells[-1])
        yield latency

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are built at collection; names cannot clash with the registry's others


class Metrics:
    """Every metric of one app, in its own registry (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestMetrics(self.registry)


@functools.lru_cache(maxsize=4096)  # methods, routes, paths and client addresses repeat request after request
def _quoted(value: str | None) -> str:
    return json.dumps(value)


_PIPE_BUF = 4096  # POSIX: a write of at most this many bytes to a pipe is not split


class AccessLog:
    """One JSON line per request on standard error, written in batches.

    The logging module costs ~70 us a record (record object, caller lookup, formatter, a write and
    flush each); on the path of every player reload that is a third of the request. Here a request
    leaves its fields (the quoted method, route and path as one piece, quoted once per distinct
    triple), and the lines are built together, one f-string each, and written every
    `flush_interval` seconds (and at shutdown): built in one loop, they cost less than one at a time
    between requests.
    """

    def __init__(self, stream: TextIO | None = None, flush_interval: float = 0.25) -> None:
        self.stream = stream
        self.flush_interval = flush_interval
        self._lines: list[str] = []
        self._entries: list[tuple[float, str, int, float, str | None]] = []  # formatted when written
        self._scheduled = False
        self._heads: dict[tuple[str, str, str], str] = {}  # (method, route, path) -> its fields, quoted

    def write(self, method: str, route: str, path: str, status: int, seconds: float, client: str | None) -> None:
        key = (method, route, path)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= _HEADS_KEPT:  # paths are the client's to choose: keep a bounded few
                self._heads.clear()
            head = self._heads[key] = (
                f'"logger": "edge.access", "msg": "request", "method": {_quoted(method)}, '
                f'"route": {_quoted(route)}, "path": {_quoted(path)}, "status": ')
        self._entries.append((time.time(), head, status, seconds, client))
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(self.flush_interval, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write at once
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        entries, self._entries = self._entries, []
        self._lines += [f'{{"ts": {at:.3f}, "level": "info", {head}{status}, '
                        f'"duration_ms": {seconds * 1000:.3f}, "client": {_quoted(client)}}}\n'
                        for at, head, status, seconds, client in entries]
        if not self._lines:
            return
        stream = self.stream or sys.stderr
        text = "".join(self._lines)
        self._lines.clear()
        # Whole lines, at most PIPE_BUF bytes a write: worker processes sharing one pipe
        # (`edge serve --workers`) never interleave inside a line. Lines are ASCII (JSON-quoted).
        start = 0
        while start < len(text):
            end = text.rfind("\n", start, start + _PIPE_BUF) + 1
            if end <= start:  # a single line longer than PIPE_BUF: on its own
                end = text.index("\n", start) + 1
            stream.write(text[start:end])
            start = end
        stream.flush()


_HEADS_KEPT = 4096


class Recorder:
    """Counts and logs one answered request: the one place both the middleware and the player path
    (edge.playlists.player_path, which answers before the middleware) report to."""

    def __init__(self, metrics: Metrics, access: AccessLog | None) -> None:
        self.http = metrics.http
        self.access = access

    def record(self, scope: Scope, route: str, status: int, elapsed: float) -> None:
        method = scope["method"]
        self.http.observe(route, method, _STATUS.get(status) or str(status), elapsed)
        if self.access is not None:
            client = scope.get("client")
            self.access.write(method, route, scope["path"], status, elapsed, client[0] if client else None)


_STATUS = {status: str(status) for status in range(100, 600)}


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The template without convertors ("/api/stream/{id}"), the label dashboards know.
            route = getattr(scope.get("route"), "path_format", None) or "unmatched"
            self.recorder.record(scope, route, status, time.perf_counter() - started)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
