"""``service|node|secret inspect`` of several names, one unknown: as docker inspect,
the ones found are printed and each unknown one gets an error line (exit 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web

from swarmlite.api.client import ApiClient
from swarmlite.api.secret_models import FileSummary
from swarmlite.cli.main import parse_args
from swarmlite.cli.node_cmds import node_inspect
from swarmlite.cli.secret_cmds import file_inspect
from swarmlite.cli.service_cmds import service_inspect
from swarmlite.spec.objects import Node, Service
from swarmlite.spec.service import ServiceSpec
from tests.unit.test_cli_client import _serve

FOUND = {
    "services": Service(id="s1", spec=ServiceSpec(name="web", stack="shop", image="img")),
    "nodes": Node(id="n1", hostname="h1", addr="10.0.0.1", api_port=4377),
    "secrets": FileSummary(id="x1", name="pw", digest="abc"),
}


@pytest.fixture
async def api() -> AsyncIterator[ApiClient]:
    async def get(request: web.Request) -> web.Response:
        kind, name = request.path.split("/")[2], request.match_info["name"]
        if name != "known":
            return web.json_response({"error": f"{name} not found"}, status=404)
        return web.Response(body=msgspec.json.encode(FOUND[kind]))

    app = web.Application()
    for kind in FOUND:
        app.router.add_get(f"/v1/{kind}/{{name}}", get)
    async for port in _serve(app, None):
        async with ApiClient(f"http://127.0.0.1:{port}", None, timeout=5) as client:
            yield client


@pytest.mark.parametrize(
    ("argv", "command", "kind"),
    [
        (["service", "inspect"], service_inspect, "services"),
        (["node", "inspect"], node_inspect, "nodes"),
        (["secret", "inspect"], file_inspect, "secrets"),
    ],
)
async def test_inspect_prints_what_it_found_and_an_error_per_unknown_name(
    api: ApiClient, capsys: pytest.CaptureFixture[str], argv: list[str], command, kind: str
) -> None:
    args = parse_args([*argv, "known", "nope", "known"])
    assert await command(args, api) == 1
    captured = capsys.readouterr()
    found = msgspec.json.decode(captured.out)
    assert [item["id"] for item in found] == [FOUND[kind].id] * 2
    assert captured.err == "Error: nope not found\n"
