"""Many streams' broadcasters in one cheap process, for bench_streams: a bare asyncio HTTP/1.1
server on one port per broadcaster that answers `/stream/<id>/<rendition>.m3u8` with the playlist a
go-livepeer broadcaster would list at this instant, computed from the time (no state per stream).
Each stream is carried by one broadcaster (`carrier_of`); the others answer 404 for it.

    python -m bench.fake_fleet --ports 9001,9002 --epoch <unix time> [--segment 2.0] [--etag]

Segment n of a stream's rendition is listed from `listed_at(stream, rendition, n)`: every `segment`
seconds from the epoch, shifted by a phase from the stream id and a jitter of up to 0.1 s per
segment (transcoded renditions a little later than the source). `/stats` answers the playlist
requests counted so far (JSON). With `--etag`, answers carry an ETag and a matching If-None-Match
gets a 304, as broadcasters behind a caching proxy do.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import time

WINDOW = 6  # segments listed, as go-livepeer does
JITTER_S = 0.1


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts`."""
    digest = hashlib.blake2b("\n".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def carrier_of(stream: str, broadcasters: int) -> int:
    """Which of the fleet's broadcasters (by port index) has the ingest of `stream`: the others
    answer 404 for it, as a broadcaster that never received it does."""
    return int(_unit("carrier", stream) * broadcasters)


def listed_at(epoch: float, segment_s: float, stream: str, rendition: str, n: int) -> float:
    """When segment `n` of `stream`'s `rendition` is first listed (unix time)."""
    lag = 0.0 if rendition == "source" else 0.05  # transcoding after the source arrived
    return epoch + _unit(stream) * segment_s + n * segment_s + lag + _unit(stream, rendition, n) * JITTER_S


def newest_at(epoch: float, segment_s: float, stream: str, rendition: str, now: float) -> int:
    """The newest number listed at `now` (-1: none yet)."""
    n = math.floor((now - epoch - _unit(stream) * segment_s) / segment_s)
    while n >= 0 and listed_at(epoch, segment_s, stream, rendition, n) > now:
        n -= 1
    return n


def playlist(stream: str, rendition: str, newest: int, segment_s: float) -> bytes:
    first = max(0, newest - WINDOW + 1)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-MEDIA-SEQUENCE:{first}",
             f"#EXT-X-TARGETDURATION:{math.ceil(segment_s)}"]
    for n in range(first, newest + 1):
        lines += [f"#EXTINF:{segment_s:.3f},", f"/stream/{stream}/{rendition}/{n}.ts"]
    return ("\n".join(lines) + "\n").encode()


class Fleet:
    def __init__(self, epoch: float, segment_s: float, etag: bool, broadcasters: int) -> None:
        self.epoch, self.segment_s, self.etag, self.broadcasters = epoch, segment_s, etag, broadcasters
        self.requests = 0
        self.not_modified = 0
        self.not_carried = 0  # asked for a stream it does not carry (the edge's discovery)

    def answer(self, index: int, path: str, headers: dict[bytes, bytes]) -> tuple[int, bytes, list[str]]:
        if path == "/stats":
            return 200, json.dumps({"requests": self.requests, "not_modified": self.not_modified,
                                    "not_carried": self.not_carried}).encode(), []
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "stream" or not parts[3].endswith(".m3u8"):
            return 404, b"not found", []
        stream, rendition = parts[2], parts[3][: -len(".m3u8")]
        self.requests += 1
        if carrier_of(stream, self.broadcasters) != index:
            self.not_carried += 1
            return 404, b"no such stream", []
        newest = newest_at(self.epoch, self.segment_s, stream, rendition, time.time())
        if newest < 0:
            return 404, b"no segments yet", []
        extra = []
        if self.etag:
            tag = f'"{newest}"'
            if headers.get(b"if-none-match", b"").decode() == tag:
                self.not_modified += 1
                return 304, b"", [f"ETag: {tag}"]
            extra.append(f"ETag: {tag}")
        return 200, playlist(stream, rendition, newest, self.segment_s), extra


class Http(asyncio.Protocol):
    """Keep-alive HTTP/1.1, GET only, no bodies in requests: all a playlist fetcher sends."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet, self.index = fleet, index
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1].decode("latin-1").partition("?")[0]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            status, body, extra = self.fleet.answer(self.index, path, headers)
            reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
            head_out = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}",
                        "Content-Type: application/vnd.apple.mpegurl", *extra]
            assert self.transport is not None
            self.transport.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + body)


async def serve(ports: list[int], fleet: Fleet) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda index=index: Http(fleet, index), "127.0.0.1", port)  # type: ignore[misc]
        for index, port in enumerate(ports)
    ]
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", required=True, help="comma-separated ports to listen on")
    parser.add_argument("--epoch", type=float, required=True, help="unix time of segment 0")
    parser.add_argument("--segment", type=float, default=2.0, help="segment duration (s)")
    parser.add_argument("--etag", action="store_true", help="answer with ETags, 304 when unchanged")
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    fleet = Fleet(args.epoch, args.segment, args.etag, len(ports))
    asyncio.run(serve(ports, fleet))


if __name__ == "__main__":
    main()
