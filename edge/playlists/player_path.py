"""The player path: players' plain GET and HEAD of a watched stream's playlists answered before
Starlette's middleware and routing (edge.app.Door), from the responses prepared once per playlist
version.

Every player reload of every stream comes here, so it costs a few dict lookups: the answer is the
one `routes.media`/`routes.master` would build (the same function builds it), and the request is
counted and logged under the same route, by the same `Recorder`.
Anything else (a query such as LL-HLS directives, an unwatched stream, nothing published yet, a
follower that must check the store first) is left to the app.
"""

from __future__ import annotations

from starlette.types import Scope

from edge.playlists import routes
from edge.playlists.blocking import Directives
from edge.playlists.feed import Rendered
from edge.services import Services

_PREFIX = "/stream/"
_SUFFIX = ".m3u8"
_PLAIN = Directives()
_KEPT = 4096  # (stream, rendition) pairs whose current answers are kept at hand


class PlayerPath:
    def __init__(self, services: Services) -> None:
        self.services = services
        # path -> (the version served, its answers): a hit is one identity check, not a weak lookup
        self._media: dict[str, tuple[Rendered, routes.Variants]] = {}

    def ready(self, scope: Scope) -> tuple[routes.Prepared, str] | None:
        """The answer if this is a plain reload known without waiting, and its route."""
        if scope["query_string"]:
            return None
        path = scope["path"]
        method = scope["method"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)) or (method != "GET" and method != "HEAD"):
            return None
        svc = self.services
        stream_id, slash, rendition = path[len(_PREFIX):-len(_SUFFIX)].partition("/")
        if slash:
            rendered = svc.playlists.at_hand(stream_id, rendition)  # only valid names are ever at hand
            if rendered is None:
                return None
            kept = self._media.get(path)
            if kept is not None and kept[0] is rendered:
                variants = kept[1]
            else:
                variants = routes.media_variants(rendered, _PLAIN, svc)
                if len(self._media) >= _KEPT:
                    self._media.clear()
                self._media[path] = (rendered, variants)
            return routes.media_answer(scope, rendered, _PLAIN, svc, variants), _MEDIA
        feed = svc.playlists.feeds.get(stream_id)
        if feed is None:
            return None
        return routes.master_answer(scope, feed.stream, svc), _MASTER


_MEDIA = routes.MEDIA.path
_MASTER = routes.MASTER.path
