"""Headless Chromium driven over the DevTools protocol (a websocket): open a page, evaluate
JavaScript. Used by the end-to-end tests and devtools.live_distance.

Started with the flags this machine needs (no sandbox as root, no GPU, no background networking: the
network beyond loopback is closed) and autoplay allowed, as a muted player would be.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from devtools.processes import MissingBinary, stop_process

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--remote-debugging-port=0",
]


class Browser:
    def __init__(self, profile: Path, binary: str | None = None) -> None:
        found = binary or shutil.which("chromium")
        if found is None:
            raise MissingBinary("chromium is not installed (Debian: apt-get install -y chromium)")
        self.binary = found
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def open(self, url: str) -> None:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", url],
            stdout=subprocess.DEVNULL, stderr=(self.profile / "chromium.log").open("wb"),
        )
        port_file = self.profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {(self.profile / 'chromium.log').read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        for _ in range(100):
            async with self._session.get(f"http://127.0.0.1:{port}/json") as response:
                pages = [t for t in await response.json() if t.get("type") == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of `expression` in the page; with `await_promise`, of the promise it returns."""
        assert self._ws is not None
        message_id = next(self._ids)
        await self._ws.send_json({"id": message_id, "method": "Runtime.evaluate", "params": {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise}})
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("id") == message_id:
                result = data["result"]
                if "exceptionDetails" in result:
                    raise RuntimeError(result["exceptionDetails"])
                return result["result"].get("value")
        raise RuntimeError("the browser closed the connection")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        stop_process(self.proc)
