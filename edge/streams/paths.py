"""Stream ids in route paths: `{id:stream_id}` matches only what `is_stream_id` accepts, so a path
such as `/api/stream/hook` belongs to one route, not also to `/api/stream/{id}`, and an id that
cannot exist is the router's 404 before any handler runs."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

from edge.streams.model import STREAM_ID


class StreamIdConvertor(Convertor[str]):
    regex = STREAM_ID.pattern.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("stream_id", StreamIdConvertor())
