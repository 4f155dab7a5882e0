"""The static fleet: broadcasters listed in a TOML file for fleets that do not self-register.

Read once at start-up; every entry passes the same validation as a registration body. The file is
the truth for static entries: ones it no longer lists are removed from the registry when it loads.

    [[broadcasters]]
    name = "fra-1"
    address = "https://fra-1.example.net:8935"
    region = "eu-central"
    latitude = 50.11
    longitude = 8.68
    capacity = 40
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

from broadcaster_registry.destinations import DEFAULT_DESTINATIONS, DestinationPolicy
from broadcaster_registry.model import Registration
from broadcaster_registry.storage import RegistryStore
from broadcaster_registry.validation import ValidationError, parse_static_entry

log = logging.getLogger("edge.broadcasters.static")


class StaticFleetError(ValueError):
    """The broadcasters file cannot be used; the message names the file, the entry and the field."""


@dataclass(frozen=True, slots=True)
class StaticEntry:
    name: str
    registration: Registration


def read_static_fleet(
    path: str | Path, destinations: DestinationPolicy = DEFAULT_DESTINATIONS
) -> tuple[StaticEntry, ...]:
    """The validated entries of the broadcasters file, or StaticFleetError listing every problem
    (an address `destinations` refuses among them)."""
    where = f"broadcasters_file {path}"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise StaticFleetError(f"{where}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StaticFleetError(f"{where}: not valid TOML: {exc}") from None
    return parse_static_fleet(data, where, destinations)


def parse_static_fleet(
    data: dict[str, object], where: str, destinations: DestinationPolicy = DEFAULT_DESTINATIONS
) -> tuple[StaticEntry, ...]:
    unknown = sorted(key for key in data if key != "broadcasters")
    if unknown:
        raise StaticFleetError(f"{where}: unknown key(s) {', '.join(unknown)}; expected [[broadcasters]] tables")
    tables = data.get("broadcasters", [])
    if not isinstance(tables, list):
        raise StaticFleetError(f"{where}: broadcasters must be an array of tables ([[broadcasters]])")
    problems: list[str] = []
    entries: list[StaticEntry] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        label = f"broadcasters[{i}]"
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            label += f" ({table['name']})"
        try:
            name, registration = parse_static_entry(table, destinations)
        except ValidationError as exc:
            problems.extend(f"{label}: {error}" for error in exc.errors)
            continue
        if name in seen:
            problems.append(f"{label}: name: {name} is listed twice")
            continue
        seen.add(name)
        entries.append(StaticEntry(name, registration))
    if problems:
        raise StaticFleetError(f"{where}: " + "; ".join(problems))
    return tuple(entries)


async def apply_static_fleet(registry: RegistryStore, entries: tuple[StaticEntry, ...], now: float) -> None:
    """Upsert every entry as a static broadcaster and remove static ones the file no longer lists.

    An entry whose name a broadcaster registered for itself becomes static: the operator's file
    wins over a self-registration (the reverse is refused with 409 by the API).
    """
    wanted = {entry.name for entry in entries}
    for b in await registry.list_all():
        if b.source == "static" and b.name not in wanted:
            await registry.delete(b.name)
            log.info("static broadcaster removed: no longer in the broadcasters file",
                     extra={"fields": {"broadcaster": b.name}})
        elif b.source == "self" and b.name in wanted:
            log.warning("self-registered broadcaster replaced by the static entry of the same name",
                        extra={"fields": {"broadcaster": b.name}})
    for entry in entries:
        await registry.upsert(entry.name, entry.registration, now, source="static")
