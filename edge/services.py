"""What request handlers share: settings, store, credentials, metrics and the clock, built once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from starlette.requests import Request

from edge.auth import Credentials
from edge.observability import Metrics
from edge.settings import Settings
from edge.store import SqliteStore


@dataclass
class Services:
    settings: Settings
    store: SqliteStore
    credentials: Credentials
    metrics: Metrics
    clock: Callable[[], float] = field(default=time.time)


def services(request: Request) -> Services:
    return request.app.state.services
