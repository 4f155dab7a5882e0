"""Merged live HLS playlists: parse the broadcasters' playlists, merge them into one published
state per (stream, rendition), render it.

The pure core is `upstream`, `uri`, `merge`, `render` and `codec` (no I/O, no clock); the modules
around it fetch, store and serve.
"""
