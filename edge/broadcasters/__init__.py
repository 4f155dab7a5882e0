"""The broadcaster side of the edge: its API (registration, credentials, selection for ingests),
the selector with its degraded mode, static fleets and their probes."""
