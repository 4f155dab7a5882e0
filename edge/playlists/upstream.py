"""The old name of edge.playlists.upstream_parse, for the one import that has not moved yet
(edge/playlists/merge.py); new code imports upstream_parse."""

from edge.playlists.upstream_parse import UpstreamPlaylist, UpstreamSegment

__all__ = ["UpstreamPlaylist", "UpstreamSegment"]
