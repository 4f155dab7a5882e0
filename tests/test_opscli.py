"""`edge streams ...` and `edge broadcasters ...` against a real edge process on loopback: what an
operator sees, what a script can rely on (--json, exit codes), and that the token is never shown."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.opscli import AUTH_REFUSED, NOT_FOUND, OK, REFUSED, UNREACHABLE, USAGE, main
from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, LOOPBACK_FLEET_ENV, EdgeProcess, free_port, start_edge

FLEET = {
    "fra": {"address": "http://127.0.0.1:9001", "region": "eu", "latitude": 50.11, "longitude": 8.68,
            "capacity": 40, "load": {"activeStreams": 3, "cpu": 0.2}},
    "ash": {"address": "http://127.0.0.1:9002", "region": "us", "latitude": 39.04, "longitude": -77.49},
}


def call(edge: EdgeProcess, method: str, path: str, token: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{edge.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    workdir = tmp_path_factory.mktemp("opscli")
    (workdir / "fleet.toml").write_text(
        '[[broadcasters]]\nname = "static-1"\naddress = "http://127.0.0.1:9004"\n', encoding="utf-8")
    process = start_edge(workdir, {
        **LOOPBACK_FLEET_ENV, "EDGE_API_KEYS": API_KEY, "EDGE_ADMIN_TOKENS": ADMIN_TOKEN,
        "EDGE_BROADCASTERS_FILE": str(workdir / "fleet.toml"),
        "EDGE_BROADCASTER_TOKENS": BROADCASTER_TOKEN, "EDGE_ACCESS_LOG": "false",
    })
    try:
        for name, body in FLEET.items():
            call(process, "PUT", f"/api/broadcasters/{name}", BROADCASTER_TOKEN, body)
        yield process
    finally:
        process.stop()


def ops(edge: EdgeProcess, noun: str, *argv: str, token: str = ADMIN_TOKEN, url: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(noun, argv, {"EDGE_URL": url or edge.url, "EDGE_ADMIN_TOKEN": token}, out, err)
    return code, out.getvalue(), err.getvalue()


def test_broadcasters_list_shows_the_registered_ones_in_a_table(edge: EdgeProcess) -> None:
    code, out, err = ops(edge, "broadcasters", "list")
    assert (code, err) == (OK, "")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "HEALTH"]
    by_name = {row.split()[0]: row for row in rows}
    assert set(by_name) == {"ash", "fra", "static-1"}
    assert "3/40 streams, cpu 20%" in by_name["fra"] and "http://127.0.0.1:9001" in by_name["fra"]


def test_drain_and_activate_change_the_state_the_api_shows(edge: EdgeProcess) -> None:
    code, out, _ = ops(edge, "broadcasters", "drain", "fra")
    assert code == OK and out.strip() == "broadcaster fra: draining (draining)"
    listed = {b["name"]: b for b in call(edge, "GET", "/api/broadcasters", ADMIN_TOKEN)}  # type: ignore[union-attr]
    assert listed["fra"]["state"] == "draining" and listed["ash"]["state"] == "active"
    handed = [b["name"] for b in call(edge, "GET", "/api/broadcaster", API_KEY)]  # type: ignore[union-attr]
    assert "fra" not in handed
    code, out, _ = ops(edge, "broadcasters", "activate", "fra", "--json")
    assert code == OK and json.loads(out)["state"] == "active"
    assert "fra" in [b["name"] for b in call(edge, "GET", "/api/broadcaster", API_KEY)]  # type: ignore[union-attr]


def test_json_is_the_apis_answer(edge: EdgeProcess) -> None:
    code, out, _ = ops(edge, "broadcasters", "list", "--json")
    assert code == OK
    listed = call(edge, "GET", "/api/broadcasters", ADMIN_TOKEN)
    assert isinstance(listed, list)
    # The same documents (health reasons may age between the two reads).
    assert [(b["name"], b["address"], b["state"]) for b in json.loads(out)] == \
        [(b["name"], b["address"], b["state"]) for b in listed]


def test_streams_list_show_end_delete(edge: EdgeProcess) -> None:
    stream = call(edge, "POST", "/api/stream", API_KEY, {"name": "cam-opscli"})
    assert isinstance(stream, dict)
    code, out, _ = ops(edge, "streams", "list")
    (line,) = [line for line in out.splitlines() if line.startswith(stream["id"])]
    assert " live " in line and time.strftime("%Y-%m-%d", time.gmtime()) in line  # createdAt is in ms
    code, out, _ = ops(edge, "streams", "show", stream["id"], "--json")
    assert code == OK and json.loads(out)["name"] == "cam-opscli"
    assert ops(edge, "streams", "end", stream["id"])[:2] == (OK, f"stream {stream['id']} ended\n")
    code, out, _ = ops(edge, "streams", "list", "--json")
    assert [s["ended"] for s in json.loads(out) if s["id"] == stream["id"]] == [True]
    assert ops(edge, "streams", "delete", stream["id"])[0] == OK
    code, _, err = ops(edge, "streams", "show", stream["id"])
    assert code == NOT_FOUND and "404" in err


def test_a_wrong_token_exits_4_and_is_never_printed(edge: EdgeProcess) -> None:
    secret = "not-a-configured-token-1234"
    code, out, err = ops(edge, "broadcasters", "list", token=secret)
    assert code == AUTH_REFUSED and out == ""
    assert "403" in err and secret not in err
    assert ops(edge, "streams", "list", token=BROADCASTER_TOKEN)[0] == AUTH_REFUSED  # not a streams role


def test_an_unknown_name_exits_1(edge: EdgeProcess) -> None:
    code, _, err = ops(edge, "broadcasters", "drain", "nobody")
    assert code == NOT_FOUND and "broadcaster nobody: not found" in err
    assert ops(edge, "streams", "end", "00000000-0000-4000-8000-000000000000")[0] == NOT_FOUND


def test_forget_removes_a_broadcaster_and_a_second_forget_is_not_found(edge: EdgeProcess) -> None:
    call(edge, "PUT", "/api/broadcasters/tmp-1", BROADCASTER_TOKEN, {"address": "http://127.0.0.1:9003"})
    assert ops(edge, "broadcasters", "forget", "tmp-1")[:2] == (OK, "broadcaster tmp-1 forgotten\n")
    assert "tmp-1" not in ops(edge, "broadcasters", "list")[1]
    assert ops(edge, "broadcasters", "forget", "tmp-1")[0] == NOT_FOUND


def test_refusals_other_than_auth_exit_5(edge: EdgeProcess) -> None:
    code, _, err = ops(edge, "broadcasters", "forget", "static-1")  # the broadcasters file's: 409
    assert code == REFUSED and "409" in err and "broadcasters file" in err
    assert "static-1" in ops(edge, "broadcasters", "list")[1]


def test_an_unreachable_edge_exits_3(edge: EdgeProcess) -> None:
    code, out, err = ops(edge, "broadcasters", "list", url=f"http://127.0.0.1:{free_port()}")
    assert code == UNREACHABLE and out == "" and "unreachable" in err


def test_usage_errors_exit_2(edge: EdgeProcess) -> None:
    assert ops(edge, "broadcasters", "frobnicate")[0] == USAGE
    assert ops(edge, "broadcasters", "drain")[0] == USAGE  # no name
    assert ops(edge, "streams", "list", token="")[0] == USAGE  # no token anywhere
    assert ops(edge, "streams", "list", url="ftp://example.net")[0] == USAGE


def test_the_edge_command_runs_them(edge: EdgeProcess, tmp_path: Path) -> None:
    env = {"EDGE_URL": edge.url, "EDGE_ADMIN_TOKEN": ADMIN_TOKEN, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "edge", "broadcasters", "list", "--json"], env=env,
                          capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == OK, done.stderr
    assert {b["name"] for b in json.loads(done.stdout)} == {"ash", "fra", "static-1"}
    done = subprocess.run([sys.executable, "-m", "edge", "broadcasters", "drain", "nobody"], env=env,
                          capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == NOT_FOUND and ADMIN_TOKEN not in done.stderr + done.stdout
