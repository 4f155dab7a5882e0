"""A Broadcaster as a plain JSON document and back: the one stored form for every backend, with a
version, apart from the API's JSON (edge/broadcasters/routes.py). A node reads the previous version
too, and readers ignore fields they do not know, so nodes of two versions can share a Redis during a
rolling upgrade.
"""

from __future__ import annotations

from typing import Any

from broadcaster_registry.model import Broadcaster, EjectionState, Load, ProbeState

VERSION = 2  # bump on any change of layout, and keep reading the one before
READABLE = (1, 2)  # 1: the same fields, before documents carried a version


def to_doc(b: Broadcaster) -> dict[str, Any]:
    return {
        "version": VERSION,
        "name": b.name,
        "address": b.address,
        "region": b.region,
        "latitude": b.latitude,
        "longitude": b.longitude,
        "capacity": b.capacity,
        "load": {
            "activeStreams": b.load.active_streams,
            "cpu": b.load.cpu,
            "bandwidthBps": b.load.bandwidth_bps,
            "bandwidthCapacityBps": b.load.bandwidth_capacity_bps,
        },
        "streams": sorted(b.streams),
        "state": b.state,
        "source": b.source,
        "lastHeartbeat": b.last_heartbeat,
        "registeredAt": b.registered_at,
        "probe": {
            "consecutiveFailures": b.probe.consecutive_failures,
            "consecutiveSuccesses": b.probe.consecutive_successes,
            "down": b.probe.down,
            "lastProbeAt": b.probe.last_probe_at,
        },
        "ejection": {
            "consecutiveFailures": b.ejection.consecutive_failures,
            "timesEjected": b.ejection.times_ejected,
            "ejectedUntil": b.ejection.ejected_until,
        },
    }


def from_doc(doc: dict[str, Any]) -> Broadcaster:
    """The broadcaster `to_doc` wrote, in this version or the previous one; ValueError otherwise."""
    version = doc.get("version", 1)
    if version not in READABLE:
        raise ValueError(f"broadcaster document of version {version!r}: this node reads {READABLE}")
    load, probe, ejection = doc["load"], doc["probe"], doc["ejection"]
    return Broadcaster(
        name=doc["name"],
        address=doc["address"],
        region=doc["region"],
        latitude=doc["latitude"],
        longitude=doc["longitude"],
        capacity=doc["capacity"],
        load=Load(
            active_streams=load["activeStreams"],
            cpu=load["cpu"],
            bandwidth_bps=load["bandwidthBps"],
            bandwidth_capacity_bps=load["bandwidthCapacityBps"],
        ),
        streams=frozenset(doc["streams"]),
        state=doc["state"],
        source=doc["source"],
        last_heartbeat=doc["lastHeartbeat"],
        registered_at=doc["registeredAt"],
        probe=ProbeState(
            consecutive_failures=probe["consecutiveFailures"],
            consecutive_successes=probe["consecutiveSuccesses"],
            down=probe["down"],
            last_probe_at=probe["lastProbeAt"],
        ),
        ejection=EjectionState(
            consecutive_failures=ejection["consecutiveFailures"],
            times_ejected=ejection["timesEjected"],
            ejected_until=ejection["ejectedUntil"],
        ),
    )
