"""Serving the operator and player pages, their scripts, and hls.js from the npm install.

The pages are static: the operator page reads the admin API with a token the operator gives it (kept
in the browser's session storage, never in a URL the server sees), the player page reads only the
public playlists. hls.js is served from node_modules, installed by install.sh; nothing is loaded from
a CDN at run time.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from edge.streams.model import is_stream_id

STATIC = Path(__file__).resolve().parent.parent / "static"
HLS_JS_IN_NODE_MODULES = Path("node_modules") / "hls.js" / "dist" / "hls.min.js"


def _find_hls_js() -> Path | None:
    """hls.js from `npm ci`: beside the source tree (a clone), or in the working directory (an image)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / HLS_JS_IN_NODE_MODULES).is_file():
            return root / HLS_JS_IN_NODE_MODULES
    return None
ASSETS = {"operator.js": "text/javascript", "player.js": "text/javascript", "docs.js": "text/javascript",
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
    if name == "hls.min.js":
        hls_js = _find_hls_js()
        if hls_js is None:
            return Response("hls.js is not installed: run ./install.sh (it runs npm ci)\n", status_code=404,
                            media_type="text/plain")
        return FileResponse(hls_js, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})
    if name not in ASSETS:
        return Response("not found\n", status_code=404, media_type="text/plain")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


ROUTES = [
    Route("/", operator, methods=["GET"]),
    Route("/play/{id}", player, methods=["GET"]),
    Route("/static/{name}", asset, methods=["GET"]),
]
