"""Nothing a client sends can be stored that cannot be served back: hostile values in every field
of every body are a 4xx naming the field, never a 5xx, and a refused request stores nothing; a
record an older version stored with such text is still served."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from edge.app import create_app
from edge.store.redis import RedisStore
from edge.store.sqlite import SqliteStore
from edge.streams.model import Profile, Stream
from tests.conftest import (
    ADMIN_TOKEN,
    API_KEY,
    BROADCASTER_TOKEN,
    LOOPBACK_FLEET_ENV,
    EdgeProcess,
    auth,
    make_settings,
    start_edge,
)
from tests.jsonfields.strategies import added, hostile_text, json_values, paths_of, replaced
from tests.jsonfields.test_rules import VALID_CREATE, VALID_REGISTRATION, VALID_WOWZA
from tests.store.conftest import REDIS_URL, delete_prefix, require_redis

# --- the reproductions of the issue, on a real server ----------------------------------------------

KEYS = {"EDGE_API_KEYS": API_KEY, "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN, "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
        **LOOPBACK_FLEET_ENV}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    server = start_edge(tmp_path_factory.mktemp("edge"), env=KEYS)
    yield server
    server.stop()


def _raw_post(edge: EdgeProcess, path: str, raw_json: str, token: str) -> httpx.Response:
    # The body as the attacker wrote it: JSON escapes of lone surrogates, which httpx would not encode.
    return httpx.post(f"{edge.url}{path}", content=raw_json.encode(), headers=auth(token), timeout=5)


def _streams(edge: EdgeProcess) -> list[dict[str, Any]]:
    response = httpx.get(f"{edge.url}/api/stream?limit=100", headers=auth(), timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    "path, raw_json, token, status, error",
    [
        ("/api/stream", '{"name": "\\ud800"}', API_KEY, 422,
         "name: must be valid Unicode text (lone surrogate U+D800 at character 0)"),
        ("/api/stream", '{"name": "cam\\u0007"}', API_KEY, 422,
         "name: must not contain control characters (U+0007 at character 3)"),
        ("/api/stream/hook", '{"url": "x", "\\ud800": 1}', BROADCASTER_TOKEN, 422,
         '"\\ud800": field name must be valid Unicode text (lone surrogate U+D800 at character 0)'),
        ("/api/stream", '{"name": "c", "profiles": [{"name": "a", "width": 1280, "height": 720, "bitrate": 9000, '
         '"fps": 30, "profile": ["H264Main"]}]}', API_KEY, 422, "profiles[0].profile: must be a string"),
        ("/api/stream", '{"name": "c", "profiles": [{"name": "a", "width": 1280, "height": 720, "bitrate": 9000, '
         '"fps": 30, "profile": {"x": 1}}]}', API_KEY, 422, "profiles[0].profile: must be a string"),
        ("/api/broadcasters/fra-1", '{"address": "https://fra.example.net", "region": "\\udfff"}',
         BROADCASTER_TOKEN, 422, "region: must be valid Unicode text (lone surrogate U+DFFF at character 0)"),
    ],
)
def test_the_reproductions_are_a_4xx_naming_the_field_and_store_nothing(
    edge: EdgeProcess, path: str, raw_json: str, token: str, status: int, error: str
) -> None:
    method = "PUT" if path.startswith("/api/broadcasters/") else "POST"
    response = httpx.request(method, f"{edge.url}{path}", content=raw_json.encode(), headers=auth(token),
                             timeout=5) if method == "PUT" else _raw_post(edge, path, raw_json, token)
    assert response.status_code == status, response.text
    assert error in response.json()["errors"]
    assert _streams(edge) == []
    admin = httpx.get(f"{edge.url}/api/broadcasters", headers=auth(ADMIN_TOKEN), timeout=5)
    assert admin.json() == []
    assert "Traceback" not in edge.log() and '"status": 500' not in edge.log()


def test_a_client_gone_mid_body_is_logged_as_a_disconnect_not_an_error(edge: EdgeProcess) -> None:
    host, port = edge.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": ".encode())
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while "client disconnected" not in edge.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [json.loads(line) for line in edge.log().splitlines() if line.startswith("{")]
    assert any(line["msg"].startswith("client disconnected") for line in lines)
    assert not [line for line in lines if line.get("status") == 500 or line["level"] == "error"]


# --- arbitrary JSON in every field of every body ---------------------------------------------------


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path / "data")), raise_server_exceptions=False) as client:
        yield client


def _stored(http: TestClient) -> tuple[int, int]:
    streams = http.get("/api/stream?limit=100", headers=auth())
    broadcasters = http.get("/api/broadcasters", headers=auth(ADMIN_TOKEN))
    assert streams.status_code == broadcasters.status_code == 200
    return len(streams.json()), len(broadcasters.json())


def _hostile(valid: Any) -> st.SearchStrategy[Any]:
    """`valid` with one part replaced by, or one field added with, an arbitrary JSON value."""
    paths = paths_of(valid)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            return replaced(valid, path, draw(json_values()))
        return added(valid, path, draw(hostile_text), draw(json_values()))

    return build()


def _send(http: TestClient, method: str, path: str, body: Any, token: str) -> httpx.Response:
    # ensure_ascii: lone surrogates travel as JSON escapes, the way an attacker sends them.
    return http.request(method, path, content=json.dumps(body).encode(), headers=auth(token))


def _check(http: TestClient, method: str, path: str, body: Any, token: str) -> httpx.Response:
    before = _stored(http)
    response = _send(http, method, path, body, token)
    assert response.status_code < 500, (body, response.text)
    answer = response.json()  # always JSON, always UTF-8
    if response.status_code >= 400:
        assert answer["errors"] and all(isinstance(e, str) for e in answer["errors"])
        assert _stored(http) == before, body
    return response


BODIES = [
    ("create", "POST", "/api/stream", VALID_CREATE, API_KEY),
    ("create-wowza", "POST", "/api/stream", VALID_WOWZA, API_KEY),
    ("register", "PUT", "/api/broadcasters/fra-1", VALID_REGISTRATION, BROADCASTER_TOKEN),
    ("state", "PUT", "/api/broadcasters/fra-1/state", {"state": "draining"}, BROADCASTER_TOKEN),
    ("hook", "POST", "/api/stream/hook", {"url": f"http://b:8935/live/{uuid.uuid4()}/1.ts"}, BROADCASTER_TOKEN),
]


@pytest.mark.parametrize("method, path, valid, token", [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_arbitrary_json_in_every_field_is_never_a_5xx_and_a_refusal_stores_nothing(
    http: TestClient, method: str, path: str, valid: Any, token: str
) -> None:
    # The broadcaster the state body acts on; created streams are listed and served back.
    assert _send(http, "PUT", "/api/broadcasters/fra-1", {"address": "https://fra.example.net"},
                 BROADCASTER_TOKEN).status_code in (200, 201)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=_hostile(valid))
    def check(body: Any) -> None:
        response = _check(http, method, path, body, token)
        if response.status_code == 201 and path == "/api/stream":
            stream_id = response.json()["id"]
            assert http.get(f"/api/stream/{stream_id}", headers=auth()).status_code == 200
            assert http.delete(f"/api/stream/{stream_id}", headers=auth()).status_code == 204

    check()


# --- records stored by an older version ------------------------------------------------------------


POISONED = Stream(
    id=str(uuid.uuid4()), name="cam\ud800", created_at=1_700_000_000_000,
    profiles=(Profile("720p", 1280, 720, 2_000_000, 30, gop="\udfff"),),
)


def _served_back(http: TestClient) -> None:
    got = http.get(f"/api/stream/{POISONED.id}", headers=auth())
    assert got.status_code == 200 and got.json()["name"] == "cam\ufffd"
    listed = http.get("/api/stream", headers=auth())
    assert listed.status_code == 200 and [s["name"] for s in listed.json()] == ["cam\ufffd"]
    ended = http.post(f"/api/stream/{POISONED.id}/end", headers=auth())
    assert ended.status_code == 200 and ended.json()["ended"] is True
    assert http.get(f"/stream/{POISONED.id}.m3u8").status_code == 200
    assert http.delete(f"/api/stream/{POISONED.id}", headers=auth()).status_code == 204


async def test_a_poisoned_record_in_sqlite_is_still_listed_and_served(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = SqliteStore(path)
    await old.open()
    await old.streams.create(POISONED)  # what an older version wrote
    await old.close()
    with TestClient(create_app(make_settings(tmp_path / "data", store=f"sqlite:///{path}"))) as http:
        _served_back(http)


async def test_a_poisoned_record_in_redis_is_still_listed_and_served(tmp_path: Path) -> None:
    require_redis()
    prefix = f"test-edge:{uuid.uuid4().hex}:"
    try:
        old = RedisStore(REDIS_URL, prefix)
        await old.open()
        await old.streams.create(POISONED)
        await old.close()
        with TestClient(create_app(make_settings(tmp_path / "data", store=REDIS_URL, redis_prefix=prefix))) as http:
            _served_back(http)
    finally:
        await delete_prefix(REDIS_URL, prefix)
