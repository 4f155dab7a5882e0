"""Is a broadcaster alive, and may it take new streams? Pure decisions over a Broadcaster, the time
and a policy: heartbeat TTL for self-registered nodes, active probes for static ones, passive
outlier ejection from our playlist fetches, and draining.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from broadcaster_registry.model import Broadcaster, EjectionState, ProbeState


@dataclass(frozen=True, slots=True, kw_only=True)
class LivenessPolicy:
    # Self-registered: alive while now - last_heartbeat <= ttl (Consul TTL check, Redis EX key).
    heartbeat_ttl_s: float = 30.0
    # Long after expiry a self-registered entry is only clutter (Consul's deregister-after).
    forget_after_s: float = 600.0
    # Static: out after this many failed probes in a row, back after this many successes in a row.
    probe_failures_to_down: int = 3
    probe_successes_to_up: int = 2
    # Passive ejection (Envoy outlier detection): eject after this many failed fetches in a row
    # for base x times ejected, at most max; never more than this share of the fleet at once.
    ejection_consecutive_failures: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0
    max_ejection_percent: float = 50.0

    def __post_init__(self) -> None:
        # Each message starts with the field's name, so settings can name the option it came from.
        for name in ("heartbeat_ttl_s", "forget_after_s", "base_ejection_s", "max_ejection_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be a positive number of seconds")
        for name in ("probe_failures_to_down", "probe_successes_to_up", "ejection_consecutive_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError("max_ejection_percent: must be between 0 and 100")


DEFAULT_LIVENESS = LivenessPolicy()


@dataclass(frozen=True, slots=True)
class Health:
    """The verdict on one broadcaster at one moment.

    healthy: it may be handed out for new ingests. serving: the streams it carries are still merged
    (true while draining). reason: why, for logs and the ops API ("ok", "draining", ...).
    """

    healthy: bool
    serving: bool
    reason: str


def health(b: Broadcaster, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS) -> Health:
    """The one place that decides; can_take_new_streams and is_serving read it.

    Checked from "gone" to "merely draining", so the reason names the most serious problem.
    """
    down = _down_reason(b, now, policy)
    if down is not None:
        return Health(False, False, down)
    if is_ejected(b, now):
        until = b.ejection.ejected_until
        assert until is not None
        return Health(
            False,
            False,
            f"ejected until {_utc(until)} ({until - now:.0f}s left) after "
            f"{policy.ejection_consecutive_failures} consecutive fetch failures "
            f"(ejection {b.ejection.times_ejected})",
        )
    if b.state == "draining":
        return Health(False, True, "draining")
    return Health(True, True, "ok")


def can_take_new_streams(
    b: Broadcaster, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS
) -> bool:
    """May `b` be handed to an ingest now?"""
    return health(b, now, policy).healthy


def is_serving(b: Broadcaster, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS) -> bool:
    """Should the streams `b` carries still be merged (fetched from it) now?"""
    return health(b, now, policy).serving


def health_stable_until(b: Broadcaster, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS) -> float:
    """The earliest time after `now` at which health(b, t) may differ from health(b, now) without
    anything written about `b` (its heartbeat expiring, its ejection ending); infinity if never."""
    due = [t for t in (
        b.last_heartbeat + policy.heartbeat_ttl_s if b.source == "self" else None,
        b.ejection.ejected_until,
    ) if t is not None and t >= now]
    return min(due, default=float("inf"))


def heartbeat_expired(
    b: Broadcaster, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS
) -> bool:
    """True once more than the TTL has passed since the last heartbeat; at exactly the TTL it is
    still alive, so a node heartbeating every TTL seconds on the dot is not flapping."""
    return now - b.last_heartbeat > policy.heartbeat_ttl_s


def forget_after(policy: LivenessPolicy = DEFAULT_LIVENESS) -> float:
    """Seconds of silence after which a self-registered broadcaster is forgotten: never before its
    heartbeat expired, since an expired broadcaster is still worth showing for a while."""
    return max(policy.forget_after_s, policy.heartbeat_ttl_s)


def should_forget(b: Broadcaster, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS) -> bool:
    """Must the registry delete `b` now? Only self-registered ones, long after their heartbeats
    stopped: static ones are the operator's. Every backend applies this (Redis as key expiry)."""
    return b.source == "self" and now - b.last_heartbeat > forget_after(policy)


def answered(status: int | None) -> bool:
    """The one rule for "this broadcaster is alive" from a request made to it: it answered, with
    anything below 500 (a 404 for a rendition it does not carry is an answer). A timeout, a refused
    connection or a 5xx is not."""
    return status is not None and status < 500


def is_ejected(b: Broadcaster, now: float) -> bool:
    until = b.ejection.ejected_until
    return until is not None and now < until


def record_probe(
    b: Broadcaster, ok: bool, now: float, policy: LivenessPolicy = DEFAULT_LIVENESS
) -> Broadcaster:
    """`b` after one active probe answered (`ok`) or failed at `now`.

    Hysteresis: N failures in a row take it out, M successes in a row bring it back, so one lost
    probe neither removes a good node nor readmits a bad one.
    """
    p = b.probe
    if ok:
        successes = p.consecutive_successes + 1
        down = p.down and successes < policy.probe_successes_to_up
        probe = ProbeState(consecutive_successes=successes, down=down, last_probe_at=now)
    else:
        failures = p.consecutive_failures + 1
        down = p.down or failures >= policy.probe_failures_to_down
        probe = ProbeState(consecutive_failures=failures, down=down, last_probe_at=now)
    return replace(b, probe=probe)


def record_fetch(
    b: Broadcaster,
    ok: bool,
    now: float,
    policy: LivenessPolicy,
    fleet: Iterable[Broadcaster],
) -> Broadcaster:
    """`b` after one of our playlist fetches from it succeeded (`ok`) or failed at `now`.

    `fleet`: every registered broadcaster (with or without `b`), needed to keep ejections under
    `max_ejection_percent`: when many nodes fail at once the cause is more likely ours (network,
    DNS) than theirs, and ejecting them all would leave nothing to serve from.
    """
    e = b.ejection
    if ok:
        times = e.times_ejected
        # Envoy lets the multiplier fall again while a host behaves; here a success after a quiet
        # spell as long as the longest ejection forgives the past ejections at once.
        if e.ejected_until is not None and now >= e.ejected_until + policy.max_ejection_s:
            times = 0
        return replace(b, ejection=replace(e, consecutive_failures=0, times_ejected=times))
    if is_ejected(b, now):
        # Late answers to fetches sent before the ejection: already acted upon.
        return b
    failures = e.consecutive_failures + 1
    if failures < policy.ejection_consecutive_failures or not _may_eject(b, now, policy, fleet):
        return replace(b, ejection=replace(e, consecutive_failures=failures))
    times = e.times_ejected + 1
    duration = min(policy.base_ejection_s * times, policy.max_ejection_s)
    # The failure count restarts: once back, it must fail K times again to be ejected again.
    return replace(
        b,
        ejection=EjectionState(
            consecutive_failures=0, times_ejected=times, ejected_until=now + duration
        ),
    )


def _may_eject(
    b: Broadcaster, now: float, policy: LivenessPolicy, fleet: Iterable[Broadcaster]
) -> bool:
    """Would ejecting `b` keep the ejected share of the fleet within the cap?

    The fleet counted is the nodes that would serve but for ejection (not expired, not probed
    down), plus `b`. Unlike Envoy, which always allows one, a fleet too small for the cap ejects
    nobody: a lone broadcaster ejected leaves nothing to merge, and a failing node beats none.
    """
    members = [x for x in fleet if x.name != b.name and _down_reason(x, now, policy) is None]
    ejected = sum(1 for x in members if is_ejected(x, now))
    size = len(members) + 1
    return (ejected + 1) * 100 <= size * policy.max_ejection_percent


def _down_reason(b: Broadcaster, now: float, policy: LivenessPolicy) -> str | None:
    """Why `b` is gone (heartbeat expired, probes failing), or None if it is there at all."""
    if b.source == "self" and heartbeat_expired(b, now, policy):
        return (
            f"heartbeat expired {now - b.last_heartbeat - policy.heartbeat_ttl_s:.0f}s ago "
            f"(last heartbeat {now - b.last_heartbeat:.0f}s ago, ttl {policy.heartbeat_ttl_s:g}s)"
        )
    if b.probe.down:
        if b.probe.consecutive_failures:
            return f"probe failed {b.probe.consecutive_failures} times"
        return (
            f"probe down, {b.probe.consecutive_successes} of "
            f"{policy.probe_successes_to_up} successes needed to return"
        )
    return None


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
