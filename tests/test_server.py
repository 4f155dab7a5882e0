"""A real `edge serve` process on a loopback port: the README's flow, restarts, logs and credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import EdgeProcess, start_edge

WOWZA_CAM1 = {
    "name": "cam1",
    "wowza": {
        "transcoderAppConfig": {"templatesInUse": "${SourceStreamName}.xml,transrate.xml"},
        "transcoderTemplateAppConfig": {"transrate": {"encodes": [
            {"name": "1080p", "enable": True, "width": 1920, "height": 1080,
             "videoBitrate": "${SourceVideoBitrate}", "videoCodec": "PassThru"},
            {"name": "mp4:${SourceStreamName}_720p", "enable": True, "width": 1280, "height": 720,
             "videoBitrate": "2000000"},
            {"name": "360p", "enable": True, "width": 0, "height": 360, "videoBitrate": "800000"},
        ]}},
        "sourceInfo": {"width": 1920, "height": 1080, "fps": 29.97},
    },
}


def test_generated_key_creates_a_stream_that_survives_a_restart(tmp_path: Path) -> None:
    edge = start_edge(tmp_path)
    try:
        key = (tmp_path / "data" / "api-key").read_text().strip()
        assert (tmp_path / "data" / "api-key").stat().st_mode & 0o777 == 0o600
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(f"{edge.url}/api/stream", json=WOWZA_CAM1, headers=headers)
        assert created.status_code == 201, created.text
        stream = created.json()
        assert set(stream["renditions"]) == {"source", "cam1_720p", "360p"}
        profiles = {p["name"]: p for p in stream["profiles"]}
        assert (profiles["cam1_720p"]["width"], profiles["cam1_720p"]["height"]) == (1280, 720)
        assert profiles["cam1_720p"]["bitrate"] == 2_000_000
        assert (profiles["360p"]["width"], profiles["360p"]["height"]) == (640, 360)
        assert {p["fps"] for p in stream["profiles"]} == {30}
        bad = httpx.post(f"{edge.url}/api/stream", json={"name": "x", "profiles": [{"name": "a"}]}, headers=headers)
        assert bad.status_code == 422 and "profiles[0].width: required" in bad.json()["errors"]
    finally:
        edge.stop()
    first_log = edge.log()

    again = start_edge(tmp_path)
    try:
        fetched = httpx.get(f"{again.url}/api/stream/{stream['id']}", headers=headers)
        assert fetched.status_code == 200 and fetched.json() == stream
        assert (tmp_path / "data" / "api-key").read_text().strip() == key  # not regenerated
    finally:
        again.stop()
    for log_text in (first_log, again.log()):
        assert key not in log_text
    access = [json.loads(line) for line in first_log.splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "edge.access" and line.get("status") == 201 for line in access)


def test_configured_keys_from_environment_and_config_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('api_keys = ["from-file"]\npage_size = 5\n')
    edge = start_edge(tmp_path, env={"EDGE_CONFIG": str(config), "EDGE_ADMIN_TOKENS": "env-admin"})
    try:
        ok = httpx.post(f"{edge.url}/api/stream", json={"name": "a"}, headers={"Authorization": "Bearer from-file"})
        assert ok.status_code == 201
        admin = httpx.get(f"{edge.url}/api/stream", headers={"Authorization": "Bearer env-admin"})
        assert admin.status_code == 200 and len(admin.json()) == 1
        assert not (tmp_path / "data" / "api-key").exists()
    finally:
        edge.stop()
    assert "from-file" not in edge.log() and "env-admin" not in edge.log()


def test_bad_configuration_names_the_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge", "serve", "--port", "70000"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "port: 70000 is not a TCP port" in result.stderr


def test_help_explains_every_option() -> None:
    from edge.settings import Settings, env_name

    result = subprocess.run([sys.executable, "-m", "edge", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for option in Settings.options():
        assert env_name(option.name) in result.stdout


def test_readiness_and_metrics_on_a_real_server(edge_server: EdgeProcess) -> None:
    assert httpx.get(f"{edge_server.url}/readyz").json() == {"status": "ready"}
    assert "edge_http_requests_total" in httpx.get(f"{edge_server.url}/metrics").text
