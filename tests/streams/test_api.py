"""The streams API over HTTP: create, read, list, end, delete, hook, auth, and bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, BROADCASTER_TOKEN, auth

PROFILES = [{"name": "720p", "width": 1280, "height": 720, "bitrate": 2000000, "fps": 30}]


async def create(client: httpx.AsyncClient, name: str = "cam", **body: object) -> dict:
    response = await client.post("/api/stream", json={"name": name, "profiles": PROFILES, **body}, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()


async def count_streams(client: httpx.AsyncClient) -> int:
    return len((await client.get("/api/stream?limit=100", headers=auth())).json())


async def test_create_answers_the_stored_stream_with_its_renditions(client: httpx.AsyncClient) -> None:
    stream = await create(client, "cam1")
    assert uuid.UUID(stream["id"]).version == 4
    assert stream["kind"] == "stream" and stream["name"] == "cam1"
    assert stream["renditions"] == {
        "source": f"/stream/{stream['id']}/source.m3u8",
        "720p": f"/stream/{stream['id']}/720p.m3u8",
    }
    assert isinstance(stream["createdAt"], int) and stream["ended"] is False
    fetched = await client.get(f"/api/stream/{stream['id']}", headers=auth())
    assert fetched.status_code == 200 and fetched.json() == stream


@pytest.mark.parametrize(
    "headers, status",
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic !!"}, 401),
     (auth(BROADCASTER_TOKEN), 403), (auth(ADMIN_TOKEN), 201)],
)
async def test_keys(client: httpx.AsyncClient, headers: dict, status: int) -> None:
    response = await client.post("/api/stream", json={"name": "k"}, headers=headers)
    assert response.status_code == status
    if status >= 400:
        assert response.json()["errors"][0].startswith("authorization:")


@pytest.mark.parametrize(
    "content, status, fragment",
    [
        (b"{not json", 400, "body: malformed JSON"),
        (b"", 400, "body: empty"),
        (b"\xff\xfe", 400, "body: not UTF-8"),
        (b'{"name": NaN}', 400, "body: malformed JSON"),
        (b'[' * 100_000, 400, "body: malformed JSON"),
        (b'{"name": "x", "profiles": "720p"}', 422, "profiles: must be an array"),
        (b'{"name": "' + b"x" * 300_000 + b'"}', 413, "body: larger than"),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    client: httpx.AsyncClient, content: bytes, status: int, fragment: str
) -> None:
    await create(client, "kept")
    response = await client.post("/api/stream", content=content, headers=auth())
    assert response.status_code == status, response.text
    assert any(fragment in e for e in response.json()["errors"]), response.json()
    assert await count_streams(client) == 1


async def test_body_larger_than_declared_limit_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/stream", content=b"{}", headers={**auth(), "Content-Length": "99999999"}
    )
    assert response.status_code == 413


async def test_list_is_paginated_newest_first(client: httpx.AsyncClient) -> None:
    ids = [(await create(client, f"s{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    url = "/api/stream?limit=2"
    pages = 0
    while url:
        response = await client.get(url, headers=auth())
        assert response.status_code == 200
        seen += [s["id"] for s in response.json()]
        pages += 1
        link = response.headers.get("link")
        url = link.split(">")[0].lstrip("<") if link else ""
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(seen) == 5


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "cursor=%%%", "page=2"])
async def test_list_rejects_bad_query(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/api/stream?{query}", headers=auth())
    assert response.status_code == 400 and response.json()["errors"]


async def test_end_is_idempotent_and_keeps_the_first_time(client: httpx.AsyncClient) -> None:
    stream = await create(client)
    first = await client.post(f"/api/stream/{stream['id']}/end", headers=auth())
    second = await client.post(f"/api/stream/{stream['id']}/end", headers=auth())
    assert first.status_code == second.status_code == 200
    assert first.json()["ended"] is True and first.json()["endedAt"] == second.json()["endedAt"]


async def test_delete_then_gone(client: httpx.AsyncClient) -> None:
    stream = await create(client)
    assert (await client.delete(f"/api/stream/{stream['id']}", headers=auth())).status_code == 204
    assert (await client.get(f"/api/stream/{stream['id']}", headers=auth())).status_code == 404
    assert (await client.delete(f"/api/stream/{stream['id']}", headers=auth())).status_code == 404


@pytest.mark.parametrize("stream_id", ["nope", str(uuid.uuid4()), "../../etc"])
async def test_unknown_stream_is_404(client: httpx.AsyncClient, stream_id: str) -> None:
    response = await client.get(f"/api/stream/{stream_id}", headers=auth())
    assert response.status_code == 404 and "not found" in response.json()["errors"][0]


async def test_hook_answers_manifest_and_profiles_for_a_live_stream(client: httpx.AsyncClient) -> None:
    stream = await create(client, presets=["P360p30fps16x9"])
    for url in (f"http://b1:8935/live/{stream['id']}/12.ts", f"rtmp://b1/live/{stream['id']}"):
        response = await client.post("/api/stream/hook", json={"url": url}, headers=auth(BROADCASTER_TOKEN))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "manifestId": stream["id"],
            "profiles": [
                {"name": "P360p30fps16x9", "width": 640, "height": 360, "bitrate": 1200000, "fps": 30},
                PROFILES[0],
            ],
        }


async def test_hook_refuses_unknown_ended_and_malformed(client: httpx.AsyncClient) -> None:
    stream = await create(client)
    hook = auth(BROADCASTER_TOKEN)
    unknown = await client.post("/api/stream/hook", json={"url": f"http://b/live/{uuid.uuid4()}/1.ts"}, headers=hook)
    assert unknown.status_code == 404
    no_id = await client.post("/api/stream/hook", json={"url": "http://b/other/1.ts"}, headers=hook)
    assert no_id.status_code == 422 and no_id.json()["errors"][0].startswith("url:")
    wrong = await client.post("/api/stream/hook", json={"url": 5}, headers=hook)
    assert wrong.status_code == 422 and wrong.json()["errors"] == ["url: must be a string"]
    await client.post(f"/api/stream/{stream['id']}/end", headers=auth())
    ended = await client.post("/api/stream/hook", json={"url": f"http://b/live/{stream['id']}/1.ts"}, headers=hook)
    assert ended.status_code == 410
    assert (await client.post("/api/stream/hook", json={"url": "x"})).status_code == 401


async def test_the_hook_takes_broadcaster_credentials_only(client: httpx.AsyncClient) -> None:
    stream = await create(client)
    body = {"url": f"http://b/live/{stream['id']}/1.ts"}
    api_key = await client.post("/api/stream/hook", json=body, headers=auth())
    assert api_key.status_code == 403 and api_key.json()["errors"][0].startswith("authorization:")
    for token in (BROADCASTER_TOKEN, ADMIN_TOKEN):
        assert (await client.post("/api/stream/hook", json=body, headers=auth(token))).status_code == 200


async def test_ops_endpoints(client: httpx.AsyncClient) -> None:
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["node"]
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    await client.get("/api/stream", headers=auth())
    await client.get(f"/api/stream/{uuid.uuid4()}", headers=auth())
    text = (await client.get("/metrics")).text
    assert 'edge_http_requests_total{method="GET",route="/api/stream",status="200"} 1.0' in text
    assert 'edge_http_requests_total{method="GET",route="/api/stream/{id}",status="404"} 1.0' in text
    assert "edge_http_request_duration_seconds_bucket" in text


async def test_unknown_path_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json() == {"errors": ["path /api/nothing: not found"]}
    wrong_method = await client.put("/api/stream", headers=auth())
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"errors": ["method PUT: not allowed on /api/stream"]}
