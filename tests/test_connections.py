"""A real `edge serve` under connection abuse: clients that never finish their headers are closed
within the header timeout, one address cannot hold more than its cap, and the server keeps answering.
Also the other doors of a real server: /metrics only for loopback peers or a token, and the
database file readable by its owner only."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, start_edge

HEADER_TIMEOUT = 1.0


def _open_slow(url: str, count: int) -> list[socket.socket]:
    """`count` connections that send the start of a request and never finish its headers."""
    host, port = url.removeprefix("http://").split(":")
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: ")
        held.append(sock)
    return held


def _closed_by_server(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_slow_headers_are_cut_off_and_the_server_still_answers(tmp_path: Path) -> None:
    edge = start_edge(tmp_path, env={"EDGE_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "EDGE_ACCESS_LOG": "false",
                                     "EDGE_MAX_CONNECTIONS_PER_CLIENT": "0"})
    held: list[socket.socket] = []
    try:
        started = time.monotonic()
        held = _open_slow(edge.url, 300)
        assert httpx.get(f"{edge.url}/healthz", timeout=2).status_code == 200  # answers meanwhile
        closed = [_closed_by_server(sock, HEADER_TIMEOUT + 3 - (time.monotonic() - started)) for sock in held]
        elapsed = time.monotonic() - started
        assert all(closed), f"{closed.count(False)} of {len(held)} slow connections still open"
        assert elapsed < HEADER_TIMEOUT + 3
        # A client that keeps a connection and sends requests properly is not cut off.
        with httpx.Client(base_url=edge.url) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(HEADER_TIMEOUT / 3)
        assert httpx.get(f"{edge.url}/healthz", timeout=2).status_code == 200
    finally:
        for sock in held:
            sock.close()
        edge.stop()


def test_one_address_holds_at_most_its_cap_of_connections(tmp_path: Path) -> None:
    edge = start_edge(tmp_path, env={"EDGE_HEADER_TIMEOUT": "30", "EDGE_MAX_CONNECTIONS_PER_CLIENT": "20",
                                     "EDGE_ACCESS_LOG": "false"})
    held: list[socket.socket] = []
    try:
        held = _open_slow(edge.url, 20)
        time.sleep(0.2)
        assert not any(_closed_by_server(sock, 0.05) for sock in held)  # within the cap: kept
        assert _closed_by_server(_open_slow(edge.url, 1)[0], 2.0)  # the next one: closed at once
        for sock in held[:5]:
            sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{edge.url}/healthz", timeout=2).status_code == 200  # room again
        assert "client over its connection cap" in edge.log()
    finally:
        for sock in held:
            sock.close()
        edge.stop()


def test_metrics_need_loopback_or_a_token_and_the_database_is_private(tmp_path: Path) -> None:
    edge = start_edge(tmp_path, env={"EDGE_ADMIN_TOKENS": ADMIN_TOKEN, "EDGE_METRICS_TOKENS": "scrape-me"})
    try:
        assert httpx.get(f"{edge.url}/metrics").status_code == 200  # a loopback peer
        forwarded = httpx.get(f"{edge.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 401  # a proxy on this machine speaking for someone else
        for token in ("scrape-me", ADMIN_TOKEN):
            ok = httpx.get(f"{edge.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9",
                                                          "Authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and "edge_http_requests_total" in ok.text
        wrong = httpx.get(f"{edge.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        data = tmp_path / "data"
        for name in ("edge.db", "edge.db-wal", "edge.db-shm"):
            if (data / name).exists() or name == "edge.db":
                assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    finally:
        edge.stop()
    assert "scrape-me" not in edge.log()


def test_metrics_from_elsewhere_need_a_token(tmp_path: Path) -> None:
    edge = start_edge(tmp_path, env={"EDGE_METRICS_NETWORKS": "192.0.2.0/24"})  # loopback not listed
    try:
        assert httpx.get(f"{edge.url}/metrics").status_code == 401
    finally:
        edge.stop()
