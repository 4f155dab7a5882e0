"""The API description: served, complete (every API, player and ops route), its request bodies the
very rules the handlers read with, and a readable page."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from broadcaster_registry.validation import REGISTRATION
from edge.app import create_app
from edge.settings import Settings
from edge.streams.parse import create_rule
from tests.conftest import API_KEY, auth

UNDESCRIBED = {"/metrics", "/", "/play/{id}", "/static/{name}", "/openapi.json", "/docs"}


async def test_every_route_is_described_with_the_statuses_it_answers(client: httpx.AsyncClient,
                                                                     settings: Settings) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    described = {(path, method.upper()) for path, item in doc["paths"].items()
                 for method in item if method != "parameters"}
    served = {
        (route.path_format, method)
        for route in create_app(settings).routes
        if isinstance(route, Route) and route.path_format not in UNDESCRIBED
        for method in route.methods or () if method not in ("HEAD", "OPTIONS")
    }
    assert described == served
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            if path.startswith("/api/"):
                assert {"401", "403"} <= set(op["responses"]), (path, method)
                assert op["security"], (path, method)
                errors = [s for s, r in op["responses"].items() if s >= "400"]
                assert all(op["responses"][s]["content"]["application/json"]["schema"] ==
                           {"$ref": "#/components/schemas/Error"} for s in errors), (path, method)


async def test_request_bodies_are_the_rules_the_handlers_read_with(client: httpx.AsyncClient,
                                                                   settings: Settings) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["CreateStream"] == create_rule(int(settings.max_dvr_window)).schema()
    assert schemas["Registration"] == REGISTRATION.schema()
    links = (await client.get("/openapi.json")).json()["paths"]["/api/stream"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} >= {"getStream", "endStream", "deleteStream"}


async def test_the_docs_page_renders_the_description_with_local_scripts_only(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page.text)
    assert scripts == ["/static/docs.js"]
    assert (await client.get("/static/docs.js")).status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_no_trailing_slash_redirect_reflects_the_host(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/stream/", headers={**auth(API_KEY), "Host": "evil.example"})
    assert response.status_code == 404 and "location" not in response.headers
    assert "evil.example" not in response.text


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.request("PATCH", "/api/stream", headers=auth())
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD, POST"
