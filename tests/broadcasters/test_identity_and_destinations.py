"""Over HTTP: where broadcasters may be registered (and handed out), and broadcaster identity: a
broadcaster with its own credential acts for itself only, credentials are issued, rotated and
revoked by an admin, and the shared token works only where the operator turned it on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.observability import JsonFormatter
from tests.broadcasters.harness import FRANKFURT, open_edge
from tests.conftest import ADMIN_TOKEN, API_KEY, BROADCASTER_TOKEN, auth

DEFAULTS = {"broadcaster_networks": (), "shared_broadcaster_token": False}  # a fresh install's


@pytest.mark.parametrize("address, why", [
    ("http://127.0.0.1:6379", "127.0.0.1 is a loopback address"),
    ("http://169.254.169.254", "169.254.169.254 is a link-local address"),
    ("http://metadata.google.internal", "metadata.google.internal names a cloud metadata service"),
    ("http://localhost:8935", "localhost is a loopback name"),
    ("http://[::ffff:127.0.0.1]:8935", "::ffff:7f00:1 embeds 127.0.0.1, a loopback address"),
    ("http://0.0.0.0:8935", "0.0.0.0 is the unspecified address"),
    ("http://10.1.2.3:8935", "10.1.2.3 is a private address"),
])
async def test_the_issues_addresses_are_refused_by_default_naming_the_field(
    tmp_path: Path, address: str, why: str
) -> None:
    async with open_edge(tmp_path / "data", broadcaster_networks=()) as edge:
        response = await edge.register("evil", {"address": address})
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert error.startswith(f"address: {why}")
        assert await edge.listing() == []


async def test_an_allowed_network_is_accepted(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data", broadcaster_networks=("10.0.0.0/8",)) as edge:
        assert (await edge.register("lan", {"address": "http://10.1.2.3:8935"})).status_code == 201
        assert (await edge.register("lo", {"address": "http://127.0.0.1:8935"})).status_code == 422


async def test_a_broadcaster_stored_while_allowed_is_not_handed_out_once_refused(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data") as edge:  # loopback allowed
        assert (await edge.register("lo", {"address": "http://127.0.0.1:8935"})).status_code == 201
        assert (await edge.register("fra", FRANKFURT)).status_code == 201
        assert await edge.names() == ["fra", "lo"]
    async with open_edge(tmp_path / "data", broadcaster_networks=()) as edge:  # the operator narrowed it
        assert await edge.names() == ["fra"]
        edge.svc.guard.refuse("fra", "fra-1.example.net resolves to 10.0.0.1 is a private address")
        assert await edge.names() == []  # its name resolved to a refused address at the last fetch


async def issue(edge, name: str) -> dict:  # type: ignore[no-untyped-def]
    response = await edge.client.post(f"/api/broadcasters/{name}/credentials", headers=auth(ADMIN_TOKEN))
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_broadcaster_acts_for_itself_only(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data", **DEFAULTS) as edge:
        fra, ash = await issue(edge, "fra"), await issue(edge, "ash")
        assert (await edge.register("fra", FRANKFURT, token=fra["token"])).status_code == 201
        ash_body = {"address": "https://ash-1.example.net"}
        assert (await edge.register("ash", ash_body, token=ash["token"])).status_code == 201
        # Neither overwrite, nor drain, nor reactivate another.
        hijack = await edge.register("ash", {"address": "https://evil.example.net"}, token=fra["token"])
        assert hijack.status_code == 403
        assert hijack.json() == {"errors": ["authorization: this credential is broadcaster fra's; it may act for fra only"]}
        drain = await edge.client.delete("/api/broadcasters/ash", headers=auth(fra["token"]))
        state = await edge.client.put("/api/broadcasters/ash/state", json={"state": "draining"}, headers=auth(fra["token"]))
        assert drain.status_code == state.status_code == 403
        assert (await edge.listed("ash"))["address"] == "https://ash-1.example.net"
        assert (await edge.listed("ash"))["state"] == "active"
        # Itself: yes.
        assert (await edge.client.delete("/api/broadcasters/fra", headers=auth(fra["token"]))).status_code == 200
        # Not an admin: it cannot forget itself or issue credentials.
        forget = await edge.client.delete("/api/broadcasters/fra?forget=true", headers=auth(fra["token"]))
        assert forget.status_code == 403
        more = await edge.client.post("/api/broadcasters/fra/credentials", headers=auth(fra["token"]))
        assert more.status_code == 403


async def test_credentials_rotate_without_downtime_and_revoke_at_once(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data", **DEFAULTS) as edge:
        old = await issue(edge, "fra")
        assert old["broadcaster"] == "fra" and old["token"].startswith("eb1.")
        assert (await edge.register("fra", FRANKFURT, token=old["token"])).status_code == 201
        edge.clock.advance(1)
        new = await issue(edge, "fra")
        for credential in (old, new):  # both valid during the move
            assert (await edge.register("fra", FRANKFURT, token=credential["token"])).status_code == 200
        listing = await edge.client.get("/api/broadcasters/fra/credentials", headers=auth(ADMIN_TOKEN))
        assert [c["id"] for c in listing.json()] == [old["id"], new["id"]]
        assert all(set(c) == {"id", "broadcaster", "createdAt"} for c in listing.json())  # no secret
        revoked = await edge.client.delete(f"/api/broadcasters/fra/credentials/{old['id']}", headers=auth(ADMIN_TOKEN))
        assert revoked.status_code == 204
        assert (await edge.register("fra", FRANKFURT, token=old["token"])).status_code == 403
        assert (await edge.register("fra", FRANKFURT, token=new["token"])).status_code == 200
        again = await edge.client.delete(f"/api/broadcasters/fra/credentials/{old['id']}", headers=auth(ADMIN_TOKEN))
        assert again.status_code == 404
        # A credential is revoked only under its own broadcaster's name.
        elsewhere = await edge.client.delete(f"/api/broadcasters/ash/credentials/{new['id']}", headers=auth(ADMIN_TOKEN))
        assert elsewhere.status_code == 404


async def test_a_forged_or_tampered_token_is_refused(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data", **DEFAULTS) as edge:
        real = (await issue(edge, "fra"))["token"]
        tampered = real[:-1] + ("A" if real[-1] != "A" else "B")
        unknown = "eb1.0123456789abcdef." + real.rsplit(".", 1)[1]
        for token in (tampered, unknown, "eb1.x.y"):
            assert (await edge.register("fra", FRANKFURT, token=token)).status_code == 403


async def test_the_shared_token_works_only_where_turned_on(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data", **DEFAULTS) as edge:
        response = await edge.register("fra", FRANKFURT, token=BROADCASTER_TOKEN)
        assert response.status_code == 403
        assert "shared broadcaster token is turned off" in response.json()["errors"][0]
        hook = await edge.client.post("/api/stream/hook", json={"url": "x"}, headers=auth(BROADCASTER_TOKEN))
        assert hook.status_code == 403
    async with open_edge(tmp_path / "data2", shared_broadcaster_token=True) as edge:
        assert (await edge.register("fra", FRANKFURT, token=BROADCASTER_TOKEN)).status_code == 201


async def test_the_hook_accepts_a_broadcasters_own_credential(tmp_path: Path) -> None:
    async with open_edge(tmp_path / "data", **DEFAULTS) as edge:
        token = (await issue(edge, "fra"))["token"]
        created = await edge.client.post("/api/stream", json={"name": "cam"}, headers=auth(API_KEY))
        stream_id = created.json()["id"]
        hook = await edge.client.post(
            "/api/stream/hook", json={"url": f"https://fra-1.example.net/live/{stream_id}/0.ts"}, headers=auth(token),
        )
        assert hook.status_code == 200 and hook.json()["manifestId"] == stream_id


async def test_credentials_are_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with open_edge(tmp_path / "data", **DEFAULTS) as edge:
            credential = await issue(edge, "fra")
            await edge.register("fra", FRANKFURT, token=credential["token"])
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)  # as written in production
    secret = credential["token"].rsplit(".", 1)[1]
    assert credential["id"] in logged and secret not in logged
