"""The stored form of a PublishedState (SQLite row or Redis value): compact JSON with a format
number, so that the stores need not know the state's fields. A node reads the previous format too,
so that nodes of two versions can share a store during a rolling upgrade.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from edge.playlists.merge import MergeCounts, PublishedSegment, PublishedState, RestartWatch

FORMAT = 2  # bump on any change of layout, and keep reading the one before
READABLE = (1, 2)  # 1: before substitutes (no 7th segment column, 4 counts)


def dump_state(state: PublishedState) -> bytes:
    document = {
        "format": FORMAT,
        "target_duration": state.target_duration,
        "media_sequence": state.media_sequence,
        "discontinuity_sequence": state.discontinuity_sequence,
        "next_number": state.next_number,
        "waiting_since": state.waiting_since,
        "restart_watch": (
            None
            if state.restart_watch is None
            else [
                state.restart_watch.since,
                state.restart_watch.origin,
                state.restart_watch.start,
                state.restart_watch.top,
            ]
        ),
        "stale_numbers": None if state.stale_numbers is None else list(state.stale_numbers),
        "ended": state.ended,
        "version": state.version,
        "counts": [
            state.counts.holes_passed,
            state.counts.numbers_skipped,
            state.counts.too_long_skipped,
            state.counts.restarts,
            state.counts.substituted,
        ],
        # One positional row per segment: a 3,600-segment window stays a few hundred kB.
        # The MSN is not stored: it is media_sequence + index by construction.
        "segments": [
            [
                s.number,
                s.uri,
                s.duration,
                s.discontinuity,
                None if s.program_date_time is None else s.program_date_time.isoformat(),
                s.broadcaster,
                s.substitute,
            ]
            for s in state.segments
        ],
    }
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def load_state(data: bytes | str) -> PublishedState:
    """The state `dump_state` wrote. Raises ValueError on anything else: a stored state that cannot
    be read must be noticed, not silently restarted (that would renumber the playlist)."""
    try:
        document: dict[str, Any] = json.loads(data)
        if not isinstance(document, dict) or document.get("format") not in READABLE:
            raise ValueError(f"not a playlist state of format {' or '.join(map(str, READABLE))}")
        media_sequence = int(document["media_sequence"])
        watch = document["restart_watch"]
        stale = document["stale_numbers"]
        holes, skipped, too_long, restarts, *rest = document["counts"]
        substituted = int(rest[0]) if rest else 0
        return PublishedState(
            target_duration=int(document["target_duration"]),
            media_sequence=media_sequence,
            discontinuity_sequence=int(document["discontinuity_sequence"]),
            segments=tuple(
                PublishedSegment(
                    msn=media_sequence + index,
                    number=int(number),
                    uri=str(uri),
                    duration=float(duration),
                    discontinuity=bool(discontinuity),
                    program_date_time=None if date is None else datetime.fromisoformat(date),
                    broadcaster=str(broadcaster),
                    substitute=None if not substitute or substitute[0] is None else str(substitute[0]),
                )
                for index, (number, uri, duration, discontinuity, date, broadcaster, *substitute) in enumerate(
                    document["segments"]
                )
            ),
            next_number=None if document["next_number"] is None else int(document["next_number"]),
            waiting_since=(
                None if document["waiting_since"] is None else float(document["waiting_since"])
            ),
            # Soft state: a watch of another shape (an older layout) is dropped, which at worst
            # delays noticing an ingest restart by a few seconds.
            restart_watch=(
                RestartWatch(
                    since=float(watch[0]), origin=str(watch[1]), start=int(watch[2]), top=int(watch[3])
                )
                if isinstance(watch, list) and len(watch) == 4
                else None
            ),
            stale_numbers=None if stale is None else (int(stale[0]), int(stale[1])),
            ended=bool(document["ended"]),
            version=int(document["version"]),
            counts=MergeCounts(
                holes_passed=int(holes),
                numbers_skipped=int(skipped),
                too_long_skipped=int(too_long),
                restarts=int(restarts),
                substituted=substituted,
            ),
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ValueError(f"unreadable playlist state: {error}") from error
