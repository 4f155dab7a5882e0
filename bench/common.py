"""Helpers shared by the benchmarks: server subprocesses on loopback, a bounded keep-alive load
generator (a lean HTTP/1.1 client) with latency percentiles, a constant-body ASGI app as the floor,
and Markdown tables.

Nothing here asserts anything: benchmarks report figures, tests check behaviour.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Coroutine, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit

from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 300.0
T = TypeVar("T")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any EDGE_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """A server started as a subprocess, its output in `log_path`."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, cmd: Sequence[str], env: Mapping[str, str], log_path: Path, port: int,
              ready_path: str = "/", cwd: Path = ROOT) -> ServerProcess:
        """Start `cmd` (in `cwd`) and wait until `ready_path` answers (any status below 500)."""
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=log_path.open("wb"),
                                stderr=subprocess.STDOUT)
        server = cls(f"http://127.0.0.1:{port}", proc, log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}:\n{server.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(f"GET {ready_path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
                    status = sock.recv(64).split(b" ", 2)[1]
                    if int(status) < 500:
                        return server
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"{cmd} did not answer within {START_TIMEOUT_S} s:\n{server.log()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process and its live children (a supervisor's workers) have
        used (Linux /proc), or None elsewhere."""
        return _tree_cpu_seconds(self.proc.pid)


def _tree_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return own + sum(_tree_cpu_seconds(int(child)) or 0.0 for child in children)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    bytes_per_response: int
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    head_bytes_per_response: int = 0  # status line and headers, up to the blank line

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def p(self, value: float) -> float:
        return percentile(self.latencies_ms, value)

    @property
    def server_cpu_us_per_request(self) -> float | None:
        return None if self.server_cpu_s is None else self.server_cpu_s / self.requests * 1e6

    @property
    def server_busy(self) -> float | None:
        """Share of one core the server used during the run."""
        return None if self.server_cpu_s is None else self.server_cpu_s / self.seconds


def pooled(results: Sequence[LoadResult]) -> LoadResult:
    """Rounds of one server as one run: their requests, time, latencies and CPU added up."""
    cpu = [r.server_cpu_s for r in results]
    return replace(
        results[0], requests=sum(r.requests for r in results), seconds=sum(r.seconds for r in results),
        latencies_ms=[x for r in results for x in r.latencies_ms], errors=sum(r.errors for r in results),
        server_cpu_s=None if None in cpu else sum(cpu),  # type: ignore[arg-type]
        client_cpu_s=sum(r.client_cpu_s for r in results))


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending the same GET again and again.

    A lean client rather than aiohttp's: on a 2-CPU machine aiohttp's client tops out near
    3,000 requests/s, below what one uvicorn worker serves, so it would measure itself. Responses
    must carry Content-Length (uvicorn's and Starlette's do)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, int]] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.head_bytes = 0  # of the last response: status line and headers with the blank line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed mid-response"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():  # done: its caller was cancelled
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter.set_exception(ValueError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        self.head_bytes = end + 4
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((status, length))

    async def get(self, request: bytes) -> tuple[int, int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def drive(
    name: str,
    url: str,
    requests: int,
    concurrency: int,
    warmup: int,
    headers: Mapping[str, str] | None = None,
    server: ServerProcess | None = None,
    expect_status: int = 200,
) -> LoadResult:
    """`requests` GETs of `url` from `concurrency` keep-alive connections, after `warmup`
    unmeasured ones. Bodies are read, never decompressed (the client measures the server, not its
    own gunzip). With `server`, its CPU time during the run is recorded too."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(Connection, host, port))[1] for _ in range(concurrency)]
    sizes: list[int] = []
    heads: list[int] = []
    statuses: dict[int, int] = {}

    async def run(count: int, latencies: list[float]) -> None:
        counter = iter(range(count))

        async def worker(connection: Connection) -> None:
            for _ in counter:
                started = time.perf_counter()
                status, size = await connection.get(request)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if not sizes:
                    sizes.append(size)
                    heads.append(connection.head_bytes)

        await asyncio.gather(*(worker(c) for c in connections))

    try:
        await run(warmup, [])
        statuses.clear()
        latencies: list[float] = []
        cpu_before = server.cpu_seconds() if server else None
        client_before = time.process_time()
        started = time.perf_counter()
        await asyncio.wait_for(run(requests, latencies), RUN_TIMEOUT_S)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        cpu_after = server.cpu_seconds() if server else None
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    errors = sum(n for status, n in statuses.items() if status != expect_status)
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return LoadResult(name, requests, seconds, latencies, errors, sizes[0] if sizes else 0,
                      server_cpu, client_cpu, statuses, heads[0] if heads else 0)


# --- the floor: a bare ASGI app answering every request with the same bytes ------------------
# Run as `uvicorn bench.common:constant_app` with BENCH_BODY_FILE (and optionally
# BENCH_GZIP_FILE, served when the request accepts gzip) and BENCH_CONTENT_TYPE; or, to send exactly
# the headers a measured server sends, BENCH_HEADERS_FILE (and BENCH_GZIP_HEADERS_FILE): a JSON list
# of [name, value] pairs, Content-Length included (see `response_headers`).


def _read_optional(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    return Path(path).read_bytes() if path else None


def _read_headers(variable: str) -> list[tuple[bytes, bytes]] | None:
    raw = _read_optional(variable)
    return None if raw is None else [(k.encode("latin-1"), v.encode("latin-1")) for k, v in json.loads(raw)]


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[list[str]]:
    """A response's headers as BENCH_HEADERS_FILE holds them: all but those uvicorn adds itself."""
    return [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in raw
            if k.lower() not in (b"date", b"server")]


_BODY = _read_optional("BENCH_BODY_FILE") or b"ok\n"
_GZIP = _read_optional("BENCH_GZIP_FILE")
_CONTENT_TYPE = os.environ.get("BENCH_CONTENT_TYPE", "text/plain").encode()
_HEADERS = _read_headers("BENCH_HEADERS_FILE")
_GZIP_HEADERS = _read_headers("BENCH_GZIP_HEADERS_FILE")


async def constant_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    gzipped = False
    if _GZIP is not None:
        for key, value in scope["headers"]:
            if key == b"accept-encoding" and b"gzip" in value:
                gzipped = True
                break
    body = _GZIP if gzipped else _BODY
    headers = _GZIP_HEADERS if gzipped else _HEADERS
    if headers is None:
        headers = [(b"content-type", _CONTENT_TYPE), *([(b"content-encoding", b"gzip")] if gzipped else []),
                   (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def uvicorn_command(app: str, port: int, workers: int = 1, http: str = "auto") -> list[str]:
    """uvicorn as `edge serve` runs it: `workers` processes, auto loop and HTTP parser (uvloop and
    httptools when installed; `http` may name another protocol class), no access log, no Server
    header, no proxy headers."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--no-server-header", "--no-proxy-headers",
            "--lifespan", "on", "--workers", str(workers), "--http", http]


# --- reporting -------------------------------------------------------------------------------


def machine() -> str:
    load = f", load average {os.getloadavg()[0]:.2f} at start" if hasattr(os, "getloadavg") else ""
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs "
            f"({platform.machine()}){load}; client and servers on the same machine over loopback")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], right_from: int = 1) -> str:
    """A Markdown table; columns from `right_from` on are right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < right_from else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Ratio:
    """One figure of a benchmark against its baseline measured in the same run."""

    figure: str  # what is compared, e.g. "`GET /api/broadcaster` requests/s, edge / bare app"
    measured: float
    baseline: float
    unit: str = ""

    @property
    def value(self) -> float:
        return self.measured / self.baseline if self.baseline else float("inf")


def summary(ratios: Sequence[Ratio]) -> str:
    """The section every benchmark ends with: each figure as a ratio against its baseline from the
    same run (the figures to compare between machines and runs)."""
    def number(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"

    rows = [(r.figure, f"**{r.value:.2f}x**" if r.value < 100 else f"**{r.value:,.0f}x**",
             f"{number(r.measured)} {r.unit}".strip(), f"{number(r.baseline)} {r.unit}".strip()) for r in ratios]
    return "### Summary: ratios against baselines measured in this run\n\n" + table(
        ["figure", "ratio", "measured", "baseline"], rows)


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed (as uvicorn uses it), so the client is cheap."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
