"""The published state of a stream's merged live playlists (one per rendition), and the pure step
that advances all of them together from the broadcasters' playlists as fetched, keeping the HLS
reload rules (RFC 8216 §6.2) and keeping the renditions aligned (§6.2.4).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping, Sequence

from edge.playlists.upstream_parse import UpstreamPlaylist, UpstreamSegment

# How the state moves between two calls, and why each rule holds:
# - Segments are only appended (in ingest-number order, from `next_number` up) and trimmed from
#   the front, so an MSN (media_sequence + index) keeps its segment, hence its URI, forever.
# - `next_number` only grows, except when a new ingest epoch starts (ingest restart); the epoch's
#   first segment then carries a DISCONTINUITY, like a passed hole.
# - A number's copy is chosen by broadcaster preference when it is published and stored with it:
#   what is published is never re-chosen.
# - Every ingest number is decided once for the whole stream: it is published in every rendition
#   at the same MSN, or in none. A rendition without its own copy shows another rendition's copy of
#   the same number (a substitute: same media, other encoding), set off by EXT-X-DISCONTINUITY in
#   every rendition, so that MSNs and discontinuity numbers agree across renditions (§6.2.4).


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How patient and how long a merged playlist is. One per deployment, from settings."""

    window_seconds: float = 24.0  # content kept; never less than 3 x target duration (§6.2.2)
    # How long to wait for a number no rendition has while later ones exist before passing it. The
    # playlist does not grow meanwhile, and the wait only starts once a later number is listed (a
    # segment after the missing one was due): players holding back 3 target durations run dry past
    # about half a target duration of it.
    hole_wait_seconds: float = 2.0
    # How long to wait for a number some renditions have and others lack (transcodes lag the
    # source) before standing in for it there; None: as long as for a hole. Every rendition waits
    # together, from when the first one listed it.
    rendition_wait_seconds: float | None = None
    max_target_duration: int = 20
    # An ingest restart is only recognised from numbers this far below `next_number`: nearer ones
    # are late arrivals of passed numbers or the old epoch's tail still listed upstream.
    restart_margin: int = 12
    max_window_segments: int = 10_000  # a memory bound for absurdly short segments

    @property
    def rendition_wait(self) -> float:
        return self.hole_wait_seconds if self.rendition_wait_seconds is None else self.rendition_wait_seconds

    @property
    def longest_wait(self) -> float:
        """How long anything is waited for: an ended stream's last segments, say."""
        return max(self.hole_wait_seconds, self.rendition_wait)

    def __post_init__(self) -> None:
        if not self.window_seconds > 0:
            raise ValueError("window_seconds must be > 0")
        if not self.hole_wait_seconds >= 0:
            raise ValueError("hole_wait_seconds must be >= 0")
        if self.rendition_wait_seconds is not None and not self.rendition_wait_seconds >= 0:
            raise ValueError("rendition_wait_seconds must be >= 0")
        if self.max_target_duration < 1:
            raise ValueError("max_target_duration must be >= 1")
        if self.restart_margin < 1:
            raise ValueError("restart_margin must be >= 1")
        if self.max_window_segments < 1:
            raise ValueError("max_window_segments must be >= 1")

    def window_for(self, target_duration: int) -> float:
        return max(self.window_seconds, 3.0 * target_duration)


@dataclass(frozen=True, slots=True)
class BroadcasterRef:
    """Who served a playlist. Among copies of one number the lowest (rank, tiebreak, name) wins,
    so the choice depends neither on fetch order nor on timing."""

    name: str
    origin: str
    rank: int = 0  # lower is preferred: how much this broadcaster is trusted to carry the stream
    # Orders equally ranked broadcasters. The shell gives a value the broadcaster cannot choose
    # (a keyed hash); left empty, the origin decides.
    tiebreak: str = ""
    # Its copies are used only when no other copy of the number turned up within the hole wait
    # (if a broadcaster that is not provisional answered at all): for broadcasters that merely
    # claim the stream, so that listing numbers early wins nothing.
    provisional: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedPlaylist:
    """One broadcaster's playlist as fetched this round: parsed, or a failure (`playlist` None)."""

    broadcaster: BroadcasterRef
    playlist: UpstreamPlaylist | None = None
    error: str | None = None
    status: int | None = None  # HTTP status of the answer; None: no answer (timeout, refused)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedSegment:
    msn: int
    number: int  # ingest sequence number
    uri: str
    duration: float  # seconds, quantised to the millisecond rendered
    discontinuity: bool = False  # an EXT-X-DISCONTINUITY precedes it
    program_date_time: datetime | None = None
    broadcaster: str = ""  # name of the broadcaster whose copy was chosen
    # The rendition whose copy stands in for this rendition's missing one; None: its own copy.
    substitute: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeCounts:
    """Running totals for metrics; `since()` gives what one merge added."""

    holes_passed: int = 0  # DISCONTINUITIES inserted over missing numbers
    numbers_skipped: int = 0  # ingest numbers passed over without being published
    too_long_skipped: int = 0  # of those, numbers offered only with EXTINF > target duration
    restarts: int = 0  # new ingest epochs started
    substituted: int = 0  # entries of this rendition showing another rendition's copy

    def since(self, earlier: MergeCounts) -> MergeCounts:
        return MergeCounts(
            holes_passed=self.holes_passed - earlier.holes_passed,
            numbers_skipped=self.numbers_skipped - earlier.numbers_skipped,
            too_long_skipped=self.too_long_skipped - earlier.too_long_skipped,
            restarts=self.restarts - earlier.restarts,
            substituted=self.substituted - earlier.substituted,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartWatch:
    """Seen since `since`: nothing offered at or above `next_number`, and, far below it, the
    broadcaster at `origin` listing a run of consecutive numbers `start..top`.

    A new ingest epoch grows such a run; a broadcaster still listing an old stretch of the stream,
    or a late arrival, does not. Growth is only believed in one broadcaster's own list: across
    broadcasters, one coming back from a failed fetch would look like growth.
    """

    since: float
    origin: str
    start: int
    top: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedState:
    """Everything that must be stored per (stream, rendition) between merges, and survive restarts."""

    target_duration: int  # fixed for the life of the stream, the same in every rendition
    media_sequence: int = 0  # MSN of segments[0]
    discontinuity_sequence: int = 0
    segments: tuple[PublishedSegment, ...] = ()
    next_number: int | None = None  # ingest number expected next; None until the first publish
    waiting_since: float | None = None  # when we began waiting for next_number, later ones existing
    restart_watch: RestartWatch | None = None
    # After a restart, what was offered above the new epoch's numbers (inclusive range): the old
    # epoch's tail, still listed upstream. Ignored until the new epoch reaches it, so that it is
    # not taken for news (nor for a reason to pass a hole).
    stale_numbers: tuple[int, int] | None = None
    ended: bool = False
    version: int = 0  # +1 on every change: ETag and render-cache key
    counts: MergeCounts = field(default_factory=MergeCounts)

    @property
    def next_msn(self) -> int:
        return self.media_sequence + len(self.segments)


def new_state(target_duration: int, policy: Policy) -> PublishedState:
    """The state before anything is published."""
    if isinstance(target_duration, bool) or not isinstance(target_duration, int):
        raise TypeError("target_duration must be an int")
    if not 1 <= target_duration <= policy.max_target_duration:
        raise ValueError(f"target_duration must be within 1..{policy.max_target_duration}")
    return PublishedState(target_duration=target_duration)


def choose_target_duration(
    observed_durations: Iterable[float], minimum: int, maximum: int | None = None, headroom: float = 0.0
) -> int:
    """A target duration for a whole stream (every rendition), decided once from the first
    segment durations seen and a configured minimum: the smallest integer that the longest of them,
    plus `headroom` seconds, rounds to (RFC 8216 §4.3.3.1 compares EXTINF rounded to the nearest
    integer). 2.0 s segments get 2, which still takes a later segment of up to 2.499 s.

    The first segments are a small sample and the target may never change (§6.2.1): `headroom` is
    how much longer than all of them a later segment is still sure to fit. One that does not fit
    is passed like a lost segment (`too_long_skipped`), never published with a wrong EXTINF.
    """
    if minimum < 1:
        raise ValueError("minimum must be >= 1")
    longest = max((d for d in observed_durations if math.isfinite(d) and d > 0), default=0.0)
    chosen = max(minimum, _rounded(round(longest + headroom, 3))) if longest else minimum
    return min(chosen, maximum) if maximum is not None else chosen


def renditions_agree(states: Iterable[PublishedState]) -> bool:
    """Whether a stream's renditions line up (RFC 8216 §6.2.4, and hls.js, which aligns live
    variants by MSN): one target duration, and for every MSN present in two renditions the same
    ingest number and the same discontinuity number. `merge_stream` keeps this true by
    construction; this is the check the tests and the soak hold it to.
    """
    reference: dict[int, tuple[int, int]] | None = None
    target_duration = None
    for state in states:
        if target_duration is not None and state.target_duration != target_duration:
            return False
        target_duration = state.target_duration
        marks = state.discontinuity_sequence
        mapping = {}
        for segment in state.segments:
            marks += segment.discontinuity
            mapping[segment.msn] = (segment.number, marks)
        if reference is None:
            reference = mapping
        elif any(reference.get(msn, value) != value for msn, value in mapping.items()):
            return False
    return True


def merge(
    state: PublishedState | None,
    fetched: Sequence[FetchedPlaylist],
    now: float,
    policy: Policy,
    target_duration: int,
    *,
    ended: bool = False,
) -> PublishedState:
    """`merge_stream` for a stream of one rendition."""
    return merge_stream({"": state}, {"": fetched}, now, policy, target_duration, ended=ended)[""]


def merge_stream(
    states: Mapping[str, PublishedState | None],
    fetched: Mapping[str, Sequence[FetchedPlaylist]],
    now: float,
    policy: Policy,
    target_duration: int,
    *,
    substitutes: Mapping[str, Sequence[str]] | None = None,
    ended: bool = False,
    seen: Mapping[int, float] | None = None,
) -> dict[str, PublishedState]:
    """The next published state of every rendition of a stream (the keys of `fetched`), from their
    previous states and this round's upstream playlists of each rendition.

    Each ingest number is decided once for all renditions: published in every rendition at the
    same MSN, or passed in all of them. A number some renditions lack is waited for up to
    `rendition_wait_seconds` (renditions already showing substitutes are not waited for, so one that
    stopped producing never holds the others back), then shown there as another rendition's copy,
    taken in the order of `substitutes[rendition]` (default: the other renditions in key order).

    `now` is wall-clock seconds (the states are persisted and may be shared between nodes).
    `target_duration` is used only to start new states; existing states keep their own.
    `ended`: the stream is over; what is available is published at once (holes passed without
    waiting) and ENDLIST set, after which the states never change. A rendition whose state did not
    change is returned as the same object.

    `seen`: when this node first saw each number listed (in any rendition) in the current ingest
    epoch (not before the latest restart it knows of; ignored in the merge that finds one). A wait for a number
    counts from the moment that made it necessary, as far as it is known: the first listing of it or
    of any number after it (it was missing, lacked by a rendition, or listed late from then). Waits
    then run side by side, not one after another (a lost segment followed by one a rendition lacks
    cost the hole wait plus the rendition wait, and players stalled: the chaos soak, seed 1).
    """
    renditions = tuple(fetched)
    previous = {r: states.get(r) for r in renditions}
    reference = _reference(previous.values())
    if reference is not None and reference.ended:
        return {r: s if s is not None else _joining(reference) for r, s in previous.items()}
    if reference is None:
        reference = new_state(target_duration, policy)
    base = {r: s if s is not None else _joining(reference) for r, s in previous.items()}
    draft = _Draft(reference, base)
    td = reference.target_duration
    every = [item for r in renditions for item in fetched[r]]

    restarted = False
    if reference.next_number is None:
        offers = {r: _collect(fetched[r], td, lowest=0, stale=None) for r in renditions}
        numbers = sorted({n for o in offers.values() for n in o.best})
        if numbers:
            draft.next_number = _bounded_start(numbers, _window_count(policy, td))
    else:
        if reference.stale_numbers is not None and reference.next_number >= reference.stale_numbers[0]:
            # The new epoch has reached the old tail: from now on these numbers are its own.
            # (Cleared here rather than as we reach it, so that a state always describes what its
            # own merge saw.)
            draft.stale_numbers = None
        offers = {r: _collect(fetched[r], td, lowest=reference.next_number, stale=draft.stale_numbers) for r in renditions}
        if any(o.best or o.too_long for o in offers.values()) or ended:
            draft.restart_watch = None  # the stream goes on (or is over): not a restart
        elif _restart_due(draft, every, now, policy):
            restarted = True
            assert draft.next_number is not None
            offers = {r: _collect(fetched[r], td, lowest=draft.next_number, stale=draft.stale_numbers) for r in renditions}

    if draft.next_number is not None:
        order = {r: _substitute_order(r, renditions, substitutes) for r in renditions}
        # A new ingest epoch numbers from 0 again: listings seen before this merge found the
        # restart may be the old epoch's numbers (the caller's `seen` starts at the epoch's start).
        known = {} if restarted else dict(seen or {})
        _publish(draft, offers, order, now, policy.hole_wait_seconds if not ended else 0.0,
                 policy.rendition_wait if not ended else 0.0, known)
    draft.ended = ended
    return draft.finish(policy)


# --- internals -------------------------------------------------------------------------------


def _reference(states: Iterable[PublishedState | None]) -> PublishedState | None:
    """The state whose cursor the stream follows: the one furthest on. All renditions carry the
    same cursor once merged together; they can differ only in states stored by older versions."""
    known = [s for s in states if s is not None]
    if not known:
        return None
    return max(known, key=lambda s: (s.ended, s.next_msn, -1 if s.next_number is None else s.next_number, s.version))


def _joining(reference: PublishedState) -> PublishedState:
    """An empty state for a rendition that has none yet, lined up with the others: its first
    segment takes the next MSN and continues their discontinuity numbering."""
    marks = reference.discontinuity_sequence + sum(1 for s in reference.segments if s.discontinuity)
    return replace(reference, media_sequence=reference.next_msn, discontinuity_sequence=marks, segments=(),
                   counts=replace(reference.counts, substituted=0), version=0)


def _substitute_order(rendition: str, renditions: tuple[str, ...], substitutes: Mapping[str, Sequence[str]] | None) -> tuple[str, ...]:
    preferred = [r for r in (substitutes or {}).get(rendition, ()) if r != rendition and r in renditions]
    return tuple(preferred) + tuple(r for r in renditions if r != rendition and r not in preferred)


@dataclass(slots=True)
class _Offers:
    """Per number, the preferred valid copy on offer; and numbers offered only too long."""

    best: dict[int, tuple[tuple[int, str, str], UpstreamSegment, str]]
    too_long: set[int]
    provisional: set[int] = field(default_factory=set)  # numbers whose best copy is provisional
    _sorted: list[int] | None = None

    def first_after(self, number: int) -> int | None:
        if self._sorted is None:
            self._sorted = sorted(self.best)
        i = bisect_right(self._sorted, number)
        return self._sorted[i] if i < len(self._sorted) else None


def _number_of(segment: UpstreamSegment) -> int:
    return segment.number


def _collect(
    fetched: Sequence[FetchedPlaylist],
    target_duration: int,
    lowest: int,
    stale: tuple[int, int] | None,
    below: int | None = None,
) -> _Offers:
    """Offers for numbers in [lowest, below), skipping the `stale` range. Upstream segments are
    sorted by number, so the cost is the offers in range, not the length of upstream playlists."""
    best: dict[int, tuple[tuple[int, str, str], UpstreamSegment, str]] = {}
    too_long: set[int] = set()
    # Provisional copies wait only where a trusted carrier answered: alone, a claimer is all there is.
    trusted = any(not item.broadcaster.provisional and item.playlist is not None for item in fetched)
    untrusted = {item.broadcaster.name for item in fetched if item.broadcaster.provisional} if trusted else set()
    for item in fetched:
        playlist = item.playlist
        if playlist is None:
            continue  # a failed fetch contributes nothing
        source = item.broadcaster
        key = (source.rank, source.tiebreak or source.origin, source.name)
        segments = playlist.segments
        for i in range(bisect_left(segments, lowest, key=_number_of), len(segments)):
            segment = segments[i]
            number = segment.number
            if below is not None and number >= below:
                break
            if stale is not None and stale[0] <= number <= stale[1]:
                continue
            duration = round(segment.duration, 3)
            if not duration > 0:
                continue  # parse never yields these; a hand-built playlist might
            if _rounded(duration) > target_duration:
                too_long.add(number)
                continue
            current = best.get(number)
            if (
                current is None
                or key < current[0]
                or (key == current[0] and _tiebreak(segment) < _tiebreak(current[1]))
            ):
                best[number] = (key, segment, source.name)
    too_long.difference_update(best)
    provisional = {n for n, (_, _, name) in best.items() if name in untrusted}
    return _Offers(best, too_long, provisional)


_NO_DATE = datetime.min.replace(tzinfo=timezone.utc)


def _tiebreak(segment: UpstreamSegment) -> tuple[str, float, bool, bool, datetime]:
    # Two copies from one broadcaster identity (a shell listing it twice): still deterministic.
    date = segment.program_date_time
    return (segment.uri, segment.duration, segment.discontinuity, date is not None, date or _NO_DATE)


def _rounded(duration: float) -> int:
    """EXTINF rounded to the nearest integer as RFC 8216 §4.3.3.1 compares it; halves go up, the
    strict reading (Python's round() would send 2.5 down to 2)."""
    return math.floor(duration + 0.5)


def _window_count(policy: Policy, target_duration: int) -> int:
    count = math.ceil(policy.window_for(target_duration) / target_duration)
    return max(3, min(count, policy.max_window_segments))


def _bounded_start(numbers: list[int], count: int) -> int:
    """The lowest offered number within `count` numbers of the newest: a new playlist or epoch
    starts with at most a window's worth, not with whatever old stretch a broadcaster still lists."""
    return numbers[bisect_left(numbers, numbers[-1] - count + 1)]


class _Draft:
    """The mutable working copy of one merge step over every rendition; `finish` freezes it."""

    __slots__ = (
        "reference", "base", "next_number", "waiting_since", "restart_watch", "stale_numbers", "ended",
        "pending_discontinuity", "new", "holes_passed", "numbers_skipped", "too_long_skipped",
        "restarts",
    )  # fmt: skip

    def __init__(self, reference: PublishedState, base: dict[str, PublishedState]) -> None:
        self.reference = reference
        self.base = base
        self.next_number = reference.next_number
        self.waiting_since = reference.waiting_since
        self.restart_watch = reference.restart_watch
        self.stale_numbers = reference.stale_numbers
        self.ended = reference.ended
        self.pending_discontinuity = False
        self.new: dict[str, list[PublishedSegment]] = {r: [] for r in base}
        counts = reference.counts
        self.holes_passed = counts.holes_passed
        self.numbers_skipped = counts.numbers_skipped
        self.too_long_skipped = counts.too_long_skipped
        self.restarts = counts.restarts

    def last_segment(self, rendition: str) -> PublishedSegment | None:
        new = self.new[rendition]
        if new:
            return new[-1]
        segments = self.base[rendition].segments
        return segments[-1] if segments else None

    def finish(self, policy: Policy) -> dict[str, PublishedState]:
        return {r: self._finish_one(r, policy) for r in self.base}

    def _finish_one(self, rendition: str, policy: Policy) -> PublishedState:
        state = self.base[rendition]
        new = self.new[rendition]
        counts = MergeCounts(
            holes_passed=self.holes_passed,
            numbers_skipped=self.numbers_skipped,
            too_long_skipped=self.too_long_skipped,
            restarts=self.restarts,
            substituted=state.counts.substituted + sum(1 for s in new if s.substitute is not None),
        )
        if (
            not new
            and self.next_number == state.next_number
            and self.waiting_since == state.waiting_since
            and self.restart_watch == state.restart_watch
            and self.stale_numbers == state.stale_numbers
            and self.ended == state.ended
            and counts == state.counts
        ):
            return state
        segments = state.segments
        media_sequence = state.media_sequence
        discontinuity_sequence = state.discontinuity_sequence
        if new:
            segments = segments + tuple(new)
            removed = _trim_count(segments, policy, state.target_duration, len(state.segments))
            if removed:
                discontinuity_sequence += sum(1 for s in segments[:removed] if s.discontinuity)
                media_sequence += removed
                segments = segments[removed:]
        return PublishedState(
            target_duration=state.target_duration,
            media_sequence=media_sequence,
            discontinuity_sequence=discontinuity_sequence,
            segments=segments,
            next_number=self.next_number,
            waiting_since=self.waiting_since,
            restart_watch=self.restart_watch,
            stale_numbers=self.stale_numbers,
            ended=self.ended,
            version=state.version + 1,
            counts=counts,
        )


def _restart_due(draft: _Draft, fetched: Sequence[FetchedPlaylist], now: float, policy: Policy) -> bool:
    """Nothing is offered at or above next_number. Start a new epoch once a broadcaster's run of
    numbers far below it has grown while watched for hole_wait_seconds; until then keep (or
    start) watching. See RestartWatch."""
    assert draft.next_number is not None
    td = draft.reference.target_duration
    ceiling = draft.next_number - policy.restart_margin
    runs: dict[str, tuple[int, int]] = {}  # per broadcaster that answered: its low run
    for item in fetched:
        if item.playlist is not None:
            origin = item.broadcaster.origin
            run = _low_run(item.playlist.segments, ceiling, td)
            if run is not None and (origin not in runs or run < runs[origin]):
                runs[origin] = run
    # The watch follows the lowest run: a new epoch starts low (usually at 0).
    lowest = min(runs.items(), key=lambda item: (item[1], item[0])) if runs else None
    watch = draft.restart_watch
    run = runs.get(watch.origin) if watch is not None else None
    if watch is None:
        keep = False
    elif run is None:
        # Not heard from this round (a failed fetch counts as no fetch): a young watch waits for
        # it; an old one has shown no growth anyway and loses nothing by starting over.
        keep = now - watch.since < policy.hole_wait_seconds
    else:
        keep = run[0] == watch.start and run[1] >= watch.top
    if keep and watch is not None and lowest is not None and lowest[1][0] < watch.start:
        keep = False  # a lower run elsewhere is the likelier new epoch
    if not keep:
        draft.restart_watch = (
            None
            if lowest is None
            else RestartWatch(since=now, origin=lowest[0], start=lowest[1][0], top=lowest[1][1])
        )
        return False
    assert watch is not None
    if run is None or run[1] == watch.top or now - watch.since < policy.hole_wait_seconds:
        return False

    # A new epoch: from the watched run's start, over what any broadcaster offers.
    low = sorted(_collect(fetched, td, lowest=watch.start, stale=None, below=ceiling).best)
    top = watch.start
    for number in low[1:]:
        if number != top + 1:
            break
        top = number
    old_next = draft.next_number
    draft.next_number = max(watch.start, top - _window_count(policy, td) + 1)
    # Whatever is offered above the new run now is the old epoch's: ignore it up to where the old
    # epoch ended (plus stragglers), until the new epoch gets there.
    above = bisect_right(low, top)
    draft.stale_numbers = (low[above] if above < len(low) else ceiling, old_next - 1 + policy.restart_margin)
    draft.pending_discontinuity = True
    draft.waiting_since = None
    draft.restart_watch = None
    draft.restarts += 1
    return True


def _low_run(
    segments: tuple[UpstreamSegment, ...], below: int, target_duration: int
) -> tuple[int, int] | None:
    """(first, last) of the consecutive numbers at the bottom of one upstream list, below `below`."""
    run: tuple[int, int] | None = None
    for segment in segments:
        number = segment.number
        if number >= below:
            break
        duration = round(segment.duration, 3)
        if not (duration > 0 and _rounded(duration) <= target_duration):
            continue
        if run is None:
            run = (number, number)
        elif number == run[1] + 1:
            run = (run[0], number)
        else:
            break
    return run


def _publish(
    draft: _Draft,
    offers: Mapping[str, _Offers],
    order: Mapping[str, tuple[str, ...]],
    now: float,
    hole_wait: float,
    rendition_wait: float,
    seen: Mapping[int, float],
) -> None:
    """Decide numbers from `next_number` on, for every rendition at once.

    A number offered in every rendition that still produces is published at once. One that some
    of them lack is waited for up to `rendition_wait`, then published with substitutes there. One
    that no rendition offers, while later ones exist, is waited for up to `hole_wait`, then passed
    with a DISCONTINUITY."""
    assert draft.next_number is not None
    number = draft.next_number
    renditions = tuple(draft.base)
    msn = {r: draft.base[r].next_msn for r in renditions}
    evident = _first_listed_from(seen)
    while True:
        present = {r: offers[r].best[number] for r in renditions if number in offers[r].best}
        if present:
            # Only renditions that showed their own copy last are waited for: one already showing
            # stand-ins has failed before, and waiting for it again would delay every rendition.
            awaited = [
                r for r in renditions
                if r not in present and ((last := draft.last_segment(r)) is None or last.substitute is None)
            ]
            provisional = all(number in offers[r].provisional for r in present)
            # A rendition lacking it is waited for as a late transcode; a copy only a claimer offers
            # (trust), as a hole: another carrier's copy would come within that.
            if (awaited or provisional) and not _waited(draft, now, rendition_wait if awaited else hole_wait,
                                                        evident(number)):
                break
            _append(draft, number, present, order, msn)
            number += 1
            continue
        later = min((n for o in offers.values() if (n := o.first_after(number)) is not None), default=None)
        if later is None:
            break  # nothing newer: the stream is simply not further yet
        if not _waited(draft, now, hole_wait, evident(number)):
            break
        draft.holes_passed += 1
        draft.numbers_skipped += later - number
        draft.too_long_skipped += len({n for o in offers.values() for n in o.too_long if number <= n < later})
        number = later
        draft.pending_discontinuity = True
        draft.waiting_since = None
    draft.next_number = number


def _first_listed_from(seen: Mapping[int, float]) -> Callable[[int], float | None]:
    """number -> when it or any number after it was first listed (None: unknown): a number has had
    to be waited for since then, whether it was missing (a hole), lacked by a rendition or late."""
    numbers = sorted(seen)
    earliest = [0.0] * len(numbers)
    running = math.inf
    for i in range(len(numbers) - 1, -1, -1):
        running = min(running, seen[numbers[i]])
        earliest[i] = running

    def lookup(number: int) -> float | None:
        i = bisect_left(numbers, number)
        return earliest[i] if i < len(numbers) else None
    return lookup


def _waited(draft: _Draft, now: float, wait: float, since: float | None = None) -> bool:
    """Whether next_number has now been waited for long enough: since the wait began (now, if it
    had not), or since `since` (what made the wait necessary was seen then) if earlier."""
    start = now if draft.waiting_since is None else draft.waiting_since
    if since is not None and since < start:
        start = since
    draft.waiting_since = start
    return now - start >= wait


def _append(
    draft: _Draft,
    number: int,
    present: Mapping[str, tuple[tuple[int, str, str], UpstreamSegment, str]],
    order: Mapping[str, tuple[str, ...]],
    msn: dict[str, int],
) -> None:
    """Publish `number` in every rendition: its own copy where offered, else a stand-in."""
    chosen: dict[str, tuple[str | None, UpstreamSegment, str]] = {}
    for r in draft.base:
        if r in present:
            _, segment, broadcaster = present[r]
            chosen[r] = (None, segment, broadcaster)
        else:
            source = next(o for o in order[r] if o in present)
            _, segment, broadcaster = present[source]
            chosen[r] = (source, segment, broadcaster)
    previous = {r: draft.last_segment(r) for r in draft.base}
    started = any(p is not None for p in previous.values())
    # One decision for every rendition, so that discontinuity numbers agree: a DISCONTINUITY goes
    # before this number everywhere if any rendition needs one. Upstream's own marks are honoured,
    # but never on the very first segment, where one would only shift the numbering.
    # A number that does not follow the last published one always gets one, even when the hole was
    # passed in an earlier merge than this append (the draft's pending mark does not outlive a merge).
    discontinuity = started and (
        draft.pending_discontinuity
        or any(p is not None and p.number + 1 != number for p in previous.values())
        or any(segment.discontinuity for _, segment, _ in chosen.values())
        or any(
            previous[r] is not None and previous[r].substitute != source  # type: ignore[union-attr]
            for r, (source, _, _) in chosen.items()
        )
    )
    for r, (source, segment, broadcaster) in chosen.items():
        last = previous[r]
        date = segment.program_date_time
        if date is None and not discontinuity and last is not None and last.program_date_time is not None:
            # Keep dates on every segment once known: with windows cut anywhere and copies from
            # several broadcasters, no segment can rely on another's date.
            date = last.program_date_time + timedelta(seconds=last.duration)
        draft.new[r].append(
            PublishedSegment(
                msn=msn[r],
                number=number,
                uri=segment.uri,
                duration=round(segment.duration, 3),
                discontinuity=discontinuity,
                program_date_time=date,
                broadcaster=broadcaster,
                substitute=source,
            )
        )
        msn[r] += 1
    draft.pending_discontinuity = False
    draft.waiting_since = None


def _trim_count(segments: tuple[PublishedSegment, ...], policy: Policy, target_duration: int, listed: int) -> int:
    """How many segments to drop from the front: keep the shortest tail lasting the window, and
    never less than 3 x target duration (§6.2.2). Sums in milliseconds, free of float drift.

    `listed`: how many of `segments` the previous version listed (the rest are new). Never more
    than those are dropped when there were any: a burst (segments that piled up while nobody
    polled, a lease holder dead) is listed whole once, however long, so that a player holding the
    previous version finds the segment after its last; the next new segment trims the window back."""
    window_ms = round(policy.window_for(target_duration) * 1000)
    floor_ms = 3000 * target_duration
    durations = [round(s.duration * 1000) for s in segments]
    total = sum(durations)
    count = len(segments)
    most = listed or count
    removed = 0
    while count - removed > 1 and removed < most:
        rest = total - durations[removed]
        if rest >= window_ms or (count - removed > policy.max_window_segments and rest >= floor_ms):
            total = rest
            removed += 1
        else:
            break
    return removed
