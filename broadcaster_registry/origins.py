"""The origin (scheme://host[:port]) of a URL, in the one normalised form broadcaster addresses are
registered in, so that an ingest URL, a playlist URL or a segment URI is compared with a registered
address by string equality, wherever the comparison is made."""

from __future__ import annotations

from urllib.parse import urlsplit

from broadcaster_registry.validation import normalise_address


def origin_of(url: str) -> str | None:
    """The normalised origin of the absolute http(s) URL `url` (path, query and fragment ignored),
    or None when it has none we would register: another scheme, user info, a malformed host or port."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return normalise_address(f"{parts.scheme}://{parts.netloc}")
