"""The edge service: an ASGI app (app.py assembles it) over the broadcaster registry and geo.

broadcasters/ (registration, selection for ingests, static fleets), streams/ (the streams API and
their stored form), playlists/ (merged live playlists for players), store/ (SQLite or Redis behind
small interfaces), pages/ (operator and player pages); upstream.py fetches from broadcasters,
settings.py holds every option, services.py what handlers share, query.py and jsonbody.py read
requests, errors.py writes the API's error shape.
"""
