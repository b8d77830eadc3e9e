"""ApiClient and the CLI against a tiny real aiohttp server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from swarmlite.api.client import ApiClient
from swarmlite.api.models import ClusterInfo, DeployResult, ServiceSummary
from swarmlite.cli.main import main
from swarmlite.config import NodeConfig, save_config
from swarmlite.errors import (
    AuthError,
    ConflictError,
    DaemonError,
    NotFoundError,
    SpecError,
    StoreUnavailableError,
    SwarmliteError,
)
from swarmlite.security.ca import ClusterCA
from swarmlite.security.tls import Credentials
from swarmlite.spec.service import ServiceSpec, StackSpec

INFO = ClusterInfo(
    cluster_id="c1", node_id="n1", node_role="manager", leader=True, store="ok", version="0.1.0"
)
SUMMARY = ServiceSummary(
    id="0123456789abcdef",
    name="shop_web",
    stack="shop",
    mode="replicated",
    desired=3,
    running=2,
    image="nginx:1.27",
    ports=("*:8080->80/tcp",),
)
ERRORS = {
    "bad": (400, SpecError),
    "unauth": (401, AuthError),
    "forbidden": (403, AuthError),
    "missing": (404, NotFoundError),
    "taken": (409, ConflictError),
    "nostore": (503, StoreUnavailableError),
    "boom": (500, SwarmliteError),
}


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(obj), status=status, content_type="application/json"
    )


def _app(seen: list[web.Request]) -> web.Application:
    async def info(request: web.Request) -> web.Response:
        return _json(INFO)

    async def services(request: web.Request) -> web.Response:
        seen.append(request)
        return _json([SUMMARY])

    async def service(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        status, _ = ERRORS.get(name, (404, NotFoundError))
        return _json({"error": f"{name}: the server says no"}, status)

    async def tasks(request: web.Request) -> web.Response:
        seen.append(request)
        return _json([])

    async def deploy(request: web.Request) -> web.Response:
        spec = msgspec.json.decode(await request.read(), type=StackSpec)
        seen.append(request)
        return _json(DeployResult(stack=spec.name, created=tuple(s.name for s in spec.services)))

    async def logs(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        await resp.write(b"web.1 | hello\nweb.2 | wor")
        await resp.write(b"ld\nweb.1 | bye")
        await resp.write_eof()
        return resp

    async def plain_error(request: web.Request) -> web.Response:
        return web.Response(status=502, text="Bad Gateway")

    app = web.Application()
    app.router.add_get("/v1/info", info)
    app.router.add_get("/v1/services", services)
    app.router.add_get("/v1/services/{name}", service)
    app.router.add_get("/v1/services/{name}/logs", logs)
    app.router.add_get("/v1/tasks", tasks)
    app.router.add_get("/v1/nodes", plain_error)
    app.router.add_post("/v1/stacks/{stack}/deploy", deploy)
    return app


async def _serve(app: web.Application, ctx: ssl.SSLContext | None) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ctx).start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


@pytest.fixture
def seen() -> list[web.Request]:
    return []


@pytest.fixture
async def api(seen: list[web.Request]) -> AsyncIterator[ApiClient]:
    async for port in _serve(_app(seen), None):
        async with ApiClient(f"http://127.0.0.1:{port}", None, timeout=5) as client:
            yield client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the client -------------------------------------------------------------------


async def test_info_and_services_decode_into_models(api: ApiClient) -> None:
    assert await api.info() == INFO
    assert await api.services() == [SUMMARY]


@pytest.mark.parametrize(("name", "expected"), [(n, e) for n, (_, e) in ERRORS.items()])
async def test_error_status_maps_to_the_error_class(
    api: ApiClient, name: str, expected: type[SwarmliteError]
) -> None:
    with pytest.raises(SwarmliteError) as caught:
        await api.service(name)
    assert type(caught.value) is expected
    assert str(caught.value) == f"{name}: the server says no"


async def test_error_without_json_body_names_the_status(api: ApiClient) -> None:
    with pytest.raises(SwarmliteError, match="the daemon answered 502: Bad Gateway"):
        await api.nodes()


async def test_query_parameters(api: ApiClient, seen: list[web.Request]) -> None:
    await api.services(stack="shop")
    await api.tasks(service="web", node="n1")
    await api.tasks()
    assert [dict(r.query) for r in seen] == [
        {"stack": "shop"},
        {"service": "web", "node": "n1"},
        {},
    ]


async def test_deploy_posts_the_stack_spec(api: ApiClient, seen: list[web.Request]) -> None:
    spec = StackSpec(name="shop", services=(ServiceSpec(name="web", stack="shop", image="x"),))
    result = await api.deploy(spec, prune=True)
    assert result == DeployResult(stack="shop", created=("web",))
    assert seen[0].query.get("prune") == "1"


async def test_service_logs_stream_whole_lines(api: ApiClient, seen: list[web.Request]) -> None:
    lines = [line async for line in api.service_logs("web", follow=True, tail=5)]
    assert lines == ["web.1 | hello", "web.2 | world", "web.1 | bye"]
    assert dict(seen[0].query) == {"follow": "1", "tail": "5"}


async def test_connection_refused_is_a_daemon_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    async with ApiClient(url, None, timeout=5) as client:
        with pytest.raises(DaemonError) as caught:
            await client.info()
    assert str(caught.value) == (
        f"cannot reach the swarmlite daemon at {url}: is it running? "
        "(swarmlite daemon / swarmlite init)"
    )


# -- TLS and the CLI end to end ---------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("c1")


@pytest.fixture
async def tls_port(ca: ClusterCA, seen: list[web.Request]) -> AsyncIterator[int]:
    cert, key = ca.issue("n1", "manager", san_ips=["127.0.0.1"])
    ctx = Credentials(cert, key, ca.cert_pem).server_context()
    async for port in _serve(_app(seen), ctx):
        yield port


def _data_dir(tmp_path: Path, port: int, ca: ClusterCA) -> Path:
    data_dir = tmp_path / "node"
    save_config(
        data_dir,
        NodeConfig(
            node_id="n1",
            cluster_id="c1",
            role="manager",
            hostname="h1",
            advertise_addr="127.0.0.1",
            listen_host="127.0.0.1",
            api_port=port,
        ),
    )
    cert, key = ca.issue("admin", "admin")
    Credentials(cert, key, ca.cert_pem).save(data_dir / "admin")
    return data_dir


async def test_client_with_a_foreign_ca_gets_an_auth_error(tls_port: int) -> None:
    foreign = ClusterCA.create("other")
    cert, key = foreign.issue("admin", "admin")
    ctx = Credentials(cert, key, foreign.cert_pem).client_context()
    async with ApiClient(f"https://127.0.0.1:{tls_port}", ctx, timeout=5) as client:
        with pytest.raises(AuthError, match="TLS handshake with the swarmlite daemon"):
            await client.info()


async def test_cli_lists_services_over_mutual_tls(
    tls_port: int, ca: ClusterCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _data_dir(tmp_path, tls_port, ca)
    code = await asyncio.to_thread(main, ["service", "ls", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        "ID             NAME       MODE         REPLICAS   IMAGE        PORTS",
        "0123456789ab   shop_web   replicated   2/3        nginx:1.27   *:8080->80/tcp",
    ]


async def test_cli_prints_server_error_on_one_line_and_exits_1(
    tls_port: int, ca: ClusterCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _data_dir(tmp_path, tls_port, ca)
    argv = ["--data-dir", str(data_dir), "service", "inspect", "missing"]
    assert await asyncio.to_thread(main, argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "Error: missing: the server says no\n"


def test_cli_unreachable_daemon_exits_1_without_traceback(
    ca: ClusterCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _data_dir(tmp_path, _free_port(), ca)
    assert main(["--data-dir", str(data_dir), "node", "ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot reach the swarmlite daemon at https://127.0.0.1:")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_without_a_node_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "none"), "stack", "ls"]) == 1
    assert capsys.readouterr().err == (
        f"Error: no swarmlite node in {tmp_path / 'none'}: "
        "run 'swarmlite init' or 'swarmlite join' first\n"
    )


def test_cli_with_unreadable_node_files_exits_1_with_one_line(
    ca: ClusterCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A directory where a file should be: unreadable the way another user's file is
    # (these tests may run as root, whom permissions do not stop).
    broken = tmp_path / "broken"
    (broken / "node.json").mkdir(parents=True)
    assert main(["--data-dir", str(broken), "stack", "ls"]) == 1
    assert capsys.readouterr().err == f"Error: cannot read {broken / 'node.json'}: Is a directory\n"
    data_dir = _data_dir(tmp_path, _free_port(), ca)
    for name in ("node.crt", "ca.crt"):
        for creds in (data_dir / "admin", data_dir / "certs"):
            if (creds / name).exists():
                (creds / name).unlink()
                (creds / name).mkdir()
    assert main(["--data-dir", str(data_dir), "node", "ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot read node credentials in ") and "Is a directory" in err
    assert err.count("\n") == 1


def test_leave_refuses_on_a_manager_without_force(
    ca: ClusterCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _data_dir(tmp_path, _free_port(), ca)
    assert main(["leave", "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: You are attempting to leave the swarm on a node")
    assert (data_dir / "node.json").exists()


def test_init_refuses_a_data_dir_with_a_stopped_node(
    ca: ClusterCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _data_dir(tmp_path, _free_port(), ca)
    assert main(["init", "--data-dir", str(data_dir)]) == 1
    assert "its daemon is not running: start it with 'swarmlite daemon" in capsys.readouterr().err


async def test_followed_logs_of_a_quiet_service_wait_past_the_client_timeout() -> None:
    # `service logs -f` of a service that prints nothing for a while: the head comes
    # at once, the first line later than the client's timeout; the stream must wait.
    async def quiet_logs(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await asyncio.sleep(0.6)
        await resp.write(b"web.1 | late\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v1/services/{name}/logs", quiet_logs)
    async for port in _serve(app, None):
        async with ApiClient(f"http://127.0.0.1:{port}", None, timeout=0.3) as client:
            lines = [line async for line in client.service_logs("web", follow=True)]
    assert lines == ["web.1 | late"]


async def test_logs_longer_than_the_client_timeout_are_read_to_the_end() -> None:
    # `service logs` (no -f) of a service with much output: the dump may take longer
    # than the timeout in total; only a server silent for the whole timeout fails it.
    async def long_logs(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(6):
            await resp.write(b"web.1 | line %d\n" % i)
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v1/services/{name}/logs", long_logs)
    async for port in _serve(app, None):
        async with ApiClient(f"http://127.0.0.1:{port}", None, timeout=0.3) as client:
            lines = [line async for line in client.service_logs("web")]
    assert lines == [f"web.1 | line {i}" for i in range(6)]
