"""The bytes of a `GET /api/broadcaster` answer, each broadcaster's part serialized once."""

from __future__ import annotations

from collections.abc import Sequence

from broadcaster_registry.model import Broadcaster
from jsonfields.text import dumps_utf8

# GET /api/broadcaster answers the best few, not the whole fleet: an ingest uses the first and, when
# uploads fail, skips the ones that failed it (10 leave it room), and with a thousand nodes the whole
# list would be ~60 KB per ingest and cost scoring every node.
MAX_ANSWER = 10
_PIECES_MAX = 65536


class AnswerPieces:
    """Each broadcaster's part of the answer, serialized once per (address, name, region)."""

    def __init__(self) -> None:
        self._pieces: dict[tuple[str, str, str | None], bytes] = {}

    def body(self, chosen: Sequence[Broadcaster]) -> bytes:
        """`[{"address": ..., "name": ..., "region": ...}, ...]` as compact JSON."""
        pieces = self._pieces
        parts = []
        for b in chosen:
            key = (b.address, b.name, b.region)
            piece = pieces.get(key)
            if piece is None:
                if len(pieces) >= _PIECES_MAX:  # names and addresses come and go: start over
                    pieces.clear()
                piece = pieces[key] = dumps_utf8({"address": b.address, "name": b.name, "region": b.region})
            parts.append(piece)
        return b"[" + b",".join(parts) + b"]"
