"""GET /api/broadcaster over HTTP: the nearest healthy broadcaster first, located only through
trusted proxies, spread over equal nodes, and answering from the last known list when the
registry cannot be read."""

from __future__ import annotations

import logging
import random
import uuid
from pathlib import Path

import pytest

from edge.store import StoreUnavailable
from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, auth

from .harness import LONDON_IP, MELBOURNE_IP, SAN_DIEGO_IP, open_edge


@pytest.mark.parametrize(
    "client_ip, first",
    [(LONDON_IP, "fra"), (SAN_DIEGO_IP, "ash"), (MELBOURNE_IP, "sin")],
)
async def test_client_behind_a_trusted_proxy_gets_the_nearest_broadcaster_first(
    tmp_path: Path, client_ip: str, first: str
) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        response = await edge.choose({"X-Forwarded-For": client_ip}, token=API_KEY)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        answer = response.json()
        assert answer[0]["name"] == first
        assert sorted(b["name"] for b in answer) == ["ash", "fra", "sin"]
        assert {b["address"] for b in answer} == {
            "https://fra-1.example.net", "https://ash-1.example.net", "https://sin-1.example.net"}
        # The same client keeps being sent to the same place (a reservation is not a move).
        for _ in range(5):
            assert await edge.first({"X-Forwarded-For": client_ip}) == first


SPOOFS = [
    {"X-Forwarded-For": SAN_DIEGO_IP},
    {"X-Forwarded-For": f"{MELBOURNE_IP}, 127.0.0.1"},
    {"CF-Connecting-IP": SAN_DIEGO_IP},
    {"CloudFront-Viewer-Address": f"{MELBOURNE_IP}:443"},
    {"cf-iplatitude": "32.74", "cf-iplongitude": "-117.09"},
    {"CloudFront-Viewer-Latitude": "-37.8", "CloudFront-Viewer-Longitude": "144.9"},
    {"X-Akamai-Edgescape": "country_code=US,lat=32.74,long=-117.09"},
]


@pytest.mark.parametrize("headers", SPOOFS)
async def test_headers_from_an_untrusted_peer_change_nothing(tmp_path: Path, headers: dict[str, str]) -> None:
    # No trusted proxies: the peer (127.0.0.1) is not located, so the default region goes first.
    async with open_edge(tmp_path, trusted_proxies=(), default_region="eu") as edge:
        await edge.register_sites()
        assert await edge.first() == "fra"
        for _ in range(3):
            assert await edge.first(headers) == "fra"


@pytest.mark.parametrize("headers", SPOOFS)
async def test_a_located_untrusted_peer_is_located_by_its_own_address(tmp_path: Path, headers: dict[str, str]) -> None:
    # The peer itself is in London: every header claiming San Diego or Melbourne is ignored.
    async with open_edge(tmp_path, peer=LONDON_IP) as edge:
        await edge.register_sites()
        assert await edge.first(headers) == "fra"


@pytest.mark.parametrize(
    "headers, first",
    [
        ({"CF-Connecting-IP": SAN_DIEGO_IP, "X-Forwarded-For": LONDON_IP}, "ash"),
        ({"CloudFront-Viewer-Address": f"{MELBOURNE_IP}:443"}, "sin"),
        ({"CloudFront-Viewer-Address": "2001:218::1:443"}, "sin"),  # Japan, IPv6, port after the last colon
        ({"cf-iplatitude": "32.74", "cf-iplongitude": "-117.09", "X-Forwarded-For": LONDON_IP}, "ash"),
        ({"CloudFront-Viewer-Latitude": "-37.8", "CloudFront-Viewer-Longitude": "144.9"}, "sin"),
        ({"X-Akamai-Edgescape": "georegion=1,country_code=GB,lat=51.5,long=-0.1"}, "fra"),
        # CDN coordinates out of range are skipped; the client address is used instead.
        ({"cf-iplatitude": "95", "cf-iplongitude": "8", "X-Forwarded-For": SAN_DIEGO_IP}, "ash"),
        # Only the hops our proxies wrote are believed: the client's own entry to their left is not.
        ({"X-Forwarded-For": f"{MELBOURNE_IP}, {LONDON_IP}"}, "fra"),
    ],
)
async def test_cdn_headers_from_a_trusted_proxy(tmp_path: Path, headers: dict[str, str], first: str) -> None:
    async with open_edge(tmp_path, default_region="us") as edge:
        await edge.register_sites()
        assert await edge.first(headers) == first


async def test_repeated_forwarded_for_headers_are_read_as_one_list(tmp_path: Path) -> None:
    # The client wrote its own X-Forwarded-For (San Diego); our proxy added another line with the
    # address it really saw (London). Read as one list, the rightmost untrusted hop is London.
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        headers = [("X-Forwarded-For", SAN_DIEGO_IP), ("X-Forwarded-For", LONDON_IP)]
        assert await edge.first(headers) == "fra"


async def test_custom_geo_headers_are_read_only_when_configured(tmp_path: Path) -> None:
    headers = {"Fastly-Lat": "-33.87", "Fastly-Lon": "151.21"}  # Sydney
    async with open_edge(tmp_path, default_region="eu") as edge:
        await edge.register_sites()
        assert await edge.first(headers) == "fra"
    async with open_edge(tmp_path, default_region="eu", geo_latitude_header="Fastly-Lat",
                         geo_longitude_header="Fastly-Lon") as edge:
        assert await edge.first(headers) == "sin"


@pytest.mark.embedded_db
@pytest.mark.parametrize("client_ip, first", [("81.2.69.142", "fra"), ("1.1.1.1", "sin"), ("8.8.8.8", "ash")])
async def test_the_embedded_dbip_database_locates_real_addresses(tmp_path: Path, client_ip: str, first: str) -> None:
    # DB-IP City Lite shipped with the install: London, Sydney and Mountain View.
    async with open_edge(tmp_path, geoip_database="") as edge:
        assert edge.svc.city_db is not None and "dbip" in edge.svc.city_db.info.path
        await edge.register_sites()
        assert await edge.first({"X-Forwarded-For": client_ip}) == first


async def test_an_unlocated_client_gets_the_default_region_first(tmp_path: Path) -> None:
    async with open_edge(tmp_path, default_region="ap") as edge:
        await edge.register_sites()
        assert await edge.first() == "sin"
        assert await edge.first({"X-Forwarded-For": "10.1.2.3"}) == "sin"  # private: in no database
        assert await edge.first({"X-Forwarded-For": "not an address"}) == "sin"


async def test_the_answer_holds_only_healthy_broadcasters(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        assert (await edge.choose()).json() == []
        await edge.register_sites()
        assert await edge.names() == ["ash", "fra", "sin"]


class NoShuffle(random.Random):
    """Equal leaders stay in name order, so only reservations can spread a burst."""

    def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
        pass


async def test_a_burst_of_ingests_spreads_over_equal_broadcasters(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        edge.svc.selector.rng = NoShuffle()
        for name in ("a", "b", "c"):
            body = {"address": f"https://{name}.example.net", "latitude": 50.11, "longitude": 8.68,
                    "capacity": 10, "load": {"activeStreams": 2}}
            assert (await edge.register(name, body)).status_code == 201
        firsts = [await edge.first({"X-Forwarded-For": LONDON_IP}) for _ in range(10)]
        counts = {name: firsts.count(name) for name in "abc"}
        assert all(3 <= n <= 4 for n in counts.values()), firsts
        # A heartbeat that reports the new load replaces the reservations it covers.
        edge.clock.advance(1)
        body = {"address": "https://a.example.net", "latitude": 50.11, "longitude": 8.68,
                "capacity": 10, "load": {"activeStreams": 9}}
        assert (await edge.register("a", body)).status_code == 200
        assert "a" not in [await edge.first({"X-Forwarded-For": LONDON_IP}) for _ in range(6)]


async def test_a_burst_spreads_with_the_real_random_choice_too(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        for name in ("a", "b"):
            body = {"address": f"https://{name}.example.net", "latitude": 50.11, "longitude": 8.68}
            assert (await edge.register(name, body)).status_code == 201
        firsts = {await edge.first({"X-Forwarded-For": LONDON_IP}) for _ in range(10)}
        assert firsts == {"a", "b"}


async def test_degraded_mode_answers_from_the_last_known_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        assert await edge.first({"X-Forwarded-For": SAN_DIEGO_IP}) == "ash"
        stream = (await edge.client.post("/api/stream", json={"name": "cam"}, headers=auth(API_KEY))).json()

        async def unreachable(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("backend unreachable (test)")

        registry = edge.svc.store.registry
        monkeypatch.setattr(registry, "list_all", unreachable)
        monkeypatch.setattr(registry, "revision", lambda: None)  # as a shared backend: read at every call
        monkeypatch.setattr(registry, "note_carrier", unreachable)
        monkeypatch.setattr(edge.svc.store.streams, "get", unreachable)
        with caplog.at_level(logging.WARNING, logger="edge.selection"):
            for ip, first in [(LONDON_IP, "fra"), (MELBOURNE_IP, "sin"), (SAN_DIEGO_IP, "ash")]:
                response = await edge.choose({"X-Forwarded-For": ip}, streamId=stream["id"])
                assert response.status_code == 200, response.text
                assert [b["name"] for b in response.json()][0] == first
                assert len(response.json()) == 3
        # Said once, not once per ingest.
        warnings = [r.getMessage() for r in caplog.records if r.name == "edge.selection"]
        assert len(warnings) == 2, warnings
        assert warnings[0].startswith("registry unreadable") and warnings[1].startswith("registry not writable")
        # Operators are told the truth: their listing cannot be served from a stale copy.
        listing = await edge.client.get("/api/broadcasters", headers=auth(ADMIN_TOKEN))
        assert listing.status_code == 503


async def test_stream_id_notes_the_handout_for_the_merger(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        stream = (await edge.client.post("/api/stream", json={"name": "cam"}, headers=auth(API_KEY))).json()
        response = await edge.choose({"X-Forwarded-For": MELBOURNE_IP}, streamId=stream["id"])
        assert response.status_code == 200 and response.json()[0]["name"] == "sin"
        carrying = await edge.svc.store.registry.carrying(stream["id"])
        assert [b.name for b in carrying] == ["sin"]


@pytest.mark.parametrize(
    "params, status, fragment",
    [
        ({"region": "eu"}, 400, "region: unknown query parameter"),
        ({"streamId": "nope"}, 400, "streamId: must be a stream id"),
        ({"streamId": str(uuid.uuid4())}, 404, "streamId: stream"),
    ],
)
async def test_bad_queries_are_refused(tmp_path: Path, params: dict[str, str], status: int, fragment: str) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        response = await edge.choose(**params)
        assert response.status_code == status
        assert any(fragment in e for e in response.json()["errors"]), response.json()
        assert await edge.svc.store.registry.carrying(params.get("streamId", "x")) == []


async def test_an_ended_stream_is_refused(tmp_path: Path) -> None:
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        stream = (await edge.client.post("/api/stream", json={"name": "cam"}, headers=auth(API_KEY))).json()
        await edge.client.post(f"/api/stream/{stream['id']}/end", headers=auth(API_KEY))
        response = await edge.choose(streamId=stream["id"])
        assert response.status_code == 410 and "has ended" in response.json()["errors"][0]


@pytest.mark.parametrize("token, status", [(None, 401), ("wrong", 403), (API_KEY, 200),
                                           (BROADCASTER_TOKEN, 200), (ADMIN_TOKEN, 200)])
async def test_who_may_ask(tmp_path: Path, token: str | None, status: int) -> None:
    async with open_edge(tmp_path) as edge:
        headers = auth(token) if token else {}
        response = await edge.client.get("/api/broadcaster", headers=headers)
        assert response.status_code == status


async def test_the_plain_request_and_the_routed_one_answer_alike_and_are_counted_alike(tmp_path: Path) -> None:
    # A plain GET with an API key is answered before the router; with a query it goes through it.
    async with open_edge(tmp_path) as edge:
        await edge.register_sites()
        stream = (await edge.client.post("/api/stream", json={"name": "cam"}, headers=auth(API_KEY))).json()
        headers = {**auth(API_KEY), "X-Forwarded-For": LONDON_IP}
        plain = await edge.client.get("/api/broadcaster", headers=headers)
        routed = await edge.client.get("/api/broadcaster", headers=headers, params={"streamId": stream["id"]})
        for response in (plain, routed):
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers["cache-control"] == "no-store"
            assert sorted(b["name"] for b in response.json()) == ["ash", "fra", "sin"]
            assert set(response.json()[0]) == {"address", "name", "region"}
        assert plain.content.startswith(b'[{"address":"https://')  # the same compact JSON
        metrics = (await edge.client.get("/metrics")).text
        line = [x for x in metrics.splitlines()
                if x.startswith('edge_http_requests_total{method="GET",route="/api/broadcaster",status="200"}')
                or x.startswith('edge_http_requests_total{route="/api/broadcaster",method="GET",status="200"}')]
        assert line and float(line[0].split()[-1]) == 2.0, line
        assert "edge_broadcaster_ranking_cache_checks_total" in metrics
        assert "edge_broadcaster_ranking_cache_mismatches_total" in metrics
