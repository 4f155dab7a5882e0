"""What text we accept and how text we did not check is made safe to send.

JSON can carry strings that are not Unicode text (a lone surrogate, `"\\ud800"`, is valid JSON), and
those cannot be encoded as UTF-8: stored, they would break every answer that includes them. So text
fields refuse them, and control characters, which no field of this API has a use for.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 and C1 controls and DEL, and the surrogate range (only lone surrogates survive json.loads:
# a valid escaped pair is joined into one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def encoding_problem(value: str) -> str | None:
    """Why `value` cannot be encoded as UTF-8, or None."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return f"must be valid Unicode text (lone surrogate U+{ord(found.group()):04X} at character {found.start()})"


def text_problem(value: str) -> str | None:
    """Why `value` is not acceptable text (unencodable, or with a control character), or None."""
    problem = encoding_problem(value)
    if problem is not None:
        return problem
    found = _CONTROL.search(value)
    if found is not None:
        return f"must not contain control characters (U+{ord(found.group()):04X} at character {found.start()})"
    return None


def show(value: str) -> str:
    """`value` as it may appear in a message: itself when it is clean text, else JSON-escaped ASCII,
    so that a message naming a hostile field name always renders (and shows what was sent)."""
    return value if text_problem(value) is None else json.dumps(value)


def repair(value: str) -> str:
    """`value` with each lone surrogate replaced by U+FFFD: what we send for text stored before it
    was checked (an older version stored it), instead of failing to answer."""
    return _SURROGATE.sub("\ufffd", value)


def dumps_utf8(doc: Any) -> bytes:
    """`doc` as compact UTF-8 JSON, never failing on unencodable text (it is repaired)."""
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return repair(text).encode("utf-8")

