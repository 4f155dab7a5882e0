"""The static fleet: the broadcasters file read at start-up, and our probes taking its nodes out
and bringing them back (FakeBroadcaster servers on loopback, real HTTP)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.broadcasters.static import StaticFleetError, read_static_fleet
from edge.store import StoreUnavailable
from tests.conftest import ADMIN_TOKEN, BROADCASTER_TOKEN, auth, start_edge
from tests.fakes import FakeBroadcaster

from .harness import LONDON_IP, eventually, open_edge

FAST = {"probe_interval": 0.05, "probe_timeout": 0.5}


def fleet_file(path: Path, entries: list[dict[str, Any]]) -> Path:
    lines = []
    for entry in entries:
        lines.append("[[broadcasters]]")
        lines += [f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}"
                  for key, value in entry.items()]
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


def fra(url: str) -> dict[str, Any]:
    return {"name": "fra", "address": url, "region": "eu", "latitude": 50.11, "longitude": 8.68, "capacity": 40}


def ash(url: str) -> dict[str, Any]:
    return {"name": "ash", "address": url, "region": "us", "latitude": 39.04, "longitude": -77.49, "capacity": 40}


def test_a_good_file_is_read() -> None:
    entries = read_static_fleet(Path(__file__).parent / "fleet.example.toml")
    assert [(e.name, e.registration.address, e.registration.capacity) for e in entries] == [
        ("fra-1", "https://fra-1.example.net:8935", 40),
        ("ash-1", "https://ash-1.example.net:8935", 40),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[broadcasters]]\nname = "fra"\naddress = "https://u@fra.example.net"\n',
         "broadcasters[0] (fra): address: must be an absolute http(s) URL"),
        ('[[broadcasters]]\nname = "fra"\naddress = "https://fra.example.net"\n'
         '[[broadcasters]]\nname = "ash"\naddress = "https://ash.example.net"\nlatitude = 91\nlongitude = 0\n',
         "broadcasters[1] (ash): latitude: must be a number between -90 and 90"),
        ('[[broadcasters]]\naddress = "https://fra.example.net"\n', "broadcasters[0]: name: is required"),
        ('[[broadcasters]]\nname = "fra"\naddress = "https://fra.example.net"\nweight = 3\n',
         "broadcasters[0] (fra): weight: unknown field"),
        ('[[broadcasters]]\nname = "fra"\naddress = "https://a.example.net"\n'
         '[[broadcasters]]\nname = "fra"\naddress = "https://b.example.net"\n',
         "broadcasters[1] (fra): name: fra is listed twice"),
        ('broadcasters = "fra"\n', "broadcasters must be an array of tables"),
        ('[[broadcaster]]\nname = "fra"\n', "unknown key(s) broadcaster"),
        ('[[broadcasters]\n', "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(StaticFleetError) as raised:
        read_static_fleet(path)
    assert str(raised.value).startswith(f"broadcasters_file {path}: ")
    assert message in str(raised.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StaticFleetError, match="cannot read it: No such file"):
        read_static_fleet(tmp_path / "nope.toml")


def test_a_bad_file_stops_a_real_server_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[[broadcasters]]\nname = "fra"\naddress = "ftp://fra.example.net"\n')
    with pytest.raises(RuntimeError) as raised:
        start_edge(tmp_path, env={"EDGE_BROADCASTERS_FILE": str(path)})
    assert "edge exited" in str(raised.value)
    assert f"broadcasters_file {path}: broadcasters[0] (fra): address: must be an absolute http(s) URL" in str(
        raised.value)


async def test_static_broadcasters_are_handed_out_and_taken_out_by_failed_probes(tmp_path: Path) -> None:
    a, b = FakeBroadcaster("fra"), FakeBroadcaster("ash")
    await a.start()
    await b.start()
    path = fleet_file(tmp_path / "fleet.toml", [fra(a.url), ash(b.url)])
    try:
        async with open_edge(tmp_path / "data", broadcasters_file=str(path), **FAST) as edge:
            listing = await edge.listing()
            assert [(x["name"], x["source"]) for x in listing] == [("ash", "static"), ("fra", "static")]
            assert await edge.first({"X-Forwarded-For": LONDON_IP}) == "fra"
            await eventually(lambda: _probed(edge, "fra", 2))
            assert a.requests["/"] >= 2  # probe_path "/" on the broadcaster's own address

            # Dead: the server is gone (connection refused). Out after 3 failures in a row.
            port = int(a.url.rsplit(":", 1)[1])
            await a.stop()
            await eventually(lambda: _reason_is(edge, "fra", "probe failed"))
            assert await edge.names() == ["ash"]
            assert await edge.first({"X-Forwarded-For": LONDON_IP}) == "ash"
            health = (await edge.listed("fra"))["health"]
            assert health["healthy"] is False and health["serving"] is False

            # Recovery: back after 2 successes in a row.
            await a.start(port)
            await eventually(lambda: _reason_is(edge, "fra", "ok"))
            assert await edge.first({"X-Forwarded-For": LONDON_IP}) == "fra"
    finally:
        await a.stop()
        await b.stop()


async def test_a_5xx_answer_counts_as_down_and_a_4xx_as_up(tmp_path: Path) -> None:
    a = FakeBroadcaster("fra")
    await a.start()
    path = fleet_file(tmp_path / "fleet.toml", [fra(a.url)])
    # The fake answers its playlist path with 404 (no such stream) or with `status` when set.
    options = {**FAST, "probe_path": "/stream/probe/source.m3u8"}
    try:
        async with open_edge(tmp_path / "data", broadcasters_file=str(path), **options) as edge:
            await eventually(lambda: _probed(edge, "fra", 3))
            assert await edge.names() == ["fra"]  # 404 is an answer: the node is there
            a.status = 500
            await eventually(lambda: _reason_is(edge, "fra", "probe failed"))
            assert await edge.names() == []
            a.status = 200
            await eventually(lambda: _reason_is(edge, "fra", "ok"))
            assert await edge.names() == ["fra"]
    finally:
        await a.stop()


async def test_a_slow_broadcaster_times_out(tmp_path: Path) -> None:
    a = FakeBroadcaster("fra", delay=1.0)
    await a.start()
    path = fleet_file(tmp_path / "fleet.toml", [fra(a.url)])
    options = {"probe_interval": 0.05, "probe_timeout": 0.1, "probe_path": "/stream/probe/source.m3u8"}
    try:
        async with open_edge(tmp_path / "data", broadcasters_file=str(path), **options) as edge:
            await eventually(lambda: _reason_is(edge, "fra", "probe failed"))
            assert await edge.names() == []
    finally:
        await a.stop()


async def test_a_static_name_cannot_be_taken_by_self_registration(tmp_path: Path) -> None:
    path = fleet_file(tmp_path / "fleet.toml", [fra("https://fra-1.example.net")])
    async with open_edge(tmp_path / "data", broadcasters_file=str(path), probe_interval=60.0) as edge:
        before = await edge.listing()
        response = await edge.register("fra", {"address": "https://evil.example.net"})
        assert response.status_code == 409
        assert response.json()["errors"] == [
            "name: fra is a static broadcaster from the broadcasters file; register under another name"]
        drain = await edge.client.delete("/api/broadcasters/fra", headers=auth(BROADCASTER_TOKEN))
        assert drain.status_code == 403
        forget = await edge.client.delete("/api/broadcasters/fra?forget=true", headers=auth(ADMIN_TOKEN))
        assert forget.status_code == 409 and "broadcasters file" in forget.json()["errors"][0]
        assert await edge.listing() == before
        # An operator may drain it.
        drained = await edge.client.delete("/api/broadcasters/fra", headers=auth(ADMIN_TOKEN))
        assert drained.status_code == 200 and drained.json()["health"]["reason"] == "draining"


async def test_the_file_is_the_truth_for_static_entries(tmp_path: Path) -> None:
    first = fleet_file(tmp_path / "one.toml", [fra("https://fra-1.example.net"), ash("https://ash-1.example.net")])
    async with open_edge(tmp_path / "data", broadcasters_file=str(first), probe_interval=60.0) as edge:
        assert (await edge.register("own", {"address": "https://own.example.net"})).status_code == 201
    second = fleet_file(tmp_path / "two.toml", [ash("https://ash-2.example.net")])
    async with open_edge(tmp_path / "data", broadcasters_file=str(second), probe_interval=60.0) as edge:
        listing = {b["name"]: b for b in await edge.listing()}
        assert sorted(listing) == ["ash", "own"]
        assert listing["ash"]["address"] == "https://ash-2.example.net"
        assert listing["own"]["source"] == "self"


async def test_probing_survives_store_errors_and_stops_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    a = FakeBroadcaster("fra")
    await a.start()
    path = fleet_file(tmp_path / "fleet.toml", [fra(a.url)])
    try:
        async with open_edge(tmp_path / "data", broadcasters_file=str(path), **FAST) as edge:
            registry = edge.svc.store.registry
            real = registry.record_probe
            failures = 0

            async def broken(*args: Any, **kwargs: Any) -> None:
                nonlocal failures
                failures += 1
                raise StoreUnavailable("disk on fire (test)")

            with caplog.at_level(logging.ERROR, logger="edge.broadcasters.prober"):
                monkeypatch.setattr(registry, "record_probe", broken)
                await eventually(lambda: _true(failures >= 5))
                monkeypatch.setattr(registry, "record_probe", real)
            reported = [r for r in caplog.records if "StoreUnavailable" in r.getMessage()]
            assert len(reported) == 1  # once per kind of failure, not once per probe

            # Still probing: a dead node still goes out.
            await a.stop()
            await eventually(lambda: _reason_is(edge, "fra", "probe failed"))
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "static-fleet-prober"]
    finally:
        await a.stop()


async def _probed(edge: Any, name: str, times: int) -> bool:
    b = await edge.svc.store.registry.get(name)
    return b is not None and b.probe.consecutive_successes >= times


async def _reason_is(edge: Any, name: str, prefix: str) -> bool:
    return (await edge.listed(name))["health"]["reason"].startswith(prefix)


async def _true(value: bool) -> bool:
    return value





def test_a_static_entry_at_a_refused_address_names_the_entry_and_why(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[[broadcasters]]\nname = "meta"\naddress = "http://169.254.169.254"\n')
    with pytest.raises(StaticFleetError, match=r"broadcasters\[0\] \(meta\): address: 169.254.169.254 is a link-local"):
        read_static_fleet(path)
