"""Development peers of the edge, for tests and the demo: a reference broadcaster (a stand-in for
go-livepeer) and an ingest client (a stand-in for LivepeerWowza).

They speak to the edge over HTTP only. The service's packages (edge, broadcaster_registry, geo) never
import this one.
"""
