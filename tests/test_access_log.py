"""The access log's batches: whole lines, each write at most PIPE_BUF bytes, so worker processes
writing to one pipe (`edge serve --workers`) never interleave inside a line."""

from __future__ import annotations

from hypothesis import given, strategies as st

from edge.observability import AccessLog


class Writes:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


@given(st.lists(st.text(alphabet="abc/_-", max_size=2000), max_size=60))
def test_a_batch_is_written_in_whole_lines_of_at_most_pipe_buf(paths: list[str]) -> None:
    stream = Writes()
    log = AccessLog(stream)  # type: ignore[arg-type]
    for path in paths:
        log._lines.append(f'{{"path": "{path}"}}\n')  # a batch, as requests add them between flushes
    log.flush()
    assert "".join(stream.writes) == "".join(f'{{"path": "{p}"}}\n' for p in paths)
    for text in stream.writes:
        assert text.endswith("\n")
        assert len(text.encode()) <= 4096 or text.count("\n") == 1  # only a single huge line is longer
