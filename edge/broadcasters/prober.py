"""Active health probes of the static fleet: one background task, one aiohttp session.

Every `interval` seconds each static broadcaster gets GET <address><path>; any answer below 500 is
"up" (a 404 still proves the node is there), a 5xx, a timeout or a refused connection is "down".
What a result means (consecutive failures take a node out, successes bring it back) is decided by
broadcaster_registry.liveness.record_probe, applied inside the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import aiohttp

from broadcaster_registry.liveness import LivenessPolicy
from broadcaster_registry.storage import RegistryStore
from edge.tasks import cancel
from edge.broadcasters.static import StaticEntry, StaticFleetError, apply_static_fleet, read_static_fleet
from edge.settings import Settings

log = logging.getLogger("edge.broadcasters.prober")

OK = "ok"


class Prober:
    def __init__(
        self,
        registry: RegistryStore,
        entries: Sequence[StaticEntry],
        *,
        interval_s: float,
        timeout_s: float,
        path: str,
        policy: LivenessPolicy,
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.targets = [(entry.name, entry.registration.address + path) for entry in entries]
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.policy = policy
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        # Last outcome per broadcaster and the round errors already reported: a node that stays
        # down (or a store that stays broken) is logged once, not every interval.
        self._last_outcome: dict[str, str] = {}
        self._reported_errors: set[str] = set()

    async def start(self) -> None:
        if not self.targets:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": "hls-edge-probe"},
        )
        self._task = asyncio.create_task(self._run(), name="static-fleet-prober")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.probe_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the task must outlive any failure, including our bugs
                self._note_error(exc)
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    async def probe_all(self) -> None:
        """One round: every static broadcaster probed at once, each result recorded."""
        results = await asyncio.gather(
            *(self._probe_and_record(name, url) for name, url in self.targets), return_exceptions=True
        )
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                self._note_error(result)

    def _note_error(self, exc: BaseException) -> None:
        """Log a failure to probe or to record (a store error, a bug) once per kind of error."""
        kind = type(exc).__name__
        if kind not in self._reported_errors:
            self._reported_errors.add(kind)
            log.error("probing failed (logged once per kind of error): %s: %s", kind, exc,
                      exc_info=(type(exc), exc, exc.__traceback__))

    async def _probe_and_record(self, name: str, url: str) -> None:
        outcome = await self._probe(url)
        before = await self.registry.get(name)
        after = await self.registry.record_probe(name, outcome == OK, self.clock(), self.policy)
        self._report(name, url, outcome, before is not None and before.probe.down,
                     after is not None and after.probe.down)

    async def _probe(self, url: str) -> str:
        """"ok", or what went wrong ("HTTP 503", "timeout", "ClientConnectorError")."""
        assert self._session is not None
        started = time.perf_counter()
        try:
            # Redirects are not followed: a node answering 3xx is up, and it must not be able to
            # send our prober anywhere else.
            async with self._session.get(url, allow_redirects=False) as response:
                status = response.status
        except asyncio.TimeoutError:
            return f"timeout after {self.timeout_s:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return type(exc).__name__
        log.debug("probe answered", extra={"fields": {
            "url": url, "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}})
        return OK if status < 500 else f"HTTP {status}"

    def _report(self, name: str, url: str, outcome: str, was_down: bool, is_down: bool) -> None:
        fields = {"broadcaster": name, "url": url, "outcome": outcome}
        if is_down and not was_down:
            log.warning("static broadcaster taken out after failed probes", extra={"fields": fields})
        elif was_down and not is_down:
            log.info("static broadcaster back after successful probes", extra={"fields": fields})
        elif outcome != self._last_outcome.get(name, OK):
            if outcome == OK:
                log.info("probe answers again", extra={"fields": fields})
            else:
                log.warning("probe failed", extra={"fields": fields})
        self._last_outcome[name] = outcome


async def start_static_fleet(
    settings: Settings, registry: RegistryStore, policy: LivenessPolicy, clock: Callable[[], float]
) -> Prober:
    """Load the broadcasters file (if one is configured) into the registry and start probing it.

    A bad file raises StaticFleetError naming the entry and field, which stops the start-up.
    Without a file the registry's static entries are left alone: with a shared store they belong to
    the nodes that have the file, and a node without it must not remove them for the whole fleet.
    """
    try:
        entries = read_static_fleet(settings.broadcasters_file) if settings.broadcasters_file else ()
    except StaticFleetError as exc:
        log.error("cannot start: %s", exc)
        raise
    if settings.broadcasters_file:
        await apply_static_fleet(registry, entries, clock())
    if entries:
        log.info("static broadcasters loaded", extra={"fields": {
            "file": settings.broadcasters_file, "broadcasters": [entry.name for entry in entries]}})
    prober = Prober(
        registry, entries, interval_s=settings.probe_interval, timeout_s=settings.probe_timeout,
        path=settings.probe_path, policy=policy, clock=clock,
    )
    await prober.start()
    return prober
