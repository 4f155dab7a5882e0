"""Benchmark of one upstream playlist fetch: the edge's fetcher (edge.upstream, on edge.http_client)
against aiohttp's client session as the edge used it before, in the same run, against the same
local server.

    .venv/bin/python -m bench.bench_upstream [--requests 20000] [--concurrency 16] [--rounds 3]

The server is a minimal asyncio protocol in a separate process answering every GET with one
go-livepeer-style playlist (keep-alive, Content-Length). Each client does `--requests` GETs on
`--concurrency` concurrent loops in its own event loop (uvloop), after a warm-up; the figure is the
client process's CPU time per request (time.process_time), rounds alternated. Not a test: figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time

import aiohttp
from prometheus_client import CollectorRegistry

from bench.common import Ratio, machine, run, summary, table
from broadcaster_registry.destinations import DestinationPolicy
from edge.upstream import AddressGuard, UpstreamFetcher, UpstreamMetrics
from tests.processes import free_port

BODY = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n" + b"".join(
    b"#EXTINF:2.000,\n/stream/3f9c0a7d5e21b846/source/%d.ts\n" % n for n in range(10, 16))
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nCache-Control: max-age=5\r\n"
          b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def serve(port: int) -> None:
    class Playlist(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
                self.transport.write(ANSWER)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Playlist, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    run(main())


async def timed(fetch_one, requests: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    """CPU microseconds per request over `requests` fetches on `concurrency` loops."""
    async def loop(n: int) -> None:
        for _ in range(n):
            await fetch_one()

    await loop(200)  # connections open, code warm
    started = time.process_time()
    await asyncio.gather(*(loop(requests // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (requests // concurrency * concurrency) * 1e6


async def edge_fetcher(url: str, requests: int, concurrency: int) -> float:
    fetcher = UpstreamFetcher(2.0, 1_048_576, UpstreamMetrics(CollectorRegistry()),
                              AddressGuard(DestinationPolicy.build(["127.0.0.0/8"])))
    await fetcher.start()
    try:
        async def one() -> None:
            result = await fetcher.fetch("b1", url)
            assert result.ok, result
        return await timed(one, requests, concurrency)
    finally:
        await fetcher.close()


async def aiohttp_session(url: str, requests: int, concurrency: int) -> float:
    """The edge's fetch as it was on aiohttp: the same connector limits, timeout and reading."""
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=16, ttl_dns_cache=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=2.0),
        headers={"User-Agent": "hls-edge", "Accept": "application/vnd.apple.mpegurl, */*"},
    ) as session:
        async def one() -> None:
            async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=2.0)) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                assert response.status == 200 and bytes(body) == BODY
        return await timed(one, requests, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/stream/3f9c0a7d5e21b846/source.m3u8"
        edge, before = [], []
        for _ in range(args.rounds):  # alternated, so that both see the same machine
            edge.append(run(edge_fetcher(url, args.requests, args.concurrency)))
            before.append(run(aiohttp_session(url, args.requests, args.concurrency)))
    finally:
        server.terminate()
        server.join(5)
    print(f"{machine()}; {args.requests} GETs of a {len(BODY)}-byte playlist on {args.concurrency} "
          f"concurrent loops, {args.rounds} alternated rounds\n")
    print(table(["client", "CPU us / request, each round", "median"], [
        ("edge fetcher (edge.http_client)", ", ".join(f"{v:.1f}" for v in edge), f"{statistics.median(edge):.1f}"),
        ("aiohttp ClientSession (before)", ", ".join(f"{v:.1f}" for v in before), f"{statistics.median(before):.1f}"),
    ]))
    print()
    print(summary([Ratio("client CPU per upstream fetch, edge fetcher / aiohttp", statistics.median(edge),
                         statistics.median(before), "us")]))


if __name__ == "__main__":
    main()
