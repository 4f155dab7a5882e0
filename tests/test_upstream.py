"""The one upstream fetcher refuses forbidden addresses at connection time: IP literals, and names
judged on what they resolve to now (a resolver the test controls stands in for DNS)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import CollectorRegistry

from broadcaster_registry.destinations import DEFAULT_DESTINATIONS, DestinationPolicy
from broadcaster_registry.liveness import DEFAULT_LIVENESS
from broadcaster_registry.model import Registration
from broadcaster_registry.storage import MemoryRegistryStore
from edge.broadcasters.prober import Prober
from edge.broadcasters.static import StaticEntry
from edge.upstream import AddressGuard, UpstreamFetcher, UpstreamMetrics
from tests.fakes import FakeBroadcaster

LOOPBACK = DestinationPolicy.build(["127.0.0.0/8", "::1/128"])


class PointingResolver(AbstractResolver):
    """Resolves every name to one address, as a DNS record an attacker controls would."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        return [{"hostname": host, "host": self.address, "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


@pytest.fixture
async def broadcaster() -> AsyncIterator[FakeBroadcaster]:
    fake = FakeBroadcaster("b1")
    await fake.start()
    fake.add("s1", "source", 1, 2)
    yield fake
    await fake.stop()


async def fetcher_for(policy: DestinationPolicy, resolver: AbstractResolver | None = None) -> UpstreamFetcher:
    fetcher = UpstreamFetcher(1.0, 65536, UpstreamMetrics(CollectorRegistry()), AddressGuard(policy, resolver))
    await fetcher.start()
    return fetcher


def fetches(fetcher: UpstreamFetcher, name: str, outcome: str) -> float:
    return fetcher.metrics.fetches.labels(name, outcome)._value.get()


async def test_the_default_refuses_a_real_server_on_loopback_and_an_allowance_opens_it(
    broadcaster: FakeBroadcaster,
) -> None:
    url = f"{broadcaster.url}/stream/s1/source.m3u8"
    refused = await fetcher_for(DEFAULT_DESTINATIONS)
    allowed = await fetcher_for(LOOPBACK)
    try:
        result = await refused.fetch("b1", url)
        assert result.outcome == "refused" and result.detail.startswith("127.0.0.1 is a loopback address")
        assert broadcaster.requests == {}  # not even a connection
        assert fetches(refused, "b1", "refused") == 1
        ok = await allowed.fetch("b1", url)
        assert ok.ok and b"1.ts" in ok.body
    finally:
        await refused.close()
        await allowed.close()


async def test_a_name_that_resolves_to_a_forbidden_address_is_refused_at_fetch_time(
    broadcaster: FakeBroadcaster, caplog: pytest.LogCaptureFixture,
) -> None:
    port = broadcaster.url.rsplit(":", 1)[1]
    url = f"http://b1.example.test:{port}/stream/s1/source.m3u8"  # registered while it looked public
    dns = PointingResolver("127.0.0.1")
    fetcher = await fetcher_for(DEFAULT_DESTINATIONS, dns)
    try:
        with caplog.at_level(logging.WARNING, logger="edge.upstream"):
            first = await fetcher.fetch("b1", url)
            second = await fetcher.fetch("b1", url)
        assert first.outcome == second.outcome == "refused"
        assert "b1.example.test resolves to 127.0.0.1 is a loopback address" in first.detail
        assert dns.asked and broadcaster.requests == {}
        assert fetches(fetcher, "b1", "refused") == 2
        assert len([r for r in caplog.records if "forbidden address" in r.getMessage()]) == 1  # logged once
        assert fetcher.guard.refused == {"b1": first.detail}  # hand-outs consult this
    finally:
        await fetcher.close()
    # The same name pointing at an allowed address is fetched.
    allowing = await fetcher_for(LOOPBACK, PointingResolver("127.0.0.1"))
    try:
        assert (await allowing.fetch("b1", url)).ok
    finally:
        await allowing.close()


async def test_the_last_check_refuses_whatever_path_led_to_the_address() -> None:
    guard = AddressGuard(DEFAULT_DESTINATIONS)
    for _ in range(2):  # judged once, remembered: the same answer
        with pytest.raises(OSError, match="169.254.169.254 is a link-local"):
            guard.check_ip("169.254.169.254")
        guard.check_ip("93.184.216.34")
    with pytest.raises(OSError, match="not an IP address"):
        guard.check_ip("metadata.internal")


async def test_the_prober_goes_through_the_guard(broadcaster: FakeBroadcaster) -> None:
    port = broadcaster.url.rsplit(":", 1)[1]
    entry = StaticEntry("b1", Registration(address=f"http://b1.example.test:{port}"))
    registry = MemoryRegistryStore()
    await registry.upsert(entry.name, entry.registration, 0.0, source="static")
    fetcher = await fetcher_for(DEFAULT_DESTINATIONS, PointingResolver("127.0.0.1"))
    prober = Prober(registry, [entry], fetcher, interval_s=60, timeout_s=1, path="/",
                    policy=DEFAULT_LIVENESS, clock=lambda: 1.0)
    try:
        for _ in range(DEFAULT_LIVENESS.probe_failures_to_down):
            await prober.probe_all()
    finally:
        await fetcher.close()
    b = await registry.get("b1")
    assert b is not None and b.probe.down and broadcaster.requests == {}
    assert fetches(fetcher, "b1", "refused") == DEFAULT_LIVENESS.probe_failures_to_down
