"""The playlists a node serves: one Feed per watched stream, started by the first player request and
stopped when nobody has asked for a while. The request path is a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging

from edge.tasks import cancel, wait_for_event
from edge.playlists.feed import Feed, FeedContext, Rendered
from edge.store.base import StoreUnavailable
from edge.streams.model import Stream

log = logging.getLogger("edge.playlists")

FIRST_ROUND_GRACE_S = 0.5  # beyond the upstream timeout, for parsing, merging and storing
# How often a node that does not poll a stream reads its stored revision while players' blocking
# reloads wait there. A shared wait rather than Redis pub/sub: it works alike on Redis and on the
# SQLite file shared by workers, costs one small read per stream (not per request) and adds at most
# this much to a blocked answer, well within a segment's duration.
FOLLOW_INTERVAL_S = 0.1


class NotFound(Exception):
    """No such stream or rendition; the message names which."""


class NotYet(Exception):
    """The stream exists but nothing has been published for this rendition yet."""


class CannotTell(Exception):
    """The shared store is unreachable and this node cannot tell whether its playlist is the newest
    one served (another node published it): answering it could take a player back."""


class PlaylistService:
    def __init__(self, ctx: FeedContext, first_round_timeout: float) -> None:
        self.ctx = ctx
        self.first_round_timeout = first_round_timeout + FIRST_ROUND_GRACE_S
        self.feeds: dict[str, Feed] = {}
        self._starting: dict[str, asyncio.Future[Feed]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._followers: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        if self.ctx.fleet is not None:
            await self.ctx.fleet.start()
        self._reaper = asyncio.create_task(self._reap(), name="feed-reaper")

    async def stop(self) -> None:
        await cancel(self._reaper)
        for task in list(self._followers.values()):
            await cancel(task)
        await asyncio.gather(*(feed.stop() for feed in self.feeds.values()), return_exceptions=True)
        self.feeds.clear()
        if self.ctx.fleet is not None:
            await self.ctx.fleet.stop()  # after the feeds: their leases are released first

    def at_hand(self, stream_id: str, rendition: str) -> Rendered | None:
        """What to serve for one rendition when it is known without waiting on anything (the feed
        runs, publishes alone or alone serves the store, and has segments); None otherwise: ask
        `media`. The player path's question, answered by the rules `media` also follows."""
        feed = self.feeds.get(stream_id)
        if feed is None or feed.expired:
            return None
        if self.ctx.store.shared and not feed.publishes_alone:
            # Players alternate between nodes: never answer older than what another node served. At
            # hand only when the stored revision, read without a wait, is the one this node holds
            # (`media` would find the same and serve it).
            revision = self.ctx.store.playlists.revision_now(stream_id)
            if revision is None or revision != feed.revision:
                return None
        rendered = feed.rendered.get(rendition)
        if rendered is None or not rendered.has_segments:
            return None
        feed.last_request = self.ctx.clock()
        feed.ensure_running()
        return rendered

    async def media(self, stream_id: str, rendition: str) -> Rendered:
        """What to serve for one rendition; starts polling the stream if nobody watched it."""
        rendered = self.at_hand(stream_id, rendition)
        if rendered is not None:
            return rendered
        feed = self.feeds.get(stream_id)
        if feed is not None and feed.expired:
            raise NotFound(f"stream {stream_id}: its recording has expired")
        if feed is not None:
            feed.last_request = self.ctx.clock()
            feed.ensure_running()
            if self.ctx.store.shared and not feed.publishes_alone:
                # Players alternate between nodes: never answer older than what another node served.
                try:
                    await feed.sync(await self.ctx.store.playlists.revision(stream_id))
                except StoreUnavailable:
                    # Nobody can publish while the store is down, so the node that was publishing
                    # when it went down holds the newest playlist and keeps serving it; any other
                    # node may be a version behind what a player just got from that one.
                    if not feed.newest_here:
                        raise CannotTell(
                            f"stream {stream_id}: the shared store is unreachable; this node cannot "
                            "tell whether its playlist is the newest, try again shortly"
                        ) from None
            rendered = feed.rendered.get(rendition)
            if rendered is not None and rendered.has_segments:
                return rendered
        else:
            feed = await self._feed(stream_id)
            if feed.expired:
                raise NotFound(f"stream {stream_id}: its recording has expired")
        if rendition not in feed.stream.rendition_names:
            raise NotFound(f"rendition {rendition}: not in stream {stream_id}")
        if not feed.first_round.is_set():
            await wait_for_event(feed.first_round, self.first_round_timeout)
        rendered = feed.rendered.get(rendition)
        if rendered is None or not rendered.has_segments:
            if feed.gone:
                if feed.stream.ended:
                    raise NotFound(f"stream {stream_id}: ended before any {rendition} segment was published")
                raise NotFound(f"stream {stream_id}: not found")
            raise NotYet(f"stream {stream_id}: no {rendition} segments published yet")
        return rendered

    async def next_version(self, stream_id: str, rendition: str, known: Rendered, timeout: float) -> Rendered:
        """What to serve once `rendition` has a version newer than `known`, or after `timeout`
        seconds (then possibly `known` again): the wait of a blocking playlist reload."""
        feed = self.feeds.get(stream_id)
        if feed is not None and feed.rendered.get(rendition) is known:
            future = feed.rendered.next_version(rendition)
            if self.ctx.store.shared and not feed.publishes_alone:
                self._follow(feed)
            if timeout > 0:
                await asyncio.wait((future,), timeout=timeout)
        return await self.media(stream_id, rendition)

    def _follow(self, feed: Feed) -> None:
        """Watch the stored revision for the requests blocked at this node while another node (or
        worker) polls the stream: one small read per FOLLOW_INTERVAL_S per stream, however many
        requests wait, until none does."""
        task = self._followers.get(feed.stream.id)
        if task is not None and not task.done():
            return

        async def follow() -> None:
            while not feed.finished:
                await asyncio.sleep(FOLLOW_INTERVAL_S)
                if not feed.rendered.waiting() or feed.publishes_alone:
                    return
                try:
                    await feed.sync(await self.ctx.store.playlists.revision(feed.stream.id))
                except StoreUnavailable:
                    pass  # the feed logs store outages; the blocked requests end in 503 if it lasts

        def forget(done: asyncio.Task[None]) -> None:
            if self._followers.get(feed.stream.id) is done:
                del self._followers[feed.stream.id]

        self._followers[feed.stream.id] = task = asyncio.create_task(follow(), name=f"follow-{feed.stream.id}")
        task.add_done_callback(forget)

    async def watch(self, stream_id: str) -> Feed:
        """The stream's feed, polling and past its first round (a segment request counts as a
        player's interest, like a playlist request)."""
        feed = self.feeds.get(stream_id) or await self._feed(stream_id)
        feed.last_request = self.ctx.clock()
        feed.ensure_running()
        if not feed.first_round.is_set():
            await wait_for_event(feed.first_round, self.first_round_timeout)
        if self.ctx.store.shared and not feed.publishes_alone:
            try:
                await feed.sync(await self.ctx.store.playlists.revision(stream_id))
            except StoreUnavailable:
                pass
        if feed.gone or feed.expired:
            raise NotFound(f"stream {stream_id}: not found")
        return feed

    async def stream(self, stream_id: str) -> Stream:
        feed = self.feeds.get(stream_id)
        if feed is not None:
            return feed.stream
        stream = await self.ctx.store.streams.get(stream_id)
        if stream is None:
            raise NotFound(f"stream {stream_id}: not found")
        return stream

    async def _feed(self, stream_id: str) -> Feed:
        """The stream's feed, created once even when many first requests arrive together."""
        pending = self._starting.get(stream_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Feed] = asyncio.get_running_loop().create_future()
        self._starting[stream_id] = future
        try:
            stream = await self.ctx.store.streams.get(stream_id)
            if stream is None:
                raise NotFound(f"stream {stream_id}: not found")
            feed = Feed(stream, self.ctx)
            self.feeds[stream_id] = feed
            feed.start()
            future.set_result(feed)
            return feed
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._starting[stream_id]

    def poke(self, stream_id: str) -> None:
        """Refresh the stream's playlists now (it ended, or a broadcaster started carrying it)."""
        feed = self.feeds.get(stream_id)
        if feed is not None:
            feed.poke()

    async def stream_deleted(self, stream_id: str) -> None:
        feed = self.feeds.pop(stream_id, None)
        if feed is not None:
            await feed.stop()
        await self.ctx.store.playlists.delete(stream_id)
        await self.ctx.store.registry.forget_stream(stream_id)
        copier = self.ctx.copier
        if copier is not None:  # its copies (recording included) go with it
            copier.forget(stream_id + "/")
            await copier.store.delete_prefix(stream_id + "/")

    async def _reap(self) -> None:
        """Drop feeds that stopped (idle, deleted); ended ones stay while players still ask."""
        while True:
            await asyncio.sleep(max(1.0, self.ctx.poll_interval))
            for stream_id, feed in list(self.feeds.items()):
                if feed.idle or feed.gone or feed.expired:
                    self.feeds.pop(stream_id, None)
                    await feed.stop()
                if feed.expired and self.ctx.copier is not None:  # its segments go too (every node may)
                    self.ctx.copier.forget(stream_id + "/")
                    await self.ctx.copier.store.delete_prefix(stream_id + "/")
