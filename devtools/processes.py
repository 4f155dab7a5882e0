"""Processes that run beside the code in tests, benchmarks and the soak: free loopback ports,
stopping a child process politely then firmly, a real `edge serve`, and a Redis server of one's own.

Everything listens on 127.0.0.1, and every process is stopped by its own PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free right now and never handed out before by this process. The kernel may
    give a port back once its socket is closed: a soak that picked its nodes' ports first and then
    Redis's got the same port twice, and the node could not bind."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    """SIGTERM, wait `grace_s`, then SIGKILL; nothing if it already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class MissingBinary(RuntimeError):
    """A program the caller needs is not installed."""


class RedisServer:
    """A redis-server of the caller's own, on a free port, with its data in `workdir` (append-only
    file, fsynced on every write, so what was written survives a restart on the same port; with
    `persist=False`, in memory only)."""

    def __init__(self, workdir: Path, persist: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingBinary("no redis-server binary (Debian: apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.workdir),
             *(["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class EdgeProcess:
    """A real `edge serve` process, started the way the README starts it."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_edge(
    workdir: Path,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    port: int | None = None,
    ready_timeout_s: float = 20.0,
) -> EdgeProcess:
    """`python -m edge serve --port PORT` in `workdir` (a free port unless given), with the caller's
    environment minus every EDGE_ variable plus `env` (EDGE_WORKERS=1 unless `env` says otherwise);
    returns once /healthz answers 200."""
    port = port or free_port()
    log_path = workdir / f"edge-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    # One worker unless asked: what a test reads of one process (/metrics, logs) is then the edge's.
    full_env["EDGE_WORKERS"] = "1"
    full_env.update(env or {})
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--port", str(port), *(args or [])],
            cwd=workdir, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    edge = EdgeProcess(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edge exited with {proc.returncode}:\n{edge.log()}")
        try:
            with urllib.request.urlopen(f"{edge.url}/healthz", timeout=0.5) as response:
                if response.status == 200:
                    return edge
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    edge.stop()
    raise RuntimeError(f"edge did not answer within {ready_timeout_s:.0f} s:\n{edge.log()}")
