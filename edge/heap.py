"""How the edge process collects cyclic garbage (issue 15: players first, a thousand streams a core).

CPython's cycle collector stops everything while it runs, and a full (oldest generation) collection
walks every tracked object: with 1,000 live streams it took 150-360 ms, several times a minute
(bench.bench_streams), each a stall of every player answer in the meantime, and about a tenth of the
edge's CPU. Almost nothing it finds is garbage: a stream's states, answers and renderings are freed
by reference counting when replaced; cycles are rare (a task's exception, say).

So, once the app is built: what start-up made (modules, classes, settings: never garbage) is moved
out of the collector's sight (`gc.freeze`), and a full collection waits for ten times as many
middle-generation collections as CPython's default. Young collections are unchanged: they are short
and reclaim the usual cycles. Cyclic garbage that reaches the oldest generation is still reclaimed,
later; the frozen start-up objects stay (they would anyway).
"""

from __future__ import annotations

import gc

YOUNG, MIDDLE, OLD = 700, 10, 100  # gc.set_threshold: CPython's defaults are 700, 10, 10


def settle() -> None:
    """Call once the app is built, before serving: start-up objects frozen, full collections rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
