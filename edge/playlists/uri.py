"""RFC 3986 §5.2 reference resolution, to the letter.

`urllib.parse.urljoin` is close but not exact: it drops empty path segments when merging a relative
path ("a//b.ts" becomes "a/b.ts", "a//../b.ts" loses a level), so it can name another file than
the broadcaster meant. Players resolve by RFC 3986 / WHATWG, which keep them.
"""

from __future__ import annotations

import re

# RFC 3986 Appendix B: splits any string into its five components; a group that did not match
# is an undefined component, which is not the same as an empty one ("a?" has an empty query).
_COMPONENTS = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.DOTALL)


def resolve_uri(base: str, reference: str) -> str:
    """The target URI of `reference` against the absolute URI `base` (strict parser: a reference
    with a scheme is absolute even when it is the base's scheme)."""
    b_scheme, b_authority, b_path, b_query, _ = _split(base)
    scheme, authority, path, query, fragment = _split(reference)
    if scheme is not None:
        path = remove_dot_segments(path)
    elif authority is not None:
        scheme, path = b_scheme, remove_dot_segments(path)
    else:
        scheme, authority = b_scheme, b_authority
        if path == "":
            path = b_path
            if query is None:
                query = b_query
        elif path.startswith("/"):
            path = remove_dot_segments(path)
        else:
            path = remove_dot_segments(_merge(b_authority, b_path, path))
    return _join(scheme, authority, path, query, fragment)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step by step as the RFC writes it."""
    if "." not in path:
        return path  # the common case: nothing to remove
    output: list[str] = []
    rest = path
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith("./"):
            rest = rest[2:]
        elif rest.startswith("/./"):
            rest = rest[2:]
        elif rest == "/.":
            rest = "/"
        elif rest.startswith("/../"):
            rest = rest[3:]
            if output:
                output.pop()
        elif rest == "/..":
            rest = "/"
            if output:
                output.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            end = rest.find("/", 1)
            if end == -1:
                end = len(rest)
            output.append(rest[:end])
            rest = rest[end:]
    return "".join(output)


def _split(uri: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    match = _COMPONENTS.fullmatch(uri)
    assert match is not None  # the pattern matches every string
    scheme, authority, path, query, fragment = match.groups()
    return scheme, authority, path, query, fragment


def _merge(base_authority: str | None, base_path: str, path: str) -> str:
    """RFC 3986 §5.2.3."""
    if base_authority is not None and base_path == "":
        return "/" + path
    return base_path[: base_path.rfind("/") + 1] + path


def _join(
    scheme: str | None, authority: str | None, path: str, query: str | None, fragment: str | None
) -> str:
    """RFC 3986 §5.3."""
    parts = []
    if scheme is not None:
        parts.append(scheme + ":")
    if authority is not None:
        parts.append("//" + authority)
    parts.append(path)
    if query is not None:
        parts.append("?" + query)
    if fragment is not None:
        parts.append("#" + fragment)
    return "".join(parts)
