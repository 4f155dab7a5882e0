"""The edge's HTTP API as its peers call it: create a stream, choose broadcasters, the broadcaster
hook, register/heartbeat and drain. One small client shared by the reference broadcaster and the ingest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

# A rendition name becomes one URL path segment on the broadcaster (as in the edge's stream model).
_RENDITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", re.ASCII)
SOURCE = "source"


class EdgeError(Exception):
    """A call to the edge failed: `status` is the HTTP status, or None when the edge did not answer."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"{status or 'no answer'}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Profile:
    """One rendition to produce, as the edge's hook answers it."""

    name: str
    width: int
    height: int
    bitrate: int
    fps: float

    @classmethod
    def from_json(cls, doc: Any) -> "Profile":
        """Raises ValueError for a profile a broadcaster cannot serve safely."""
        if not isinstance(doc, dict):
            raise ValueError("profile: not an object")
        name = doc.get("name")
        if not isinstance(name, str) or not _RENDITION_NAME.fullmatch(name) or name == SOURCE:
            raise ValueError(f"profile name {name!r}: not usable as a rendition name")
        try:
            width, height, bitrate = int(doc["width"]), int(doc["height"]), int(doc["bitrate"])
            fps = float(doc.get("fps") or 0)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"profile {name}: width, height and bitrate must be numbers") from None
        if width <= 0 or height <= 0 or bitrate <= 0:
            raise ValueError(f"profile {name}: width, height and bitrate must be positive")
        return cls(name, width, height, bitrate, fps)


@dataclass(frozen=True, slots=True)
class HookAnswer:
    manifest_id: str
    profiles: tuple[Profile, ...]
    skipped: tuple[str, ...] = ()  # why each profile the broadcaster cannot serve was left out


class EdgeApi:
    """Calls to one edge over a caller-owned aiohttp session; every call raises EdgeError on failure."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def create_stream(
        self, api_key: str, name: str, presets: tuple[str, ...] = (), profiles: tuple[dict[str, Any], ...] = ()
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if presets:
            body["presets"] = list(presets)
        if profiles:
            body["profiles"] = list(profiles)
        doc = await self._call("POST", "/api/stream", api_key, body)
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise EdgeError(None, "POST /api/stream: answer without a stream id")
        return doc

    async def end_stream(self, api_key: str, stream_id: str) -> None:
        await self._call("POST", f"/api/stream/{stream_id}/end", api_key)

    async def choose_broadcasters(self, api_key: str, stream_id: str | None = None) -> list[str]:
        """Livepeer's GET /api/broadcaster: the addresses, best first."""
        path = "/api/broadcaster" + (f"?streamId={stream_id}" if stream_id else "")
        doc = await self._call("GET", path, api_key)
        if not isinstance(doc, list):
            raise EdgeError(None, "GET /api/broadcaster: answer is not a list")
        return [item["address"].rstrip("/") for item in doc
                if isinstance(item, dict) and isinstance(item.get("address"), str)]

    async def hook(self, token: str, ingest_url: str) -> HookAnswer:
        """go-livepeer's auth webhook: may this ingest go on, and with which profiles?"""
        doc = await self._call("POST", "/api/stream/hook", token, {"url": ingest_url})
        if not isinstance(doc, dict) or not isinstance(doc.get("profiles", []), list):
            raise EdgeError(None, "POST /api/stream/hook: answer without a profiles list")
        profiles: list[Profile] = []
        skipped: list[str] = []
        for item in doc.get("profiles", []):
            try:
                profile = Profile.from_json(item)
            except ValueError as exc:
                skipped.append(str(exc))
                continue
            if any(p.name == profile.name for p in profiles):
                skipped.append(f"profile {profile.name}: listed twice")
                continue
            profiles.append(profile)
        return HookAnswer(str(doc.get("manifestId", "")), tuple(profiles), tuple(skipped))

    async def put_broadcaster(self, token: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Register or heartbeat; the edge's view of the broadcaster (its "state", "health", ...)."""
        doc = await self._call("PUT", f"/api/broadcasters/{name}", token, body)
        return doc if isinstance(doc, dict) else {}

    async def drain_broadcaster(self, token: str, name: str) -> None:
        await self._call("DELETE", f"/api/broadcasters/{name}", token)

    async def _call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._session.request(
                method, self.base_url + path, json=body, headers=headers, timeout=self._timeout
            ) as response:
                text = await response.text(errors="replace")
                if not 200 <= response.status < 300:
                    raise EdgeError(response.status, f"{method} {path}: {_errors(text)}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EdgeError(None, f"{method} {path}: {type(exc).__name__} {exc}") from None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise EdgeError(response.status, f"{method} {path}: answer is not JSON") from None


def _errors(text: str) -> str:
    """The edge's `{"errors": [...]}` as one line, or the start of whatever else it said."""
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
            return "; ".join(str(e) for e in doc["errors"])
    except ValueError:
        pass
    return text[:200]
