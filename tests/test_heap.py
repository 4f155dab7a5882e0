"""edge.heap: start-up objects frozen out of the collector, full collections rare, and cyclic garbage
still reclaimed. Run in a child interpreter: the collector's settings are process-wide."""

import subprocess
import sys

SCRIPT = """
import gc, weakref
from edge import heap
before = gc.get_freeze_count()
heap.settle()
assert gc.get_freeze_count() > before, "start-up objects frozen"
assert gc.get_threshold() == (heap.YOUNG, heap.MIDDLE, heap.OLD)
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after start-up
gone = weakref.ref(a)
del a, b
gc.collect()
assert gone() is None, "a cycle made after settle() is still collected"
print("ok")
"""


def test_settle_freezes_start_up_and_still_collects_new_cycles() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
