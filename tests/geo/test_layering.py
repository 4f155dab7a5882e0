"""geo is the lowest layer: it must not import the service, the registry or a web framework."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

GEO = Path(__file__).resolve().parents[2] / "geo"
ALLOWED_THIRD_PARTY = {"geoip2", "maxminddb", "cachetools"}


def imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(GEO.glob("*.py")), ids=lambda p: p.name)
def test_geo_imports_only_stdlib_geo_and_its_libraries(module: Path) -> None:
    foreign = {
        name
        for name in imported_top_level_names(module)
        if name not in sys.stdlib_module_names and name != "geo" and name not in ALLOWED_THIRD_PARTY
    }
    assert not foreign, f"{module.name} imports {sorted(foreign)}"
