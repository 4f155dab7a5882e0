"""A reference broadcaster: a stand-in for go-livepeer, for development, tests and the demo.

It takes pushed segments (`PUT /live/<id>/<n>.ts`) after asking the edge's hook, transcodes them with
ffmpeg (or copies them), serves go-livepeer's HLS layout, and registers and heartbeats with the edge.
Faults (slow, 5xx, refused uploads, sudden death) can be switched on at run time.

    python -m devtools.broadcaster --port 0 --name b1 --edge http://127.0.0.1:8080 --token TOKEN \\
        --region eu --latitude 50.1 --longitude 8.7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

from devtools.edge_api import SOURCE, EdgeApi, EdgeError, HookAnswer, Profile
from devtools.hls import (
    RenditionWindow,
    Segment,
    Variant,
    render_master_playlist,
    render_media_playlist,
)
from devtools.media import MediaError, TranscodePool, ffmpeg_path

log = logging.getLogger("devtools.broadcaster")

Transcode = Literal["auto", "copy", "ffmpeg"]

# What the edge accepts as a stream id in a heartbeat (broadcaster_registry.validation).
_STREAM_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}", re.ASCII)
_RESOLUTION = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
_MAX_NUMBER = 2**53
_PLAYLIST_HEADERS = {"Content-Type": "application/vnd.apple.mpegurl", "Cache-Control": "max-age=5"}
_CORS = {"Access-Control-Allow-Origin": "*"}


@dataclass
class Faults:
    """Switchable misbehaviour. `slow` delays every answer (but /_faults) by that many seconds,
    `error5xx` answers every request (but /_faults) 503, `refuse_uploads` answers uploads 403."""

    slow: float = 0.0
    error5xx: bool = False
    refuse_uploads: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"slow": self.slow, "error5xx": self.error5xx, "refuseUploads": self.refuse_uploads}


@dataclass
class Stats:
    """Counters for tests and the demo."""

    uploads_accepted: int = 0
    uploads_refused: int = 0  # by the hook, a fault, or a bad request
    transcodes_failed: int = 0
    heartbeats_ok: int = 0
    heartbeats_failed: int = 0
    last_heartbeat_error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class _Stream:
    id: str
    profiles: tuple[Profile, ...]
    windows: dict[str, RenditionWindow]
    last_upload: float  # monotonic
    source_size: tuple[int, int] | None = None
    source_bandwidth: int = 0  # bit/s of the last source segment


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ReferenceBroadcaster:
    """One broadcaster on `host:port` (0: any free port; `.url` after start()).

    transcode: "auto" transcodes with ffmpeg when installed and copies otherwise; "ffmpeg" requires
    it; "copy" always serves the source bytes under every profile's name.
    """

    def __init__(
        self,
        name: str,
        edge_url: str,
        token: str,
        region: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        window: int = 6,
        transcode: Transcode = "auto",
        heartbeat_interval: float = 2.0,
        *,
        capacity: int = 10,
        idle_timeout: float = 60.0,
        retain: int = 30,
        max_segment_bytes: int = 32 * 1024 * 1024,
        workers: int | None = None,
        x264_preset: str = "ultrafast",
        transcode_timeout: float = 30.0,
        public_url: str | None = None,
    ) -> None:
        if transcode not in ("auto", "copy", "ffmpeg"):
            raise ValueError("transcode: must be auto, copy or ffmpeg")
        self.name = name
        self.edge_url = edge_url.rstrip("/")
        self.region = region
        self.latitude = latitude
        self.longitude = longitude
        self.host = host
        self.port = port
        self.window = window
        self.retain = retain
        self.heartbeat_interval = heartbeat_interval
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self.max_segment_bytes = max_segment_bytes
        self.faults = Faults()
        self.stats = Stats()
        self._token = token
        self._public_url = public_url.rstrip("/") if public_url else None
        self._pool: TranscodePool | None = None
        if transcode == "ffmpeg" or (transcode == "auto" and ffmpeg_path()):
            self._pool = TranscodePool(workers, x264_preset, transcode_timeout)  # MediaError if missing
        self._streams: dict[str, _Stream] = {}
        self._admitting: dict[str, asyncio.Lock] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._dying: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._edge: EdgeApi | None = None
        self._url: str | None = None
        self._last_bandwidth_sample = (time.monotonic(), 0)

    # --- life -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("not started")
        return self._url

    @property
    def transcoding(self) -> bool:
        """True when renditions are real ffmpeg transcodes, False when they are copies."""
        return self._pool is not None

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen, then register with the edge once before returning (a failure is logged and
        retried at every heartbeat, so a broadcaster may start before its edge)."""
        app = web.Application(client_max_size=self.max_segment_bytes, middlewares=[self._middleware])
        app.add_routes([
            web.put(r"/live/{id}/{n:[0-9]+}.ts", self._upload),
            web.get("/stream/{id}.m3u8", self._master),
            web.get("/stream/{id}/{rendition}.m3u8", self._media_playlist),
            web.get(r"/stream/{id}/{rendition}/{n:[0-9]+}.ts", self._segment),
            web.get("/_faults", self._get_faults),
            web.post("/_faults", self._post_faults),
            web.get("/_status", self._status),
        ])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        shown_host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        self._url = self._public_url or f"http://{shown_host}:{self.port}"
        self._session = aiohttp.ClientSession()
        self._edge = EdgeApi(self.edge_url, self._session, timeout=5.0)
        log.info("%s listening on %s (%s)", self.name, self._url,
                 "ffmpeg transcodes" if self.transcoding else "copies, no ffmpeg")
        await self.heartbeat()
        self._tasks = [
            asyncio.create_task(self._heartbeats(), name=f"{self.name}-heartbeats"),
            asyncio.create_task(self._reaper(), name=f"{self.name}-reaper"),
        ]

    async def stop(self, drain: bool = True) -> None:
        """A graceful stop: with `drain`, tell the edge first (DELETE /api/broadcasters/<name>) so it
        is handed out no more; then finish the requests in progress and close."""
        if self._runner is None:
            return
        await self._cancel_tasks()
        if drain and self._edge is not None:
            try:
                await self._edge.drain_broadcaster(self._token, self.name)
                log.info("%s drained at the edge", self.name)
            except EdgeError as exc:
                log.warning("%s: drain at the edge failed: %s", self.name, exc)
        runner, self._runner = self._runner, None
        await runner.cleanup()
        await self._cancel_inflight()
        await self._close_session()
        self._streams.clear()

    async def die(self) -> None:
        """Stop abruptly, as a crashed node: no drain, no more heartbeats, connections cut."""
        if self._runner is None:
            return
        log.warning("%s dies", self.name)
        await self._cancel_tasks()
        runner, self._runner = self._runner, None
        for site in list(runner.sites):
            await site.stop()
        if runner.server is not None:
            for connection in runner.server.connections:
                connection.force_close()
        await self._cancel_inflight()
        await runner.cleanup()
        await self._close_session()
        self._streams.clear()  # a crashed node's memory is gone

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _cancel_inflight(self) -> None:
        tasks = [t for t in self._inflight if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- faults -----------------------------------------------------------------------------------

    def set_faults(
        self, slow: float | None = None, error5xx: bool | None = None, refuse_uploads: bool | None = None
    ) -> Faults:
        """Switch faults on or off; None leaves one as it is."""
        if slow is not None:
            self.faults.slow = max(0.0, float(slow))
        if error5xx is not None:
            self.faults.error5xx = error5xx
        if refuse_uploads is not None:
            self.faults.refuse_uploads = refuse_uploads
        log.info("%s faults: %s", self.name, self.faults.to_json())
        return self.faults

    # --- the edge: registration and heartbeats ----------------------------------------------------

    def streams(self) -> list[str]:
        """The ids of the streams this broadcaster carries now."""
        return sorted(self._streams)

    def registration(self) -> dict[str, Any]:
        """The body of PUT /api/broadcasters/<name>: who we are, our load and our streams."""
        now = time.monotonic()
        total = self.stats.bytes_in + self.stats.bytes_out
        since, before = self._last_bandwidth_sample
        self._last_bandwidth_sample = (now, total)
        bandwidth = (total - before) * 8 / (now - since) if now > since else 0.0
        load: dict[str, Any] = {"activeStreams": len(self._streams), "bandwidthBps": round(bandwidth)}
        with contextlib.suppress(OSError, AttributeError):
            load["cpu"] = round(min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)), 3)
        body: dict[str, Any] = {
            "address": self.url, "capacity": self.capacity, "load": load, "streams": self.streams(),
        }
        if self.region is not None:
            body["region"] = self.region
        if self.latitude is not None and self.longitude is not None:
            body["latitude"], body["longitude"] = self.latitude, self.longitude
        return body

    async def heartbeat(self) -> bool:
        """One register/heartbeat call; True when the edge took it."""
        assert self._edge is not None
        try:
            seen = await self._edge.put_broadcaster(self._token, self.name, self.registration())
        except EdgeError as exc:
            self.stats.heartbeats_failed += 1
            if self.stats.last_heartbeat_error is None:  # log the change, not every beat
                hint = " (has the edge a PUT /api/broadcasters route?)" if exc.status in (404, 405) else ""
                log.warning("%s: heartbeat to %s failed: %s%s", self.name, self.edge_url, exc, hint)
            self.stats.last_heartbeat_error = str(exc)
            return False
        if self.stats.last_heartbeat_error is not None or self.stats.heartbeats_ok == 0:
            log.info("%s registered with %s", self.name, self.edge_url)
            if seen.get("state") == "draining":  # a heartbeat does not undo a drain, by the edge's rule
                log.warning("%s is drained at the edge (an earlier graceful stop?) and will not be handed "
                            "out; PUT /api/broadcasters/%s/state {\"state\": \"active\"} reactivates it",
                            self.name, self.name)
        self.stats.heartbeats_ok += 1
        self.stats.last_heartbeat_error = None
        return True

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self.heartbeat()

    async def _reaper(self) -> None:
        """Drop streams without an upload for `idle_timeout` seconds, as go-livepeer does."""
        while True:
            await asyncio.sleep(min(5.0, max(0.1, self.idle_timeout / 4)))
            cutoff = time.monotonic() - self.idle_timeout
            for stream_id in [s.id for s in self._streams.values() if s.last_upload < cutoff]:
                del self._streams[stream_id]
                self._admitting.pop(stream_id, None)
                log.info("%s: stream %s idle, dropped", self.name, stream_id)

    # --- HTTP -------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.method == "OPTIONS":  # a browser's preflight
                response: web.StreamResponse = web.Response(status=204, headers={
                    "Access-Control-Allow-Methods": "GET, PUT, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "*",
                    "Access-Control-Max-Age": "600",
                })
            elif request.path.startswith("/_"):
                response = await handler(request)
            else:
                if self.faults.slow > 0:
                    await asyncio.sleep(self.faults.slow)
                if self.faults.error5xx:
                    response = _error(503, "fault: error5xx is on")
                else:
                    response = await handler(request)
        except web.HTTPException as exc:  # no route, wrong method, body too large
            exc.headers.update(_CORS)
            raise
        response.headers.update(_CORS)
        return response

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            return await self._accept(request)
        except _Refused as exc:
            self.stats.uploads_refused += 1
            log.info("%s: upload %s refused (%s): %s", self.name, request.path, exc.status, exc.reason)
            return _error(exc.status, exc.reason)
        finally:
            self._inflight.discard(task)

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        stream_id, number = request.match_info["id"], int(request.match_info["n"])
        if (request.content_length or 0) > self.max_segment_bytes:
            raise _Refused(413, f"body: larger than {self.max_segment_bytes} bytes")
        # The body first, even for a refusal: a client still sending could see a reset, not our answer.
        data = await request.read()  # client_max_size answers 413 beyond the cap
        self.stats.bytes_in += len(data)
        if self.faults.refuse_uploads:
            raise _Refused(403, "fault: refuseUploads is on")
        if not _STREAM_ID.fullmatch(stream_id) or stream_id in (".", ".."):
            raise _Refused(400, "id: not a stream id")
        if number > _MAX_NUMBER:
            raise _Refused(400, "n: too large")
        duration = _duration(request.headers.get("Content-Duration"))
        if duration is None:
            raise _Refused(400, "Content-Duration: must be a number of milliseconds between 1 and 60000")
        if not data:
            raise _Refused(400, "body: empty")
        stream = await self._admit(stream_id, number)
        stream.last_upload = time.monotonic()
        stream.source_size = _resolution(request.headers.get("Content-Resolution")) or stream.source_size
        stream.source_bandwidth = round(len(data) * 8 / duration)
        stream.windows[SOURCE].add(Segment(number, duration, data))
        # Like go-livepeer, answer the push once the renditions are done: the ingest sends in order,
        # so the windows fill in order even though transcodes run in parallel.
        produced = await asyncio.gather(*(self._rendition(stream, p, number, duration, data) for p in stream.profiles))
        self.stats.uploads_accepted += 1
        return web.json_response({
            "stream": stream_id, "segment": number,
            "renditions": [SOURCE, *(p.name for p, ok in zip(stream.profiles, produced) if ok)],
        })

    async def _admit(self, stream_id: str, number: int) -> _Stream:
        """The stream, asking the edge's hook the first time we see it (answers are cached)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        lock = self._admitting.setdefault(stream_id, asyncio.Lock())
        async with lock:  # one hook call when several first uploads arrive together
            stream = self._streams.get(stream_id)
            if stream is not None:
                return stream
            assert self._edge is not None
            try:
                answer: HookAnswer = await self._edge.hook(self._token, f"{self.url}/live/{stream_id}/{number}.ts")
            except EdgeError as exc:
                if exc.status is None:
                    raise _Refused(503, f"the edge's hook did not answer: {exc.detail}") from None
                raise _Refused(403, f"refused by the edge's hook: {exc}") from None
            for problem in answer.skipped:
                log.warning("%s: stream %s: %s; rendition left out", self.name, stream_id, problem)
            windows = {name: RenditionWindow(self.window, self.retain)
                       for name in (SOURCE, *(p.name for p in answer.profiles))}
            stream = _Stream(stream_id, answer.profiles, windows, time.monotonic())
            self._streams[stream_id] = stream
            log.info("%s: stream %s accepted, renditions %s", self.name, stream_id, ", ".join(windows))
            return stream

    async def _rendition(self, stream: _Stream, profile: Profile, number: int, duration: float, data: bytes) -> bool:
        if self._pool is None:
            out = data
        else:
            try:
                out = await self._pool.transcode(data, profile)
            except (MediaError, TimeoutError) as exc:
                self.stats.transcodes_failed += 1
                log.warning("%s: stream %s segment %d: transcode to %s failed, skipped: %s",
                            self.name, stream.id, number, profile.name, exc or type(exc).__name__)
                return False
        window = stream.windows.get(profile.name)
        if window is None or self._streams.get(stream.id) is not stream:  # dropped meanwhile
            return False
        window.add(Segment(number, duration, out))
        return True

    def _window(self, request: web.Request) -> tuple[_Stream, RenditionWindow] | web.Response:
        stream = self._streams.get(request.match_info["id"])
        if stream is None:
            return _error(404, "stream: not found")
        window = stream.windows.get(request.match_info["rendition"])
        if window is None:
            return _error(404, "rendition: not found")
        return stream, window

    async def _master(self, request: web.Request) -> web.StreamResponse:
        stream = self._streams.get(request.match_info["id"])
        if stream is None:
            return _error(404, "stream: not found")
        size = stream.source_size
        variants = [Variant(SOURCE, stream.source_bandwidth, *(size or (None, None)))]
        variants += [Variant(p.name, p.bitrate, p.width, p.height) for p in stream.profiles]
        return self._text(render_master_playlist(stream.id, variants), _PLAYLIST_HEADERS)

    async def _media_playlist(self, request: web.Request) -> web.StreamResponse:
        found = self._window(request)
        if isinstance(found, web.Response):
            return found
        stream, window = found
        text = render_media_playlist(stream.id, request.match_info["rendition"], window.media_sequence,
                                     window.listed(), window.max_duration)
        return self._text(text, _PLAYLIST_HEADERS)

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        found = self._window(request)
        if isinstance(found, web.Response):
            return found
        segment = found[1].get(int(request.match_info["n"]))
        if segment is None:
            return _error(404, "segment: not in the window")
        self.stats.bytes_out += len(segment.data)
        return web.Response(body=segment.data, headers={"Content-Type": "video/mp2t", "Cache-Control": "max-age=60"})

    def _text(self, text: str, headers: dict[str, str]) -> web.Response:
        body = text.encode("utf-8")
        self.stats.bytes_out += len(body)
        return web.Response(body=body, headers=headers)

    async def _get_faults(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.faults.to_json())

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        """{"slow": seconds, "error5xx": bool, "refuseUploads": bool, "die": true}; absent keys unchanged."""
        try:
            doc = await request.json()
        except ValueError:
            return _error(400, "body: not JSON")
        if not isinstance(doc, dict):
            return _error(422, "body: must be a JSON object")
        errors = [f"{key}: unknown field" for key in doc if key not in ("slow", "error5xx", "refuseUploads", "die")]
        slow = doc.get("slow")
        if slow is not None and (isinstance(slow, bool) or not isinstance(slow, (int, float)) or not 0 <= slow <= 600):
            errors.append("slow: must be a number of seconds from 0 to 600")
        for key in ("error5xx", "refuseUploads", "die"):
            if key in doc and not isinstance(doc[key], bool):
                errors.append(f"{key}: must be true or false")
        if errors:
            return _error(422, *errors)
        faults = self.set_faults(slow, doc.get("error5xx"), doc.get("refuseUploads"))
        if doc.get("die"):
            # Answer first, then die: the caller learns its request was taken.
            self._dying = asyncio.create_task(self._die_soon())
        return web.json_response({**faults.to_json(), "die": bool(doc.get("die"))})

    async def _die_soon(self) -> None:
        await asyncio.sleep(0.05)
        await self.die()

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({
            "name": self.name, "url": self.url, "transcoding": self.transcoding,
            "faults": self.faults.to_json(), "stats": asdict(self.stats),
            "streams": {s.id: {name: [seg.number for seg in w.listed()] for name, w in s.windows.items()}
                        for s in self._streams.values()},
        })


def _error(status: int, *errors: str) -> web.Response:
    return web.json_response({"errors": list(errors)}, status=status, headers={"Cache-Control": "no-store"})


def _duration(header: str | None) -> float | None:
    """Content-Duration (milliseconds) in seconds; go-livepeer's default of 2 s when absent."""
    if header is None:
        return 2.0
    try:
        ms = float(header)
    except ValueError:
        return None
    return ms / 1000 if 1 <= ms <= 60_000 else None


def _resolution(header: str | None) -> tuple[int, int] | None:
    match = _RESOLUTION.fullmatch(header.strip()) if header else None
    return (int(match[1]), int(match[2])) if match and int(match[1]) and int(match[2]) else None


# --- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devtools.broadcaster", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="broadcaster name at the edge (a-z, 0-9, '-')")
    p.add_argument("--edge", required=True, help="the edge's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", default=os.environ.get("EDGE_BROADCASTER_TOKEN"),
                   help="broadcaster token (default: $EDGE_BROADCASTER_TOKEN)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--public-url", help="address to register, when not http://HOST:PORT")
    p.add_argument("--region")
    p.add_argument("--latitude", type=float)
    p.add_argument("--longitude", type=float)
    p.add_argument("--capacity", type=int, default=10)
    p.add_argument("--window", type=int, default=6, help="segments per media playlist")
    p.add_argument("--transcode", choices=("auto", "copy", "ffmpeg"), default="auto")
    p.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
    p.add_argument("--idle-timeout", type=float, default=60.0)
    p.add_argument("--log-level", default="info")
    return p


async def _serve(args: argparse.Namespace) -> None:
    broadcaster = ReferenceBroadcaster(
        args.name, args.edge, args.token, args.region, args.latitude, args.longitude,
        host=args.host, port=args.port, window=args.window, transcode=args.transcode,
        heartbeat_interval=args.heartbeat, capacity=args.capacity, idle_timeout=args.idle_timeout,
        public_url=args.public_url,
    )
    await broadcaster.start()
    print(broadcaster.url, flush=True)  # for scripts that started us with --port 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and broadcaster.running:  # a POST /_faults {"die": true} ends us too
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await broadcaster.stop(drain=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.token:
        print("--token (or $EDGE_BROADCASTER_TOKEN) is required", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        asyncio.run(_serve(args))
    except MediaError as exc:
        print(f"broadcaster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
