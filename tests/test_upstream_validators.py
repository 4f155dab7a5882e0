"""Conditional playlist fetches: what a broadcaster gave as validators (ETag, Last-Modified) is sent
back, and a 304 is "unchanged", counted as such, never a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from broadcaster_registry.destinations import DestinationPolicy
from edge.upstream import AddressGuard, UpstreamFetcher, UpstreamMetrics, Validators

LOOPBACK = DestinationPolicy.build(["127.0.0.0/8"])
BODY = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n/stream/s/source/1.ts\n"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def with_etag(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=BODY, headers={"ETag": '"v1"'})

    async def with_date(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        modified = "Wed, 25 Nov 2026 10:00:00 GMT"
        if request.headers.get("If-Modified-Since") == modified:
            return web.Response(status=304)
        return web.Response(body=BODY, headers={"Last-Modified": modified})

    async def plain(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(body=BODY)

    async def rogue(request: web.Request) -> web.Response:
        return web.Response(status=304)

    app = web.Application()
    app.router.add_get("/rogue.m3u8", rogue)
    app.router.add_get("/etag.m3u8", with_etag)
    app.router.add_get("/date.m3u8", with_date)
    app.router.add_get("/plain.m3u8", plain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def fetcher() -> AsyncIterator[UpstreamFetcher]:
    f = UpstreamFetcher(1.0, 65536, UpstreamMetrics(CollectorRegistry()), AddressGuard(LOOPBACK))
    await f.start()
    yield f
    await f.close()


def counted(fetcher: UpstreamFetcher, outcome: str) -> float:
    return fetcher.metrics.fetches.labels("b", outcome)._value.get()


@pytest.mark.parametrize("path, validators", [
    ("/etag.m3u8", Validators(etag='"v1"')),
    ("/date.m3u8", Validators(last_modified="Wed, 25 Nov 2026 10:00:00 GMT")),
])
async def test_validators_are_sent_back_and_a_304_is_unchanged(server, fetcher, path, validators) -> None:
    url, seen = server
    first = await fetcher.fetch("b", url + path)
    assert first.ok and first.body == BODY and first.validators == validators
    again = await fetcher.fetch("b", url + path, validators=first.validators)
    assert again.outcome == "unchanged" and again.status == 304 and again.answered and not again.ok
    assert again.validators == validators  # still the ones to ask with next time
    assert counted(fetcher, "ok") == 1 and counted(fetcher, "unchanged") == 1


async def test_without_validators_nothing_conditional_is_asked(server, fetcher) -> None:
    url, seen = server
    first = await fetcher.fetch("b", url + "/plain.m3u8")
    assert first.ok and first.validators is None
    await fetcher.fetch("b", url + "/plain.m3u8", validators=first.validators)
    assert not any("If-None-Match" in h or "If-Modified-Since" in h for h in seen)


async def test_a_304_to_an_unconditional_request_is_an_error(server, fetcher) -> None:
    # Nothing was asked conditionally, so there is no earlier playlist a 304 could stand for.
    url, seen = server
    result = await fetcher.fetch("b", url + "/rogue.m3u8")
    assert result.outcome == "http_error" and result.status == 304 and result.body == b""
