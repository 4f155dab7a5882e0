"""A chaos soak of the merged playlists: `python -m devtools.soak --minutes N`.

For N minutes, several streams run on fault-injecting broadcasters (devtools.soak.broadcaster)
driven by a seeded script (devtools.soak.script) against real edge processes (devtools.soak.run),
while players (devtools.soak.players) check every reload rule between every pair of reloads of
every rendition, the alignment of renditions, the URI layout, freshness, and that every URI
downloads. It prints a summary and exits non-zero on any violation.
"""
