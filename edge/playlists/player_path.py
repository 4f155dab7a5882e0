"""The player path: players' plain GET and HEAD of a watched stream's playlists answered before
Starlette's middleware and routing, from the responses prepared once per playlist version.

Every player reload of every stream comes here, so it costs what a bare ASGI app costs plus a few
dict lookups: the answer is the one `routes.media`/`routes.master` would build (the same function
builds it), and the request is counted and logged under the same route, by the same `Recorder`.
Anything else (a query such as LL-HLS directives, an unwatched stream, nothing published yet, a
follower that must check the store first) is left to the app.
"""

from __future__ import annotations

import time

from starlette.types import Receive, Scope, Send

from edge.observability import Recorder
from edge.playlists import routes
from edge.playlists.blocking import Directives
from edge.services import Services

_PREFIX = "/stream/"
_SUFFIX = ".m3u8"
_PLAIN = Directives()


class PlayerPath:
    def __init__(self, services: Services, recorder: Recorder) -> None:
        self.services = services
        self.recorder = recorder

    async def answered(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if it is a plain reload known without waiting; whether it did."""
        if (
            scope["type"] != "http"
            or scope["query_string"]
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith(_PREFIX)
            or not scope["path"].endswith(_SUFFIX)
        ):
            return False
        started = time.perf_counter()
        answer, route = self._answer(scope)
        if answer is None:
            return False
        try:
            await answer(scope, receive, send)
        finally:
            self.recorder.record(scope, route, answer.status, time.perf_counter() - started)
        return True

    def _answer(self, scope: Scope) -> tuple[routes.Prepared | None, str]:
        playlists = self.services.playlists
        stream_id, slash, rendition = scope["path"][len(_PREFIX):-len(_SUFFIX)].partition("/")
        if slash:
            rendered = playlists.at_hand(stream_id, rendition)  # only valid names are ever at hand
            if rendered is None:
                return None, ""
            return routes.media_answer(scope, rendered, _PLAIN, self.services), routes.MEDIA.path
        feed = playlists.feeds.get(stream_id)
        if feed is None:
            return None, ""
        return routes.master_answer(scope, feed.stream, self.services), routes.MASTER.path
