"""The registry over HTTP: register and heartbeat, expiry after the TTL, drain, the admin listing,
and bad input refused with the registry unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, auth, start_edge

from .harness import FRANKFURT, LONDON_IP, T0, open_edge


async def test_register_is_created_then_heartbeat_is_ok(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        body = {**FRANKFURT, "address": "HTTPS://Fra-1.Example.NET:443/", "capacity": 40,
                "load": {"activeStreams": 3, "cpu": 0.25}, "streams": ["s1"]}
        created = await edge.register("fra", body)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/api/broadcasters/fra"
        doc = created.json()
        assert doc["name"] == "fra" and doc["address"] == "https://fra-1.example.net"
        assert (doc["latitude"], doc["longitude"], doc["region"], doc["capacity"]) == (50.11, 8.68, "eu", 40)
        assert doc["load"]["activeStreams"] == 3 and doc["load"]["cpu"] == 0.25
        assert doc["streams"] == ["s1"] and doc["source"] == "self" and doc["state"] == "active"
        assert doc["lastHeartbeat"] == T0 and doc["registeredAt"] == T0
        assert doc["health"] == {"healthy": True, "serving": True, "reason": "ok"}

        edge.clock.advance(10)
        beat = await edge.register("fra", {**FRANKFURT, "load": {"activeStreams": 4}})
        assert beat.status_code == 200
        doc = beat.json()
        assert doc["lastHeartbeat"] == T0 + 10 and doc["registeredAt"] == T0
        # A heartbeat replaces what the node said: what it no longer reports is unknown.
        assert doc["load"] == {"activeStreams": 4, "cpu": None, "bandwidthBps": None, "bandwidthCapacityBps": None}
        assert doc["streams"] == [] and doc["capacity"] is None
        assert [b["name"] for b in await edge.listing()] == ["fra"]


async def test_the_admin_may_register_too(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        assert (await edge.register("fra", FRANKFURT, token=ADMIN_TOKEN)).status_code == 201


async def test_a_broadcaster_whose_heartbeats_stop_is_gone_after_the_ttl_and_back_after_one(tmp_path: Path) -> None:
    async with open_edge(tmp_path, heartbeat_ttl=30.0) as edge:
        await edge.register_sites()
        edge.clock.advance(30)  # exactly the TTL: still alive
        assert await edge.names() == ["ash", "fra", "sin"]
        for name in ("ash", "sin"):
            await edge.register(name, {"ash": {"address": "https://ash-1.example.net", "latitude": 39.04,
                                                "longitude": -77.49},
                                       "sin": {"address": "https://sin-1.example.net"}}[name])
        edge.clock.advance(1)
        assert await edge.names() == ["ash", "sin"]
        assert await edge.first({"X-Forwarded-For": LONDON_IP}) == "ash"
        listed = await edge.listed("fra")
        assert listed["health"]["healthy"] is False and listed["health"]["serving"] is False
        assert listed["health"]["reason"].startswith("heartbeat expired")

        assert (await edge.register("fra", FRANKFURT)).status_code == 200
        assert await edge.names() == ["ash", "fra", "sin"]
        assert await edge.first({"X-Forwarded-For": LONDON_IP}) == "fra"
        assert (await edge.listed("fra"))["health"]["reason"] == "ok"


async def test_a_draining_broadcaster_is_never_handed_out_but_still_listed(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        drained = await edge.client.delete("/api/broadcasters/fra", headers=auth(BROADCASTER_TOKEN))
        assert drained.status_code == 200, drained.text
        assert drained.json()["state"] == "draining"
        assert drained.json()["health"] == {"healthy": False, "serving": True, "reason": "draining"}
        for _ in range(5):
            answer = (await edge.choose({"X-Forwarded-For": LONDON_IP})).json()
            assert [b["name"] for b in answer][0] == "ash" and "fra" not in [b["name"] for b in answer]
        # It keeps heartbeating while its streams finish: still draining, still merged.
        edge.clock.advance(5)
        beat = await edge.register("fra", FRANKFURT)
        assert beat.status_code == 200 and beat.json()["state"] == "draining"
        assert "fra" not in await edge.names()
        assert (await edge.listed("fra"))["health"]["reason"] == "draining"
        # Draining again is idempotent; reactivating brings it back.
        again = await edge.client.delete("/api/broadcasters/fra", headers=auth(BROADCASTER_TOKEN))
        assert again.status_code == 200 and again.json()["state"] == "draining"
        active = await edge.client.put("/api/broadcasters/fra/state", json={"state": "active"},
                                       headers=auth(BROADCASTER_TOKEN))
        assert active.status_code == 200 and active.json()["health"]["reason"] == "ok"
        assert await edge.first({"X-Forwarded-For": LONDON_IP}) == "fra"


async def test_forget_is_for_admins(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        refused = await edge.client.delete("/api/broadcasters/fra?forget=true", headers=auth(BROADCASTER_TOKEN))
        assert refused.status_code == 403 and refused.json()["errors"][0].startswith("forget:")
        assert (await edge.listed("fra"))["state"] == "active"
        gone = await edge.client.delete("/api/broadcasters/fra?forget=true", headers=auth(ADMIN_TOKEN))
        assert gone.status_code == 204
        assert [b["name"] for b in await edge.listing()] == ["ash", "sin"]
        assert (await edge.register("fra", FRANKFURT)).status_code == 201


async def test_the_listing_says_why(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        await edge.client.delete("/api/broadcasters/sin", headers=auth(ADMIN_TOKEN))
        listing = await edge.listing()
        assert [b["name"] for b in listing] == ["ash", "fra", "sin"]
        reasons = {b["name"]: b["health"]["reason"] for b in listing}
        assert reasons == {"ash": "ok", "fra": "ok", "sin": "draining"}
        fra = next(b for b in listing if b["name"] == "fra")
        for key in ("address", "region", "latitude", "longitude", "load", "streams", "lastHeartbeat",
                    "source", "state", "probe", "ejection"):
            assert key in fra
        assert fra["source"] == "self"


# Bad input: every problem a 4xx naming it, and the registry exactly as before.

VALID = {"address": "https://fra-1.example.net", "latitude": 50.11, "longitude": 8.68}


@pytest.mark.parametrize(
    "content, status, fragment",
    [
        (b"{not json", 400, "body: malformed JSON"),
        (b"", 400, "body: empty"),
        (b"[]", 422, "body: must be a JSON object"),
        (b'{"address": "ftp://fra.example.net"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "fra.example.net"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "/relative"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "https://user:pw@fra.example.net"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "https://fra.example.net/#frag"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "https://fra.example.net/live"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "https://fra.example.net?x=1"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": "https://fra.example.net:99999"}', 422, "address: must be an absolute http(s) URL"),
        (b'{"address": 42}', 422, "address: must be an absolute http(s) URL"),
        (b'{"region": "eu"}', 422, "address: is required"),
        (b'{"address": "https://f.example.net", "latitude": 90.5, "longitude": 8}', 422,
         "latitude: must be a number between -90 and 90"),
        (b'{"address": "https://f.example.net", "latitude": 50, "longitude": -181}', 422,
         "longitude: must be a number between -180 and 180"),
        (b'{"address": "https://f.example.net", "latitude": 50}', 422,
         "longitude: is required when latitude is given"),
        (b'{"address": "https://f.example.net", "latitude": "50", "longitude": 8}', 422, "latitude: must be a number"),
        (b'{"address": "https://f.example.net", "colour": "red"}', 422, "colour: unknown field"),
        (b'{"address": "https://f.example.net", "load": {"cpu": 2}}', 422,
         "load.cpu: must be a number between 0 and 1"),
        (b'{"address": "https://f.example.net", "load": {"gpu": 1}}', 422, "load.gpu: unknown field"),
        (b'{"address": "https://f.example.net", "capacity": 0}', 422, "capacity: must be an integer >= 1"),
        (b'{"address": "https://f.example.net", "streams": ["../x"]}', 422, "streams[0]: must be a stream id"),
        (b'{"address": "https://f.example.net", "region": "EU West"}', 422, "region: must be 1-32 characters"),
        (b'{"address": "' + b"x" * 300_000 + b'"}', 413, "body: larger than"),
    ],
)
async def test_bad_bodies_are_refused_and_change_nothing(
    tmp_path: Path, content: bytes, status: int, fragment: str
) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        await edge.register("fra", {**VALID, "capacity": 9})
        before = await edge.listing()
        for name in ("fra", "new"):  # neither an update nor a creation goes through
            response = await edge.client.put(
                f"/api/broadcasters/{name}", content=content,
                headers={**auth(BROADCASTER_TOKEN), "Content-Type": "application/json"},
            )
            assert response.status_code == status, response.text
            assert any(e.startswith(fragment) for e in response.json()["errors"]), response.json()
        assert await edge.listing() == before


async def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        response = await edge.register("fra", {"address": "https://u@x.example.net", "latitude": 91,
                                                "longitude": 200, "extra": 1})
        assert response.status_code == 422
        errors = response.json()["errors"]
        assert [e.split(":")[0] for e in errors] == ["extra", "address", "latitude", "longitude"]


@pytest.mark.parametrize("name", ["Fra", "fra_1", "-fra", "x" * 64, "fra.1", "%C3%A9"])
async def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    async with open_edge(tmp_path) as edge:
        response = await edge.register(name, VALID)
        assert response.status_code == 400
        assert response.json()["errors"][0].startswith("name: must be 1-63 characters")
        assert await edge.listing() == []


ANYONE = {"address": "https://x.example.net"}


@pytest.mark.parametrize(
    "method, path, body, token, status",
    [
        ("PUT", "/api/broadcasters/fra", ANYONE, None, 401),
        ("PUT", "/api/broadcasters/fra", ANYONE, "wrong", 403),
        ("PUT", "/api/broadcasters/fra", ANYONE, API_KEY, 403),
        ("PUT", "/api/broadcasters/new", ANYONE, API_KEY, 403),
        ("DELETE", "/api/broadcasters/fra", None, None, 401),
        ("DELETE", "/api/broadcasters/fra", None, API_KEY, 403),
        ("DELETE", "/api/broadcasters/fra?forget=true", None, API_KEY, 403),
        ("PUT", "/api/broadcasters/fra/state", {"state": "draining"}, API_KEY, 403),
        ("GET", "/api/broadcasters", None, None, 401),
        ("GET", "/api/broadcasters", None, API_KEY, 403),
        ("GET", "/api/broadcasters", None, BROADCASTER_TOKEN, 403),
        ("DELETE", "/api/broadcasters/nope", None, BROADCASTER_TOKEN, 404),
        ("DELETE", "/api/broadcasters/Not_A_Name", None, BROADCASTER_TOKEN, 404),
        ("DELETE", "/api/broadcasters/nope?forget=true", None, ADMIN_TOKEN, 404),
        ("DELETE", "/api/broadcasters/fra?forget=yes", None, ADMIN_TOKEN, 400),
        ("DELETE", "/api/broadcasters/fra?now=1", None, ADMIN_TOKEN, 400),
        ("PUT", "/api/broadcasters/fra?x=1", ANYONE, BROADCASTER_TOKEN, 400),
        ("PUT", "/api/broadcasters/nope/state", {"state": "active"}, BROADCASTER_TOKEN, 404),
        ("PUT", "/api/broadcasters/fra/state", {"state": "gone"}, BROADCASTER_TOKEN, 422),
        ("PUT", "/api/broadcasters/fra/state", {"state": "active", "x": 1}, BROADCASTER_TOKEN, 422),
        ("GET", "/api/broadcasters?all=1", None, ADMIN_TOKEN, 400),
        ("PATCH", "/api/broadcasters/fra", ANYONE, ADMIN_TOKEN, 405),
    ],
)
async def test_refused_calls_change_nothing(
    tmp_path: Path, method: str, path: str, body: Any, token: str | None, status: int
) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        before = await edge.listing()
        headers = auth(token) if token else {}
        response = await edge.client.request(method, path, json=body, headers=headers)
        assert response.status_code == status, response.text
        errors = response.json()["errors"]
        assert errors and all(isinstance(e, str) and ": " in e for e in errors)
        if status == 401:
            assert errors[0].startswith("authorization: missing")
        assert await edge.listing() == before


async def test_registration_survives_a_restart_of_a_real_server(tmp_path: Path) -> None:
    env = {"EDGE_BROADCASTER_TOKENS": "b-token", "EDGE_ADMIN_TOKENS": "a-token", "EDGE_API_KEYS": "k",
           "EDGE_TRUSTED_PROXIES": "127.0.0.1/32", "EDGE_SHARED_BROADCASTER_TOKEN": "true"}
    edge = start_edge(tmp_path, env=env)
    try:
        put = httpx.put(f"{edge.url}/api/broadcasters/fra", json=FRANKFURT,
                        headers={"Authorization": "Bearer b-token"})
        assert put.status_code == 201, put.text
        ash = {"address": "https://ash-1.example.net", "latitude": 39.04, "longitude": -77.49}
        assert httpx.put(f"{edge.url}/api/broadcasters/ash", json=ash,
                         headers={"Authorization": "Bearer b-token"}).status_code == 201
    finally:
        edge.stop()
    again = start_edge(tmp_path, env=env)
    try:
        listing = httpx.get(f"{again.url}/api/broadcasters", headers={"Authorization": "Bearer a-token"})
        assert [b["name"] for b in listing.json()] == ["ash", "fra"]
        assert listing.json()[1]["address"] == "https://fra-1.example.net"
        # Through the real server's socket: the peer is 127.0.0.1, a trusted proxy; the embedded
        # DB-IP database places 81.2.69.142 in London.
        headers = {"Authorization": "Bearer k", "X-Forwarded-For": LONDON_IP}
        answer = httpx.get(f"{again.url}/api/broadcaster", headers=headers)
        assert answer.status_code == 200 and answer.json()[0]["address"] == "https://fra-1.example.net"
        headers["X-Forwarded-For"] = "8.8.8.8"  # Mountain View
        assert httpx.get(f"{again.url}/api/broadcaster", headers=headers).json()[0]["name"] == "ash"
    finally:
        again.stop()
    assert "b-token" not in edge.log() + again.log()

