"""Headless Chromium for the end-to-end tests: devtools.browser's, failing (never skipping) the test
where chromium is not installed, with any DevTools command and screenshots for the operator page's
tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from devtools.browser import Browser as _Browser
from tests.media import require


class Browser(_Browser):
    def __init__(self, profile: Path) -> None:
        super().__init__(profile, require("chromium"))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools protocol command and its result (events meanwhile are let pass)."""
        assert self._ws is not None
        message_id = next(self._ids)
        await self._ws.send_json({"id": message_id, "method": method, "params": params or {}})
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("id") == message_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return dict(data["result"])
        raise RuntimeError("the browser closed the connection")

    async def screenshot(self, path: Path, width: int = 1280, height: int = 1400) -> None:
        """The page as a person sees it, as a PNG at `path`."""
        await self.call("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        shot = await self.call("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
