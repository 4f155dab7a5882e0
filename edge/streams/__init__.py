"""Streams: the bitrate ladder an ingest declares, its stored form (codec), and the API that creates
and manages them."""
