"""Pages for people: the operator page at `/` and a player page per stream, both plain HTML + JS."""
