"""Serving the operator and player pages, their scripts, and hls.js from the npm install.

The pages are static: the operator page reads the admin API with a token the operator gives it (kept
in the browser's session storage, never in a URL the server sees), the player page reads only the
public playlists. hls.js, and the operator map's world outline and its decoder, are served from
node_modules, installed by install.sh; nothing is loaded from a CDN or tile server at run time.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from edge.streams.model import is_stream_id

STATIC = Path(__file__).resolve().parent.parent / "static"
# Files of npm packages the pages use (package.json), served under /static/<name>: hls.js for the
# players, a world outline and its decoder for the operator page's map.
VENDORED = {
    "hls.min.js": (Path("hls.js") / "dist" / "hls.min.js", "text/javascript"),
    "topojson-client.min.js": (Path("topojson-client") / "dist" / "topojson-client.min.js", "text/javascript"),
    "land-110m.json": (Path("world-atlas") / "land-110m.json", "application/json"),
}


def _find_vendored(relative: Path) -> Path | None:
    """A file from `npm ci`: beside the source tree (a clone), or in the working directory (an image)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "node_modules" / relative).is_file():
            return root / "node_modules" / relative
    return None
ASSETS = {"operator.js": "text/javascript", "player.js": "text/javascript", "docs.js": "text/javascript",
          "timeline.js": "text/javascript", "fleetmap.js": "text/javascript", "sparkline.js": "text/javascript",
          "style.css": "text/css"}
SECURITY_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Scripts and styles only from this origin; media and playlists from anywhere (the broadcasters).
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob: http: https:; "
    "connect-src 'self' http: https:; worker-src 'self' blob:; img-src 'self' data:",
}


def page(name: str) -> Response:
    return HTMLResponse((STATIC / name).read_bytes(), headers=SECURITY_HEADERS)


async def operator(request: Request) -> Response:
    return page("operator.html")


async def player(request: Request) -> Response:
    if not is_stream_id(request.path_params["id"]):
        return HTMLResponse("<h1>No such stream</h1>", status_code=404, headers=SECURITY_HEADERS)
    return page("player.html")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name in VENDORED:
        relative, media_type = VENDORED[name]
        found = _find_vendored(relative)
        if found is None:
            return Response(f"{relative.parts[0]} is not installed: run ./install.sh (it runs npm ci)\n",
                            status_code=404, media_type="text/plain")
        return FileResponse(found, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
    if name not in ASSETS:
        return Response("not found\n", status_code=404, media_type="text/plain")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


ROUTES = [
    Route("/", operator, methods=["GET"]),
    Route("/play/{id}", player, methods=["GET"]),
    Route("/static/{name}", asset, methods=["GET"]),
]
