"""Processes sharing a store (the workers of `edge serve --workers`, the nodes of a fleet) probe a
static fleet once between them: each round is run by the holder of the probing lease, and another
takes over at once when the holder stops."""

from __future__ import annotations

from pathlib import Path

from broadcaster_registry.storage import MemoryRegistryStore
from edge.app import build_services
from edge.broadcasters.prober import Prober
from edge.broadcasters.static import apply_static_fleet, read_static_fleet
from edge.store.leases import LocalLeases
from tests.conftest import make_settings
from tests.fakes import FakeBroadcaster

from .test_static_fleet import fleet_file, fra

T0 = 1_700_000_000.0


async def test_one_of_two_workers_probes_and_the_other_takes_over_when_it_stops(tmp_path: Path) -> None:
    fake = FakeBroadcaster("fra")
    await fake.start()
    svc = build_services(make_settings(tmp_path / "data"))
    fetcher = svc.playlists.ctx.fetcher
    await fetcher.start()
    try:
        entries = read_static_fleet(fleet_file(tmp_path / "fleet.toml", [fra(fake.url)]), svc.destinations)
        registry = MemoryRegistryStore(clock=lambda: T0)
        await apply_static_fleet(registry, entries, T0)
        leases = LocalLeases(clock=lambda: T0)  # the store both workers share, time standing still

        def worker(name: str) -> Prober:
            return Prober(registry, entries, fetcher, interval_s=1.0, timeout_s=1.0, path="/",
                          policy=svc.liveness, clock=lambda: T0, leases=leases, owner=name)

        first, second = worker("w1"), worker("w2")
        for rounds in (1, 2, 3):
            await first.probe_all()
            await second.probe_all()
            assert fake.requests["/"] == rounds  # one probe a round, not one per worker
        await first.stop()  # releases the lease
        await second.probe_all()
        assert fake.requests["/"] == 4
        await first.probe_all()  # started again: the lease is the other's now
        assert fake.requests["/"] == 4
    finally:
        await fetcher.close()
        await fake.stop()
