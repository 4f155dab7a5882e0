"""Merged live HLS playlists: parse the broadcasters' playlists, merge them into one published state, render it.

A pure core: no I/O, no clock; the fetcher, store and HTTP shells live elsewhere in `edge`.
"""
