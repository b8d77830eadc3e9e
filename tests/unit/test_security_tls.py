"""Mutual TLS over real sockets on 127.0.0.1, the middleware, and CA pinning."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import uvloop
from aiohttp import web

from swarmlite.errors import AuthError
from swarmlite.security.ca import ROLES, ClusterCA
from swarmlite.security.mtls import allow_roles, ca_handler, mtls_middleware, request_identity
from swarmlite.security.pinning import fetch_and_pin_ca, pinned_client_context
from swarmlite.security.tls import (
    Credentials,
    anonymous_client_context,
    client_context,
    finish_interrupted_save,
    server_context,
    write_private,
)
from tests.unit.api_harness import serve_port, tls_get


@dataclass
class Cluster:
    ca: ClusterCA
    manager: Credentials
    worker: Credentials


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    ca = ClusterCA.create("c1")
    m_cert, m_key = ca.issue("m1", "manager", san_ips=["127.0.0.1"])
    w_cert, w_key = ca.issue("w1", "worker", san_ips=["127.0.0.1"])
    return Cluster(
        ca,
        Credentials(m_cert, m_key, ca.cert_pem, ca.key_pem),
        Credentials(w_cert, w_key, ca.cert_pem),
    )


async def _whoami(request: web.Request) -> web.Response:
    identity = request_identity(request)
    return web.json_response({"node": identity.node_id, "role": identity.role})


async def _serve(ctx: ssl.SSLContext, ca_pem: str) -> AsyncIterator[int]:
    policy = allow_roles({"/v1/nodes": {"manager", "admin"}}, default=ROLES)
    app = web.Application(middlewares=[mtls_middleware(policy)])
    app.router.add_get("/v1/ca", ca_handler(ca_pem))
    app.router.add_get("/v1/nodes", _whoami)
    app.router.add_get("/v1/tasks", _whoami)
    async for p in serve_port(app, ctx):
        yield p


@pytest.fixture
async def port(cluster: Cluster) -> AsyncIterator[int]:
    """The manager API as it should run: CERT_OPTIONAL plus the middleware."""
    ctx = cluster.manager.server_context(require_client_cert=False)
    async for p in _serve(ctx, cluster.ca.cert_pem):
        yield p


async def test_client_with_cluster_cert_gets_200(cluster: Cluster, port: int) -> None:
    status, body = await tls_get(port, "/v1/nodes", cluster.manager.client_context())
    assert status == 200 and '"node": "m1"' in body


async def test_worker_on_manager_only_path_gets_403(
    cluster: Cluster, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = cluster.worker.client_context()
    assert (await tls_get(port, "/v1/tasks", ctx))[0] == 200
    status, body = await tls_get(port, "/v1/nodes", ctx)
    assert status == 403 and "worker" in body
    assert "path=/v1/nodes node=w1 role=worker" in caplog.text
    assert "reason=role-not-allowed" in caplog.text


async def test_client_without_cert_gets_401_except_public_paths(
    cluster: Cluster, port: int
) -> None:
    ctx = anonymous_client_context(cluster.ca.cert_pem)
    assert (await tls_get(port, "/v1/nodes", ctx))[0] == 401
    status, body = await tls_get(port, "/v1/ca", ctx)
    assert status == 200 and body == cluster.ca.cert_pem


async def test_strict_server_disconnects_client_without_cert(cluster: Cluster) -> None:
    ctx = cluster.manager.server_context(require_client_cert=True)
    async for p in _serve(ctx, cluster.ca.cert_pem):
        # Under TLS 1.3 the refusal arrives after the client's handshake: a disconnect.
        with pytest.raises(aiohttp.ClientError):
            await tls_get(p, "/v1/ca", anonymous_client_context(cluster.ca.cert_pem))
        assert (await tls_get(p, "/v1/tasks", cluster.worker.client_context()))[0] == 200


async def test_foreign_ca_cert_is_refused(cluster: Cluster, port: int) -> None:
    foreign = ClusterCA.create("evil")
    cert, key = foreign.issue("m1", "manager")
    # Trusts our CA for the server, but presents a cert the server does not trust.
    ctx = client_context(cert, key, cluster.ca.cert_pem)
    with pytest.raises(aiohttp.ClientError):
        await tls_get(port, "/v1/nodes", ctx)


async def test_expired_cert_is_refused(cluster: Cluster, port: int) -> None:
    cert, key = cluster.ca.issue("old", "manager", lifetime=timedelta(minutes=-1))
    with pytest.raises(aiohttp.ClientError):
        await tls_get(port, "/v1/nodes", client_context(cert, key, cluster.ca.cert_pem))


async def test_client_refuses_server_from_foreign_ca(cluster: Cluster, port: int) -> None:
    foreign = ClusterCA.create("evil")
    cert, key = foreign.issue("w9", "worker")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await tls_get(port, "/v1/tasks", client_context(cert, key, foreign.cert_pem))


async def test_fetch_and_pin_ca(cluster: Cluster, port: int) -> None:
    fingerprint = cluster.ca.fingerprint()
    assert await fetch_and_pin_ca("127.0.0.1", port, fingerprint, timeout=5) == cluster.ca.cert_pem
    ctx, ca_pem = await pinned_client_context("127.0.0.1", port, fingerprint.upper())
    assert ca_pem == cluster.ca.cert_pem
    assert (await tls_get(port, "/v1/ca", ctx))[0] == 200
    with pytest.raises(AuthError, match="does not match the token's fingerprint"):
        await fetch_and_pin_ca("127.0.0.1", port, "0" * 64, timeout=5)


async def test_fetch_and_pin_ca_refuses_server_not_signed_by_served_ca(cluster: Cluster) -> None:
    # An interceptor serves the real (public) CA cert but has its own server cert.
    impostor = ClusterCA.create("evil")
    cert, key = impostor.issue("m1", "manager")
    ctx = server_context(cert, key, impostor.cert_pem, require_client_cert=False)
    async for p in _serve(ctx, cluster.ca.cert_pem):
        with pytest.raises(AuthError, match="not signed"):
            await fetch_and_pin_ca("127.0.0.1", p, cluster.ca.fingerprint(), timeout=5)


async def test_fetch_and_pin_ca_stops_reading_an_endless_chunked_answer(cluster: Cluster) -> None:
    # No Content-Length to refuse up front: a fake manager streams a body that never ends.
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(4096):  # 256 MiB unless the client hangs up
            await resp.write(b"A" * 65536)
        return resp

    app = web.Application()
    app.router.add_get("/v1/ca", endless)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app)
    await runner.setup()
    ctx = cluster.manager.server_context(require_client_cert=False)
    await web.SockSite(runner, sock, ssl_context=ctx).start()
    try:
        with pytest.raises(AuthError, match="oversized CA certificate"):
            await fetch_and_pin_ca(
                "127.0.0.1", sock.getsockname()[1], cluster.ca.fingerprint(), timeout=5
            )
    finally:
        await runner.cleanup()


async def test_fetch_and_pin_ca_refuses_a_worker_server(cluster: Cluster) -> None:
    async for p in _serve(
        cluster.worker.server_context(require_client_cert=False), cluster.ca.cert_pem
    ):
        with pytest.raises(AuthError, match="not a manager"):
            await fetch_and_pin_ca("127.0.0.1", p, cluster.ca.fingerprint(), timeout=5)


async def test_calls_meant_for_a_manager_refuse_a_worker_server_before_sending(
    cluster: Cluster, port: int
) -> None:
    """A worker's certificate is from the same CA: alone, it would pass for a manager
    (and receive a join secret, or feed an agent its assignments)."""
    to_managers = cluster.worker.client_context(managers_only=True)
    assert (await tls_get(port, "/v1/tasks", to_managers))[0] == 200  # a real manager
    anonymous = anonymous_client_context(cluster.ca.cert_pem)
    assert (await tls_get(port, "/v1/ca", anonymous))[0] == 200
    async for p in _serve(
        cluster.worker.server_context(require_client_cert=False), cluster.ca.cert_pem
    ):
        for ctx in (to_managers, anonymous):
            with pytest.raises(aiohttp.ClientError, match="a worker's, not a manager's"):
                await tls_get(p, "/v1/ca", ctx)
        # Other calls (a manager asking any node for logs) still reach a worker.
        assert (await tls_get(p, "/v1/tasks", cluster.manager.client_context()))[0] == 200


def test_the_manager_check_holds_under_uvloop_too(cluster: Cluster) -> None:
    # The daemon runs on uvloop, whose TLS is its own: the check must hold there too.
    async def scenario() -> str:
        async for p in _serve(
            cluster.worker.server_context(require_client_cert=False), cluster.ca.cert_pem
        ):
            try:
                await tls_get(p, "/v1/ca", cluster.worker.client_context(managers_only=True))
            except aiohttp.ClientError as exc:
                return str(exc)
        return "connected"

    assert "a worker's, not a manager's" in uvloop.run(scenario())


def test_credentials_save_load(cluster: Cluster, tmp_path: Path) -> None:
    target = tmp_path / "certs"
    cluster.manager.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["ca.crt", "ca.key", "node.crt", "node.key"]
    assert stat.S_IMODE((target / "node.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert Credentials.load(target) == cluster.manager
    assert Credentials.load(target).identity.role == "manager"
    assert cluster.manager.key_pem not in repr(cluster.manager)
    cluster.worker.save(tmp_path / "w")
    assert Credentials.load(tmp_path / "w").ca_key_pem is None
    with pytest.raises(AuthError, match=r"node\.crt"):
        Credentials.load(tmp_path / "empty")


def test_write_private_replaces_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing is cleaned up."""


@pytest.mark.parametrize("crash_at", range(1, 7))
def test_a_renewal_interrupted_at_any_rename_leaves_one_whole_pair(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    # A renewal replaces node.crt and node.key; a crash between the two replaces left a
    # certificate that does not match the key, and the node could not start.
    new_cert, new_key = cluster.ca.issue("w1", "worker", san_ips=["127.0.0.1"])
    old, new = cluster.worker, Credentials(new_cert, new_key, cluster.ca.cert_pem)
    old.save(tmp_path)
    real, calls = os.replace, 0

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == crash_at:
            raise Crash
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with contextlib.suppress(Crash):  # crash_at past the last rename: no crash
        new.save(tmp_path)
    monkeypatch.undo()
    finish_interrupted_save(tmp_path)  # what the daemon does at start
    loaded = Credentials.load(tmp_path)
    assert (loaded.cert_pem, loaded.key_pem) in {
        (old.cert_pem, old.key_pem),
        (new.cert_pem, new.key_pem),
    }
    loaded.server_context()  # the pair loads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "node.crt", "node.key"]


def test_finishing_a_save_that_was_not_interrupted_does_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker.save(tmp_path)
    assert finish_interrupted_save(tmp_path) == ""
    assert Credentials.load(tmp_path) == cluster.worker
