"""Active health probes of the static fleet: one background task, through the edge's one upstream
fetcher (edge/upstream.py), so a probe is refused where a playlist fetch would be.

Every `interval` seconds each static broadcaster gets GET <address><path>; any answer below 500 is
"up" (a 404 still proves the node is there), a 5xx, a timeout, a refused connection or an address
the edge may not reach is "down". What a result means (consecutive failures take a node out,
successes bring it back) is decided by broadcaster_registry.liveness.record_probe, applied inside
the store.

Nodes (and worker processes) sharing a store probe a static fleet once between them: a round is
run by the holder of a lease keyed by the probed addresses; another takes over within a lease's
time if it stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence

from broadcaster_registry.destinations import DestinationPolicy
from broadcaster_registry.liveness import LivenessPolicy
from broadcaster_registry.storage import RegistryStore
from edge.tasks import cancel
from edge.broadcasters.static import StaticEntry, StaticFleetError, apply_static_fleet, read_static_fleet
from edge.settings import Settings
from edge.store.leases import Leases
from edge.upstream import UpstreamFetcher

log = logging.getLogger("edge.broadcasters.prober")

OK = "ok"


class Prober:
    def __init__(
        self,
        registry: RegistryStore,
        entries: Sequence[StaticEntry],
        fetcher: UpstreamFetcher,
        *,
        interval_s: float,
        timeout_s: float,
        path: str,
        policy: LivenessPolicy,
        clock: Callable[[], float],
        leases: Leases | None = None,
        owner: str = "",
    ) -> None:
        self.registry = registry
        self.targets = [(entry.name, entry.registration.address + path) for entry in entries]
        self.leases = leases
        self.owner = owner
        listed = "\n".join(sorted(f"{name} {url}" for name, url in self.targets)).encode()
        self.lease_key = "static-prober:" + hashlib.blake2b(listed, digest_size=8).hexdigest()
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.policy = policy
        self.clock = clock
        self.fetcher = fetcher
        self._task: asyncio.Task[None] | None = None
        # Last outcome per broadcaster and the round errors already reported: a node that stays
        # down (or a store that stays broken) is logged once, not every interval.
        self._last_outcome: dict[str, str] = {}
        self._reported_errors: set[str] = set()

    async def start(self) -> None:
        if not self.targets:
            return
        self._task = asyncio.create_task(self._run(), name="static-fleet-prober")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self.leases is not None and self.targets:
            try:
                await self.leases.release(self.lease_key, self.owner)  # another takes over at once
            except Exception:  # it lapses by itself
                log.warning("could not release the probing lease")

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

    async def _my_turn(self) -> bool:
        """Whether this process probes this round (it holds, or just took, the probing lease)."""
        if self.leases is None:
            return True
        return await self.leases.acquire(self.lease_key, self.owner, 2 * self.interval_s + self.timeout_s)

    async def probe_all(self) -> None:
        """One round: every static broadcaster probed at once, each result recorded."""
        if not await self._my_turn():
            return
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
        outcome = await self._probe(name, url)
        before = await self.registry.get(name)
        after = await self.registry.record_probe(name, outcome == OK, self.clock(), self.policy)
        self._report(name, url, outcome, before is not None and before.probe.down,
                     after is not None and after.probe.down)

    async def _probe(self, name: str, url: str) -> str:
        """"ok", or what went wrong ("HTTP 503", "no answer within 2 s", "ClientConnectorError",
        "refused: 10.0.0.7 is a private address")."""
        # The fetcher follows no redirect: a node answering 3xx is up, and it cannot send the
        # prober anywhere else.
        result = await self.fetcher.fetch(name, url, self.timeout_s)
        if result.answered:
            return OK
        return f"refused: {result.detail}" if result.outcome == "refused" else result.detail or result.outcome

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
    settings: Settings,
    registry: RegistryStore,
    policy: LivenessPolicy,
    clock: Callable[[], float],
    fetcher: UpstreamFetcher,
    destinations: DestinationPolicy,
    leases: Leases | None = None,
    owner: str = "",
) -> Prober:
    """Load the broadcasters file (if one is configured) into the registry and start probing it.

    A bad file raises StaticFleetError naming the entry and field, which stops the start-up.
    Without a file the registry's static entries are left alone: with a shared store they belong to
    the nodes that have the file, and a node without it must not remove them for the whole fleet.
    """
    try:
        entries = read_static_fleet(settings.broadcasters_file, destinations) if settings.broadcasters_file else ()
    except StaticFleetError as exc:
        log.error("cannot start: %s", exc)
        raise
    if settings.broadcasters_file:
        await apply_static_fleet(registry, entries, clock())
    if entries:
        log.info("static broadcasters loaded", extra={"fields": {
            "file": settings.broadcasters_file, "broadcasters": [entry.name for entry in entries]}})
    prober = Prober(
        registry, entries, fetcher, interval_s=settings.probe_interval, timeout_s=settings.probe_timeout,
        path=settings.probe_path, policy=policy, clock=clock, leases=leases, owner=owner,
    )
    await prober.start()
    return prober
