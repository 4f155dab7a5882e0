"""An ingest client: LivepeerWowza's loop in Python, for development, tests and the demo.

It creates a stream at the edge, asks the edge for broadcasters, cuts its input (a file or an ffmpeg
test pattern) into MPEG-TS segments at real time and PUTs segment n to `<broadcaster>/live/<id>/<n>.ts`.
When an upload fails it asks the edge again and sends the same segment to another broadcaster.

    python -m devtools.ingest --edge http://127.0.0.1:8080 --api-key KEY --test-pattern --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import aiohttp

from devtools.edge_api import EdgeApi, EdgeError
from devtools.media import CutSegment, LiveCutter, MediaError, TestPattern, probe

# How long a broadcaster that failed an upload is passed over while others are offered: about the
# edge's heartbeat TTL, after which the edge itself stops offering a dead one.
AVOID_SECONDS = 30.0

EventKind = Literal["stream", "sent", "failed", "switch", "dropped", "edge_unavailable", "finished"]


@dataclass(frozen=True, slots=True)
class IngestEvent:
    kind: EventKind
    at: float  # time.monotonic()
    segment: int | None = None
    broadcaster: str | None = None
    detail: str = ""


@dataclass
class IngestStats:
    cut: int = 0  # segments ffmpeg finished
    sent: int = 0  # segments a broadcaster accepted
    failures: int = 0  # failed upload attempts (a segment may fail more than once)
    switches: int = 0  # changes of broadcaster, for a failure or a rotation
    dropped: int = 0  # segments no broadcaster took
    current: str | None = None  # the broadcaster uploads go to


@dataclass
class _Upload:
    ok: bool
    detail: str


class Ingest:
    """One live ingest. `await start()` creates the stream (unless `stream_id` is given) and begins;
    `await wait()` returns when the input ends; `await stop()` ends it early. `run()` does all three.

    Tests and the demo read `stats`, `events` and `sent` (segment number -> broadcaster address).
    """

    def __init__(
        self,
        edge_url: str,
        api_key: str,
        *,
        input: str | Path | None = None,
        pattern: TestPattern | None = None,
        presets: tuple[str, ...] = ("P360p30fps16x9",),
        profiles: tuple[dict[str, Any], ...] = (),
        name: str = "devtools-ingest",
        stream_id: str | None = None,
        segment_seconds: float = 2.0,
        duration: float | None = None,
        loop: bool = False,
        switch_every: int | None = None,
        upload_timeout: float | None = None,
        max_attempts: int = 4,
        end_stream: bool = False,
        progress: TextIO | None = None,
        on_event: Callable[[IngestEvent], None] | None = None,
    ) -> None:
        if input is not None and pattern is not None:
            raise ValueError("input and pattern: give one, not both")
        self.edge_url = edge_url.rstrip("/")
        self.source: Path | TestPattern = Path(input) if input is not None else (pattern or TestPattern())
        self.presets = presets
        self.profiles = profiles
        self.name = name
        self.stream_id = stream_id
        self.stream: dict[str, Any] | None = None  # the edge's answer to POST /api/stream
        self.segment_seconds = segment_seconds
        self.duration = duration
        self.loop = loop
        self.switch_every = switch_every
        self.upload_timeout = upload_timeout or max(4.0, 2.5 * segment_seconds)
        self.max_attempts = max_attempts
        self.end_stream = end_stream
        self.stats = IngestStats()
        self.events: list[IngestEvent] = []
        self.sent: dict[int, str] = {}
        self._api_key = api_key
        self._progress = progress
        self._on_event = on_event
        self._session: aiohttp.ClientSession | None = None
        self._edge: EdgeApi | None = None
        self._cutter: LiveCutter | None = None
        self._task: asyncio.Task[None] | None = None
        self._known: list[str] = []  # the edge's last answer, for when it does not answer
        self._edge_down = False
        self._avoid: dict[str, float] = {}  # broadcaster -> monotonic time until which it is avoided
        self._on_current = 0  # segments sent to the current broadcaster since the last switch
        self._resolution: str | None = None

    # --- life -------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Create the stream and start cutting and uploading; returns the stream id."""
        self._session = aiohttp.ClientSession()
        self._edge = EdgeApi(self.edge_url, self._session)
        try:
            if self.stream_id is None:
                self.stream = await self._edge.create_stream(self._api_key, self.name, self.presets, self.profiles)
                self.stream_id = self.stream["id"]
            self._resolution = await self._source_resolution()
        except BaseException:
            await self._close()
            raise
        self._event("stream", detail=f"{self.edge_url}/stream/{self.stream_id}.m3u8")
        self._task = asyncio.create_task(self._run(), name=f"ingest-{self.stream_id}")
        return self.stream_id

    async def wait(self) -> IngestStats:
        """Until the input ends (or stop()); raises what stopped the ingest, if it failed."""
        assert self._task is not None, "start() first"
        try:
            await asyncio.shield(self._task)
        finally:
            if self._task.done():
                await self._close()
        return self.stats

    async def stop(self) -> IngestStats:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()
        return self.stats

    async def run(self) -> IngestStats:
        await self.start()
        try:
            return await self.wait()
        finally:
            await self.stop()

    async def _close(self) -> None:
        if self._cutter is not None:
            await self._cutter.close()
            self._cutter = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _source_resolution(self) -> str:
        if isinstance(self.source, TestPattern):
            return f"{self.source.width}x{self.source.height}"
        info = await probe(self.source)
        return f"{info.width}x{info.height}"

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Cut and upload side by side: a slow upload must not hold up the real-time cutting."""
        queue: asyncio.Queue[CutSegment | None] = asyncio.Queue()
        self._cutter = LiveCutter(self.source, self.segment_seconds, self.duration, self.loop)
        cutting = asyncio.create_task(self._cut(self._cutter, queue))
        try:
            while (segment := await queue.get()) is not None:
                try:
                    data = segment.path.read_bytes()
                finally:
                    segment.path.unlink(missing_ok=True)
                await self._deliver(segment.index, data, segment.duration)
            await cutting  # raises what stopped ffmpeg, if anything
            if self.end_stream and self._edge is not None and self.stream_id is not None:
                with contextlib.suppress(EdgeError):
                    await self._edge.end_stream(self._api_key, self.stream_id)
            self._event("finished", detail="input ended")
        finally:
            cutting.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaError):
                await cutting
            if self._progress is not None and self._progress.isatty():
                print(file=self._progress)

    async def _cut(self, cutter: LiveCutter, queue: asyncio.Queue[CutSegment | None]) -> None:
        try:
            async with contextlib.aclosing(cutter.segments()) as segments:
                async for segment in segments:
                    self.stats.cut += 1
                    queue.put_nowait(segment)
        finally:
            queue.put_nowait(None)

    async def _deliver(self, number: int, data: bytes, duration: float) -> bool:
        """Send one segment, moving to another broadcaster on failure; False when none took it."""
        if self.switch_every and self.stats.current and self._on_current >= self.switch_every:
            await self._rotate()
        tried: set[str] = set()
        deadline = time.monotonic() + max(2 * self.segment_seconds, 2.0)  # to wait for any broadcaster
        while len(tried) < self.max_attempts:
            target = self.stats.current if self.stats.current not in tried else None
            if target is None:
                target = await self._choose(exclude=tried)
            if target is None:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
                continue
            result = await self._put(target, number, data, duration)
            if result.ok:
                self._use(target, "failover" if tried else "first")
                self.sent[number] = target
                self.stats.sent += 1
                self._on_current += 1
                self._event("sent", number, target)
                return True
            tried.add(target)
            self.stats.failures += 1
            self._avoid[target] = time.monotonic() + AVOID_SECONDS
            self._event("failed", number, target, result.detail)
        self.stats.dropped += 1
        self._event("dropped", number, detail=f"tried {', '.join(sorted(tried)) or 'no broadcaster'}")
        return False

    async def _rotate(self) -> None:
        """--switch-every: move to the best broadcaster other than the current one, if there is one."""
        current = self.stats.current
        target = await self._choose(exclude={current} if current else set())
        if target is not None and self._avoid.get(target, 0) <= time.monotonic():
            self._use(target, "rotation")

    def _use(self, target: str, why: str) -> None:
        if target == self.stats.current:
            return
        previous = self.stats.current
        self.stats.current = target
        self._on_current = 0
        if previous is not None:
            self.stats.switches += 1
            self._event("switch", broadcaster=target, detail=f"{why}: from {previous}")

    async def _choose(self, exclude: set[str]) -> str | None:
        """The edge's best broadcaster not in `exclude`, preferring ones that did not fail lately."""
        assert self._edge is not None and self.stream_id is not None
        try:
            self._known = await self._edge.choose_broadcasters(self._api_key, self.stream_id)
            self._edge_down = False
        except EdgeError as exc:  # go on with its last answer
            if not self._edge_down:
                self._event("edge_unavailable", broadcaster=self.edge_url, detail=f"GET /api/broadcaster: {exc}")
            self._edge_down = True
        now = time.monotonic()
        candidates = [a for a in self._known if a not in exclude]
        fresh = [a for a in candidates if self._avoid.get(a, 0) <= now]
        return (fresh or candidates or [None])[0]

    async def _put(self, broadcaster: str, number: int, data: bytes, duration: float) -> _Upload:
        assert self._session is not None
        url = f"{broadcaster}/live/{self.stream_id}/{number}.ts"
        headers = {"Content-Duration": str(round(duration * 1000)), "Content-Type": "video/mp2t"}
        if self._resolution:
            headers["Content-Resolution"] = self._resolution
        try:
            async with self._session.put(url, data=data, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=self.upload_timeout)) as response:
                body = await response.text(errors="replace")
                if 200 <= response.status < 300:
                    return _Upload(True, "")
                return _Upload(False, f"{response.status} {body[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Upload(False, f"{type(exc).__name__} {exc}".strip())

    # --- progress ---------------------------------------------------------------------------------

    def _event(self, kind: EventKind, segment: int | None = None, broadcaster: str | None = None,
               detail: str = "") -> None:
        event = IngestEvent(kind, time.monotonic(), segment, broadcaster, detail)
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)
        if self._progress is not None:
            self._show(event)

    def _show(self, event: IngestEvent) -> None:
        out = self._progress
        assert out is not None
        tty = out.isatty()
        s = self.stats
        status = (f"ingest {self.stream_id}: sent {s.sent}/{s.cut} to {s.current or '-'}"
                  f" | switches {s.switches} | failures {s.failures} | dropped {s.dropped}")
        if event.kind == "sent":
            if tty:
                out.write("\r\033[K" + status)
            elif event.segment is not None and event.segment % 10 == 0:
                out.write(status + "\n")
        else:
            what = {"stream": "playback", "failed": "upload failed", "switch": "switched to",
                    "dropped": "dropped", "edge_unavailable": "edge unavailable, using its last answer",
                    "finished": "finished"}[event.kind]
            segment = f" segment {event.segment}" if event.segment is not None else ""
            target = f" {event.broadcaster}" if event.broadcaster else ""
            detail = f": {event.detail}" if event.detail else ""
            out.write(("\r\033[K" if tty else "") + f"ingest: {what}{segment}{target}{detail}\n")
            if tty:
                out.write(status)
        out.flush()


# --- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devtools.ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--edge", required=True, help="the edge's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", default=os.environ.get("EDGE_API_KEY"), help="API key (default: $EDGE_API_KEY)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, help="a media file to send (re-encoded to H.264/AAC)")
    source.add_argument("--test-pattern", action="store_true", help="ffmpeg's test pattern (the default)")
    p.add_argument("--loop", action="store_true", help="loop --input")
    p.add_argument("--size", default="1280x720", help="test pattern size, WxH")
    p.add_argument("--fps", type=int, default=30, help="test pattern frame rate")
    p.add_argument("--presets", nargs="+", default=["P360p30fps16x9"], metavar="PRESET")
    p.add_argument("--name", default="devtools-ingest", help="stream name")
    p.add_argument("--stream-id", help="push to this existing stream instead of creating one")
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--duration", type=float, help="seconds to send (default: until the input ends or Ctrl-C)")
    p.add_argument("--switch-every", type=int, metavar="N", help="move to another broadcaster every N segments")
    p.add_argument("--end-stream", action="store_true", help="end the stream at the edge when the input ends")
    return p


async def _main(args: argparse.Namespace) -> int:
    # Ctrl-C and SIGTERM both end the ingest cleanly (ffmpeg stopped, temp files removed), even when
    # a shell started us in the background with SIGINT ignored.
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    width, _, height = args.size.partition("x")
    ingest = Ingest(
        args.edge, args.api_key,
        input=args.input, pattern=None if args.input else TestPattern(int(width), int(height), args.fps),
        presets=tuple(args.presets), name=args.name, stream_id=args.stream_id,
        segment_seconds=args.segment_seconds, duration=args.duration, loop=args.loop,
        switch_every=args.switch_every, end_stream=args.end_stream, progress=sys.stderr,
    )
    try:
        stats = await ingest.run()
    except asyncio.CancelledError:
        print("\ningest: stopped", file=sys.stderr)
        return 130
    return 0 if stats.sent else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.api_key:
        print("--api-key (or $EDGE_API_KEY) is required", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except (EdgeError, MediaError) as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
