"""`edge serve` with several worker processes: every core answers players. A small supervisor forks
the workers, restarts one that dies, and stops them all on SIGTERM or SIGINT.

Each worker is a whole edge node of its own (its app, event loop, node id and /metrics) listening
on its own socket bound with SO_REUSEPORT, so the kernel spreads new connections over the workers.
They share the store: on SQLite the file is opened `shared` (edge.store.sqlite), so leases give one
poller per stream among the workers and every worker serves the stored numbering, exactly as the
nodes of a fleet share Redis. The supervisor opens the store once before forking, so the schema is
migrated by one process, and the generated credentials were written before that (Settings.
with_credentials), so every worker reads the same ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace

from edge.settings import Settings

log = logging.getLogger("edge.workers")

STOP_GRACE_S = 15.0  # a worker's graceful shutdown (open requests, leases released), then SIGKILL
# A worker that dies this soon after its start counts as failing to start; after so many of those in
# a row the supervisor gives up (a port taken, a broken store) rather than fork forever.
EARLY_DEATH_S = 5.0
EARLY_DEATHS_TOLERATED = 5
RESTART_PAUSE_S = 0.5


@dataclass
class _Worker:
    index: int
    pid: int
    started: float


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket on (host, port) that other sockets of this user may share (SO_REUSEPORT): each
    worker has one, and the kernel hashes every new connection to one of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(False)
    return sock


def serve_one(settings: Settings, sock: socket.socket | None = None) -> int:
    """Run one edge node in this process until it is told to stop; uvicorn's exit status."""
    import uvicorn

    from edge import heap
    from edge.app import create_app
    from edge.connections import server_config
    from edge.observability import configure_logging

    configure_logging(settings.log_level)
    server = uvicorn.Server(server_config(create_app(settings), settings))
    heap.settle()  # after start-up's objects exist, before the first stream
    server.run(sockets=[sock] if sock is not None else None)
    return 0 if server.started else 3  # uvicorn's exit status for a failed start-up


def _prepare_store(settings: Settings) -> None:
    """Open and close the store once, before any worker: SQLite's schema is migrated by one process."""
    from broadcaster_registry.liveness import DEFAULT_LIVENESS
    from edge.store import open_store

    async def prepare() -> None:
        store = open_store(settings, DEFAULT_LIVENESS, time.time)
        await store.open()
        await store.close()

    asyncio.run(prepare())


def supervise(settings: Settings) -> int:
    """Run `settings.workers` (resolved, more than one) workers until SIGTERM/SIGINT; 0 when stopped
    so, 3 when the workers could not start."""
    from edge.observability import configure_logging

    configure_logging(settings.log_level)
    try:
        _prepare_store(settings)
        # Held (bound, never listening) for the supervisor's life: a port in use is found here, once.
        guard = listening_socket(settings.host, settings.port)
    except Exception as exc:
        log.error("edge could not start its workers: %s", exc)
        return 3
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers: dict[int, _Worker] = {}
    early_deaths = 0
    try:
        for index in range(settings.workers):
            workers[index] = _fork(settings, index)
        log.info("edge workers started", extra={"fields": {"workers": settings.workers, "port": settings.port}})
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == 0:
                time.sleep(0.2)
                continue
            dead = next((w for w in workers.values() if w.pid == pid), None)
            if dead is None or stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("edge worker died; starting another", extra={"fields": {
                "worker": dead.index, "pid": pid, "exit": code,
            }})
            early_deaths = early_deaths + 1 if time.monotonic() - dead.started < EARLY_DEATH_S else 0
            if early_deaths > EARLY_DEATHS_TOLERATED:
                log.error("edge workers keep dying at start-up; stopping")
                return 3
            time.sleep(RESTART_PAUSE_S)
            if not stopping:
                workers[dead.index] = _fork(settings, dead.index)
        return 0
    finally:
        _stop_all(list(workers.values()))
        guard.close()


def _fork(settings: Settings, index: int) -> _Worker:
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = serve_one(settings, listening_socket(settings.host, settings.port))
        except BaseException:
            logging.getLogger("edge.workers").exception("edge worker %d failed", index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return _Worker(index, pid, time.monotonic())


def _stop_all(workers: list[_Worker]) -> None:
    """SIGTERM every worker (uvicorn shuts down gracefully), SIGKILL those still there after the grace."""
    alive = {w.pid for w in workers}
    for pid in alive:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                alive.discard(pid)
        time.sleep(0.05)
    for pid in alive:
        _signal(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def resolved(settings: Settings) -> Settings:
    """The settings with `workers` a count (0 means one per core)."""
    return replace(settings, workers=settings.worker_count)
