"""GET /api/stream/{id}/health against an edge polling fake broadcasters on loopback: the facts the
operator page draws, as JSON."""

from __future__ import annotations

from pathlib import Path

from broadcaster_registry.model import Registration
from tests.conftest import ADMIN_TOKEN, auth
from tests.playlists_http.harness import Edge, open_edge


async def carry(edge: Edge, name: str, stream_id: str) -> None:
    await edge.svc.store.registry.upsert(name, Registration(
        address=edge.fakes[name].url, latitude=1.0, longitude=2.0, streams=frozenset({stream_id}),
    ), edge.svc.clock())


async def test_health_reports_suppliers_holes_carriers_and_lag(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path):
        sid = (await edge.create_stream())["id"]
        fra = await edge.add_broadcaster("fra-1")
        iad = await edge.add_broadcaster("iad-1")
        await carry(edge, "fra-1", sid)
        await carry(edge, "iad-1", sid)
        fra.add(sid, "source", 0, 1, 2, 3)
        assert (await edge.playlist(sid)).status_code == 200
        feed = edge.svc.playlists.feeds[sid]
        await edge.wait_for(lambda: feed.states["source"].next_number == 4)
        fra.add(sid, "source", 4)
        iad.add(sid, "source", 4, 6, 7)  # 4 listed twice; 5 never: a hole
        await edge.wait_for(lambda: feed.states["source"].next_number == 8, timeout=5)
        iad.add(sid, "source", 5)  # too late: passed over already

        await edge.wait_for(lambda: feed.history.events, timeout=5)
        response = await edge.client.get(f"/api/stream/{sid}/health", headers=auth(ADMIN_TOKEN))
        assert response.status_code == 200, response.text
        health = response.json()
        assert health["node"] == edge.svc.node_id and health["leaseHolder"] == edge.svc.node_id
        assert health["leaseHeldHere"] and health["watched"] and health["segmentMode"] == "direct"
        (source,) = health["renditions"]
        window = {s["number"]: s for s in source["window"]}
        assert window[6]["hole"] == 1 and window[6]["discontinuity"] and window[6]["broadcaster"] == "iad-1"
        assert window[3]["broadcaster"] == "fra-1" and not window[3]["discontinuity"]
        assert 5 not in window
        timeline = {s["number"]: s for s in source["timeline"]}
        assert set(timeline) >= {4, 6, 7}
        assert timeline[4]["duplicate"] and timeline[4]["copies"] == 2
        assert timeline[6]["hole"] == 1 and timeline[6]["uri"].startswith(iad.url)
        # Published numbers were seen listed first: the lag is known and not negative.
        assert timeline[7]["lagSeconds"] is not None and timeline[7]["lagSeconds"] >= 0
        assert source["lag"]["count"] >= 3
        # The same lags feed the histogram operators alert on (one home: the stream's history).
        scrape = (await edge.client.get("/metrics", headers=auth(ADMIN_TOKEN))).text
        counted = [line for line in scrape.splitlines() if line.startswith("edge_playlist_publish_lag_seconds_count")]
        assert counted and float(counted[0].split()[-1]) >= source["lag"]["count"], counted
        assert source["secondsSinceNewSegment"] is not None
        assert [e["kind"] for e in health["events"]] == ["late"] and health["events"][0]["number"] == 5
        carriers = {c["name"]: c for c in health["carriers"]}
        assert set(carriers) == {"fra-1", "iad-1"}
        assert carriers["iad-1"]["lastFetch"]["outcome"] == "ok"
        assert sum(b["ok"] for b in carriers["iad-1"]["buckets"]) > 0

        await iad.stop()
        await edge.wait_for(lambda: edge.svc.fetch_history.last["iad-1"].outcome == "connect_error", timeout=5)
        fleet = (await edge.client.get("/api/fetches", headers=auth(ADMIN_TOKEN))).json()
        assert fleet["broadcasters"]["iad-1"]["lastFetch"]["outcome"] == "connect_error"
        assert sum(b["failed"] for b in fleet["broadcasters"]["iad-1"]["buckets"]) > 0


async def test_health_of_an_unwatched_stream_reads_the_store(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path):
        sid = (await edge.create_stream())["id"]
        response = await edge.client.get(f"/api/stream/{sid}/health", headers=auth(ADMIN_TOKEN))
        assert response.status_code == 200
        health = response.json()
        assert not health["watched"] and health["leaseHolder"] is None
        assert health["renditions"][0]["published"] is False
        assert sid not in edge.svc.playlists.feeds  # looking does not start polling


async def test_cdn_headers_from_an_untrusted_peer_locate_nobody(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path):  # no trusted proxies: anyone could write those headers
        headers = {**auth(), "cf-iplatitude": "48.85", "cf-iplongitude": "2.35"}
        assert (await edge.client.get("/api/viewer", headers=headers)).json()["location"] is None


async def test_health_refuses_bad_requests(tmp_path: Path) -> None:
    async for edge in open_edge(tmp_path):
        sid = (await edge.create_stream())["id"]
        assert (await edge.client.get(f"/api/stream/{sid}/health")).status_code == 401
        assert (await edge.client.get(f"/api/stream/{sid}/health?x=1", headers=auth(ADMIN_TOKEN))).status_code == 400
        missing = "0" * len(sid)
        assert (await edge.client.get(f"/api/stream/{missing}/health", headers=auth())).status_code == 404
        assert (await edge.client.get("/api/viewer", headers=auth())).status_code == 200
        assert (await edge.client.get("/api/fetches", headers=auth())).status_code == 403


async def test_the_viewer_is_located_as_get_broadcaster_would_and_nothing_is_reserved(tmp_path: Path) -> None:
    # The test client connects from 127.0.0.1: a trusted proxy here, so its CDN headers count.
    async for edge in open_edge(tmp_path, trusted_proxies=("127.0.0.0/8",)):
        places = {"fra-1": (50.11, 8.68), "iad-1": (39.04, -77.49), "sin-1": (1.35, 103.82)}
        for name, (latitude, longitude) in places.items():
            fake = await edge.add_broadcaster(name)
            await edge.svc.store.registry.upsert(name, Registration(
                address=fake.url, latitude=latitude, longitude=longitude, capacity=10), edge.svc.clock())
        paris = {"cf-iplatitude": "48.85", "cf-iplongitude": "2.35", "cf-ipcountry": "FR"}
        before = edge.svc.selector.reservations
        for _ in range(3):
            response = await edge.client.get("/api/viewer", headers={**auth(), **paris})
            assert response.status_code == 200, response.text
        viewer = response.json()
        assert viewer["location"]["latitude"] == 48.85 and viewer["location"]["country"] == "FR"
        assert [o["name"] for o in viewer["order"]] == ["fra-1", "iad-1", "sin-1"]
        assert 400 < viewer["order"][0]["distanceKm"] < 500
        assert edge.svc.selector.reservations == before  # looking reserved nothing
        chosen = await edge.client.get("/api/broadcaster", headers={**auth(), **paris})
        assert [c["name"] for c in chosen.json()] == [o["name"] for o in viewer["order"]]
