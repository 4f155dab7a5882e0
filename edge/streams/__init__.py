"""Streams: the bitrate ladder an ingest declares, and the API that creates and manages them."""
