"""Headless Chromium for the end-to-end tests: devtools.browser's, failing (never skipping) the test
where chromium is not installed."""

from __future__ import annotations

from pathlib import Path

from devtools.browser import Browser as _Browser
from tests.media import require


class Browser(_Browser):
    def __init__(self, profile: Path) -> None:
        super().__init__(profile, require("chromium"))
