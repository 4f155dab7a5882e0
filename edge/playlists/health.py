"""`GET /api/stream/{id}/health`: what the edge is doing to a stream, as data, for operators.

Per rendition the published window (with the broadcaster each segment came from, holes and
discontinuities), this node's timeline of the last minutes (edge.playlists.history) with the lag
between a number being listed upstream and published; the carriers with their last fetch
(edge.fetch_history); the segment mode and the lease holder. Computed on request from what the node
holds: the feed's states when it watches the stream, the stored ones otherwise (then no timeline).
"""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broadcaster_registry.storage import RegistryUnavailable
from edge.auth import Role
from edge.errors import ApiError, api_json
from edge.query import refuse_unknown_query
from edge.playlists.codec import load_state
from edge.playlists.feed import Feed, lease_key
from edge.playlists.history import Entry, Event, entries_for
from edge.playlists.merge import PublishedState
from edge.services import Services, services
from edge.store import StoreUnavailable
from edge.streams.model import Stream
from edge.streams.paths import StreamIdConvertor  # noqa: F401  registers {id:stream_id}


MAX_WINDOW_SHOWN = 1024  # the newest segments of the published window in the answer


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "msn": entry.msn, "number": entry.number, "duration": entry.duration, "uri": entry.uri,
        "broadcaster": entry.broadcaster, "discontinuity": entry.discontinuity, "substitute": entry.substitute,
        "hole": entry.skipped_before, "restart": entry.restart, "duplicate": entry.copies > 1,
        "copies": entry.copies, "publishedAt": entry.published_at, "listedAt": entry.listed_at,
        "lagSeconds": None if entry.lag is None else round(entry.lag, 3),
    }


def event_json(event: Event) -> dict[str, Any]:
    return {"at": event.at, "kind": event.kind, "rendition": event.rendition, "number": event.number,
            "broadcaster": event.broadcaster}


def lag_summary(entries: list[Entry]) -> dict[str, Any]:
    lags = [e.lag for e in entries if e.lag is not None]
    if not lags:
        return {"count": 0, "lastSeconds": None, "meanSeconds": None, "maxSeconds": None}
    return {"count": len(lags), "lastSeconds": round(lags[-1], 3), "meanSeconds": round(sum(lags) / len(lags), 3),
            "maxSeconds": round(max(lags), 3)}


def rendition_json(name: str, state: PublishedState | None, timeline: list[Entry], changed_at: float | None,
                   now: float) -> dict[str, Any]:
    """One rendition: its window (holes marked from the numbers), its timeline, its freshness."""
    if state is None:
        return {"name": name, "published": False, "window": [], "timeline": [], "lag": lag_summary([]),
                "secondsSinceNewSegment": None}
    shown = state.segments[-MAX_WINDOW_SHOWN:]  # a recording's window can hold hours
    previous = state.segments[-len(shown) - 1] if len(state.segments) > len(shown) else None
    window = entries_for(previous, shown, None, {}, {})
    published = [e.published_at for e in timeline if e.published_at is not None]
    newest = max(published, default=changed_at)
    return {
        "name": name,
        "published": bool(state.segments),
        "targetDuration": state.target_duration,
        "mediaSequence": state.media_sequence,
        "discontinuitySequence": state.discontinuity_sequence,
        "nextNumber": state.next_number,
        "ended": state.ended,
        "version": state.version,
        "holesPassed": state.counts.holes_passed,
        "restarts": state.counts.restarts,
        "windowSegments": len(state.segments),
        "window": [entry_json(e) for e in window],
        "timeline": [entry_json(e) for e in timeline],
        "lag": lag_summary(timeline),
        "secondsSinceNewSegment": None if newest is None else round(max(0.0, now - newest), 3),
    }


async def _states(svc: Services, stream: Stream, feed: Feed | None) -> Mapping[str, PublishedState]:
    if feed is not None:
        if svc.store.shared and not feed.publishes_alone:
            try:
                await feed.sync(await svc.store.playlists.revision(stream.id))
            except StoreUnavailable:
                pass  # what this node holds is still worth showing
        return feed.states
    stored = await svc.store.playlists.load(stream.id)
    states = {}
    for rendition, blob in stored.states.items():
        try:
            states[rendition] = load_state(blob)
        except ValueError:
            continue  # the feed logs and replaces it when it runs
    return states


async def stream_health(request: Request) -> Response:
    svc = services(request)
    svc.credentials.require(request, Role.ADMIN, Role.API)
    refuse_unknown_query(request, ())
    stream_id = request.path_params["id"]
    feed = svc.playlists.feeds.get(stream_id)
    stream = feed.stream if feed is not None else await svc.store.streams.get(stream_id)
    if stream is None:
        raise ApiError(404, f"stream {stream_id}: not found")
    now = svc.clock()
    states = await _states(svc, stream, feed)
    try:
        holder = await svc.store.leases.holder(lease_key(stream_id))
    except StoreUnavailable:
        holder = None
    try:
        carriers = await svc.store.registry.carrying(stream_id)
    except RegistryUnavailable:  # the stream's facts are still worth showing
        carriers = []
    history = svc.fetch_history
    answered = feed.answered if feed is not None else {}
    renditions = []
    for name in stream.rendition_names:
        rendered = feed.rendered.get(name) if feed is not None else None
        renditions.append(rendition_json(
            name, states.get(name), feed.history.timeline(name, now) if feed is not None else [],
            rendered.changed_at if rendered is not None else None, now,
        ))
    mode = feed.segment_mode.value if feed is not None else (stream.segment_mode or svc.settings.segment_mode)
    return api_json({
        "stream": stream.id,
        "name": stream.name,
        "ended": stream.ended,
        "node": svc.node_id,
        "at": now,
        "watched": feed is not None,  # this node polls or follows it: the timeline is this node's
        "leaseHolder": holder,
        "leaseHeldHere": holder is not None and holder == svc.node_id,
        "segmentMode": mode,
        "historySeconds": feed.history.horizon if feed is not None else 0,
        "renditions": renditions,
        "carriers": [{
            "name": b.name, "address": b.address, "region": b.region,
            "answeredLastRound": answered.get(b.name),
            **(history.to_json(b.name, now) if history is not None else {"lastFetch": None, "buckets": []}),
        } for b in carriers],
        "events": [event_json(e) for e in feed.history.recent_events(now)] if feed is not None else [],
    })


ROUTES = [Route("/api/stream/{id:stream_id}/health", stream_health, methods=["GET"])]
