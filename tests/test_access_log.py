"""The access log's batches: whole lines, each write at most PIPE_BUF bytes, so worker processes
writing to one pipe (`edge serve --workers`) never interleave inside a line."""

from __future__ import annotations

import json
import math
import time

from hypothesis import given, strategies as st

from edge.observability import AccessLog


class Writes:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


@given(st.lists(st.tuples(st.text(max_size=2000), st.integers(100, 599), st.floats(0, 100),
                          st.none() | st.text(max_size=50)), max_size=60))
def test_a_batch_is_written_in_whole_lines_of_at_most_pipe_buf(requests: list[tuple[str, int, float, str | None]]) -> None:
    stream = Writes()
    log = AccessLog(stream)  # type: ignore[arg-type]
    log._scheduled = True  # as with a running loop: lines wait for the flush
    before = time.time()
    for path, status, seconds, client in requests:
        log.write("GET", "/stream/{id}/{rendition}.m3u8", path, status, seconds, client)
    assert stream.writes == []
    log.flush()
    lines = "".join(stream.writes).splitlines(keepends=True)
    assert len(lines) == len(requests)
    for line, (path, status, seconds, client) in zip(lines, requests):
        doc = json.loads(line)
        assert (doc["path"], doc["status"], doc["client"], doc["logger"]) == (path, status, client, "edge.access")
        assert math.isclose(doc["duration_ms"], round(seconds * 1000, 3), abs_tol=1e-3)
        assert before - 0.001 <= doc["ts"] <= time.time() + 0.001
    for text in stream.writes:
        assert text.endswith("\n") and text.isascii()
        assert len(text.encode()) <= 4096 or text.count("\n") == 1  # only a single huge line is longer
