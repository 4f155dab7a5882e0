"""The rules and the dashboard name only metrics a real edge exports, and the metrics an operator
alerts on move when their event happens: a real `edge serve` on a Redis server of the test's own,
fake broadcasters on loopback (one failing until ejected), a stream a player watches, an ingest that
stops (a stall), then Redis stopped (a node without its store)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx

from tests.conftest import API_KEY, start_edge
from tests.deploy.tools import (
    PROMETHEUS_MADE, dashboard_exprs, exported_names, metric_names, recorded_names, rule_exprs, tool, value,
)
from tests.fakes import FakeBroadcaster
from tests.multinode.test_multinode import create_stream, node_env, register
from tests.processes import OwnRedis


async def until(http: httpx.AsyncClient, url: str, check, timeout: float = 20.0) -> str:  # type: ignore[no-untyped-def]
    """The first scrape of `url`/metrics for which `check(scrape)` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        scrape = (await http.get(f"{url}/metrics")).text
        if check(scrape):
            return scrape
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not seen within {timeout} s:\n{scrape}")
        await asyncio.sleep(0.2)


async def test_the_rules_and_the_dashboard_use_metrics_a_real_edge_exports(tmp_path: Path, own_redis: OwnRedis) -> None:
    env = {**node_env("edge:"), "EDGE_STORE": own_redis.url, "EDGE_EJECTION_FAILURES": "2"}
    (tmp_path / "node").mkdir()
    edge = await asyncio.to_thread(start_edge, tmp_path / "node", env)
    good, failing = FakeBroadcaster("fra-1", segment_duration=1.0), FakeBroadcaster("fra-2", status=500)
    for fake in (good, failing):
        await fake.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            sid = await create_stream(http, edge)
            for fake in (good, failing):
                await register(http, edge, fake, [sid])
            good.add(sid, "source", 0, 1, 2)
            assert (await http.get(f"{edge.url}/stream/{sid}/source.m3u8")).status_code == 200
            live = await until(http, edge.url, lambda s: (
                value(s, "edge_broadcaster_ejections_total", broadcaster="fra-2") == 1
                and value(s, "edge_broadcasters", state="ejected") == 1
                and value(s, "edge_broadcasters", state="healthy") == 1
            ))
            assert value(live, "edge_stream_lease_changes_total", change="acquired") == 1
            assert value(live, "edge_store_up") == 1 and value(live, "edge_streams_watched") == 1
            assert value(live, "edge_upstream_fetches_total", broadcaster="fra-2", outcome="http_error") >= 2

            # No new segment for three target durations (1 s each) while the player is there: stalled.
            stalled = await until(http, edge.url, lambda s: value(s, "edge_streams_stalled") == 1)
            good.add(sid, "source", 3)
            await until(http, edge.url, lambda s: value(s, "edge_streams_stalled") == 0)

            own_redis.stop()
            without_store = await until(http, edge.url, lambda s: (
                value(s, "edge_store_up") == 0
                and value(s, "edge_feed_round_errors_total", error="StoreUnavailable") >= 1
            ))
            refused = await http.post(f"{edge.url}/api/stream", json={"name": "x"},
                                      headers={"Authorization": f"Bearer {API_KEY}"})
            assert refused.status_code == 503
            after = (await http.get(f"{edge.url}/metrics")).text
            assert value(after, "edge_http_requests_total", route="/api/stream", method="POST", status="503") == 1
    finally:
        for fake in (good, failing):
            await fake.stop()
        edge.stop()

    for scrape in (live, without_store):  # Prometheus's own lint: names, units, help texts
        linted = subprocess.run([tool("promtool"), "check", "metrics"], input=scrape, capture_output=True, text=True)
        assert linted.returncode == 0 and not linted.stdout + linted.stderr, linted.stdout + linted.stderr
    exported = set().union(*(exported_names(s) for s in (live, stalled, without_store, after)))
    known = exported | recorded_names() | PROMETHEUS_MADE
    used = {f"rule {name}": metric_names(expr) for name, expr in rule_exprs().items()}
    used |= {f"dashboard {name}": metric_names(expr) for name, expr in dashboard_exprs().items()}
    assert all(used.values())
    unknown = {where: sorted(names - known) for where, names in used.items() if names - known}
    assert unknown == {}
