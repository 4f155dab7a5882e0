"""Merged live HLS playlists: parse the broadcasters' playlists, merge them into one published
state per (stream, rendition), render it.

The pure core is `upstream_parse`, `uri`, `layout`, `merge`, `round`, `render`, `master` and `codec`
(no I/O, no clock); around it `feed` polls, stores and renders one stream, `service` keeps the feeds
and `routes` serves players. (`upstream` is the parser's old name, kept for one import.)
"""
