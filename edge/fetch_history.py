"""Recent fetch results per broadcaster, for operators: the last fetch (outcome, HTTP status,
latency, when) and counts in fixed time buckets over the last minutes (ok; errors: answered, but not
with what was asked, a 404 say; failed: no answer, as broadcaster_registry.liveness judges; latency
sum and maximum), what the operator page draws as sparklines and the stream health endpoint reports per
carrier. Fed by edge.upstream with every result it counts, so it agrees with the Prometheus metrics.

Bounded: a fixed number of buckets per broadcaster, and broadcasters not fetched for longer than
the horizon are dropped on the next bucket change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from broadcaster_registry.liveness import answered

BUCKET_SECONDS = 10.0
BUCKETS = 60  # ten minutes


@dataclass(frozen=True, slots=True)
class LastFetch:
    outcome: str
    status: int | None
    latency: float  # seconds
    at: float


@dataclass(slots=True)
class Bucket:
    index: int  # start time // bucket seconds
    ok: int = 0
    errors: int = 0  # answered, but not with what was asked (a 404 from a broadcaster without the stream)
    failed: int = 0  # no answer: the broadcaster may be down
    latency_sum: float = 0.0
    latency_max: float = 0.0

    def to_json(self, bucket_seconds: float) -> dict[str, float | int | None]:
        count = self.ok + self.errors + self.failed
        return {
            "start": self.index * bucket_seconds,
            "ok": self.ok,
            "errors": self.errors,
            "failed": self.failed,
            "latencyMeanSeconds": round(self.latency_sum / count, 4) if count else None,
            "latencyMaxSeconds": round(self.latency_max, 4) if count else None,
        }


class FetchHistory:
    def __init__(self, clock: Callable[[], float], bucket_seconds: float = BUCKET_SECONDS, buckets: int = BUCKETS) -> None:
        self.clock = clock
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self.last: dict[str, LastFetch] = {}
        self._series: dict[str, deque[Bucket]] = {}
        self._index = 0  # the newest bucket recorded into

    def record(self, broadcaster: str, outcome: str, status: int | None, latency: float) -> None:
        now = self.clock()
        index = int(now // self.bucket_seconds)
        if index != self._index:
            self._index = index
            self._forget(index)
        self.last[broadcaster] = LastFetch(outcome, status, latency, now)
        series = self._series.setdefault(broadcaster, deque(maxlen=self.buckets))
        if not series or series[-1].index != index:
            series.append(Bucket(index))
        bucket = series[-1]
        if outcome == "ok":
            bucket.ok += 1
        elif answered(status):
            bucket.errors += 1
        else:
            bucket.failed += 1
        bucket.latency_sum += latency
        bucket.latency_max = max(bucket.latency_max, latency)

    def _forget(self, index: int) -> None:
        for name in [n for n, s in self._series.items() if s[-1].index <= index - self.buckets]:
            del self._series[name]
            self.last.pop(name, None)

    def series(self, broadcaster: str, now: float) -> list[Bucket]:
        """The last `buckets` buckets up to `now`, oldest first, empty ones included."""
        newest = int(now // self.bucket_seconds)
        kept = {b.index: b for b in self._series.get(broadcaster, ())}
        return [kept.get(i) or Bucket(i) for i in range(newest - self.buckets + 1, newest + 1)]

    def to_json(self, broadcaster: str, now: float) -> dict[str, object]:
        last = self.last.get(broadcaster)
        return {
            "lastFetch": None if last is None else {
                "outcome": last.outcome, "status": last.status,
                "latencySeconds": round(last.latency, 4), "at": last.at,
            },
            "buckets": [b.to_json(self.bucket_seconds) for b in self.series(broadcaster, now)],
        }
