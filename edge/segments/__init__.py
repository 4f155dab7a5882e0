"""Segments that outlive their broadcaster: the segment modes (which URI a published number gets),
the segment store (a directory or S3-compatible object storage), the copier that fills it, and the
edge's own segment route."""
