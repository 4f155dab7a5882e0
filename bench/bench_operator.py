"""What the operator's view costs the edge, against work measured in the same run:

1. per feed round, the timeline's bookkeeping (StreamHistory.listed + adopted) against the merge of
   the same round;
2. per health request, the JSON of one rendition with a full 5-minute timeline against rendering
   and gzipping that rendition's playlist (what a new version costs anyway).

    .venv/bin/python -m bench.bench_operator [--budget 0.5]

Prints a Markdown table; asserts nothing (benchmarks report, tests check).
"""

from __future__ import annotations

import argparse
import json
import time

from bench.bench_playlists import TARGET_DURATION, build_steady, per_call_us
from edge.playlists.feed import Rendered
from edge.playlists.health import rendition_json
from edge.playlists.history import StreamHistory
from edge.playlists.merge import merge


def measure(budget: float) -> list[tuple[str, float, float]]:
    now = 1_700_000_000.0
    rows = []
    for window, broadcasters in ((12, 3), (12, 10), (150, 3)):
        s = build_steady(window, broadcasters)
        new = merge(s.state, s.after, now, s.policy, TARGET_DURATION)
        merge_us = per_call_us(lambda: merge(s.state, s.after, now, s.policy, TARGET_DURATION), budget)

        def bookkeeping() -> None:
            history = StreamHistory()
            history.adopted({"source": s.state}, now - 1)
            history.listed({"source": s.after}, now)
            history.adopted({"source": new}, now)

        def baseline_setup() -> None:
            history = StreamHistory()
            history.adopted({"source": s.state}, now - 1)

        round_us = per_call_us(bookkeeping, budget) - per_call_us(baseline_setup, budget)
        rows.append((f"round: window {window}, {broadcasters} broadcasters", round_us, merge_us))

    s = build_steady(150, 3)  # 5 minutes of 2 s segments
    history = StreamHistory()
    state = s.state
    history.adopted({"source": state.__class__(target_duration=state.target_duration)}, now - 400)
    for k in range(1, len(state.segments) + 1):
        history.adopted({"source": state.__class__(
            target_duration=state.target_duration, media_sequence=state.media_sequence,
            segments=state.segments[:k])}, now - 300 + 2 * k)
    timeline = history.timeline("source", now)
    health_us = per_call_us(lambda: json.dumps(rendition_json("source", state, timeline, now, now)), budget)
    render_us = per_call_us(lambda: Rendered.of(state, now), budget)
    rows.append((f"health JSON: 1 rendition, {len(timeline)}-segment timeline", health_us, render_us))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of sampling per figure")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = measure(args.budget)
    print("| work | cost (µs, CPU) | baseline (µs, CPU) | ratio |")
    print("|---|---:|---:|---:|")
    for name, cost, base in rows:
        print(f"| {name} | {cost:.1f} | {base:.1f} | {cost / base:.2f} |")
    print(f"\nbaselines: the merge of the same round; Rendered.of (render + gzip + ETag) of the same window. "
          f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
