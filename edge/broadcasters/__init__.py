"""The broadcaster side of the edge: registration, selection for ingests, static fleets and probes."""
