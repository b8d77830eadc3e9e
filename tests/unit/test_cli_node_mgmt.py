"""``swarmlite node update|rm|demote|promote``: parsing, request bodies, and output
against a tiny real aiohttp server (plain HTTP, no mocks)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from swarmlite.api.client import ApiClient
from swarmlite.api.models import ClusterInfo, NodeActionResult, NodeUpdateRequest
from swarmlite.cli.main import main, parse_args
from swarmlite.cli.node_cmds import (
    node_demote,
    node_ls,
    node_promote,
    node_rm,
    node_update,
    update_request,
)
from swarmlite.errors import SpecError
from swarmlite.spec.objects import Node, NodeStatus
from tests.unit.api_harness import serve_app


@pytest.fixture(autouse=True)
def _default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARMLITE_DATA_DIR", str(tmp_path / "default"))


# --- parsing ------------------------------------------------------------------------


def test_update_parses_repeated_label_flags_into_one_request() -> None:
    args = parse_args(
        [
            "node", "update", "--availability", "drain",
            "--label-add", "zone=eu-1", "--label-add", "gpu", "--label-add", "x=a=b",
            "--label-rm", "old", "n1",
        ]
    )  # fmt: skip
    assert args.node == "n1"
    assert update_request(args) == NodeUpdateRequest(
        availability="drain", label_add={"zone": "eu-1", "gpu": "", "x": "a=b"}, label_rm=("old",)
    )


def test_update_with_nothing_to_change_is_refused() -> None:
    with pytest.raises(SpecError, match="nothing to update"):
        update_request(parse_args(["node", "update", "n1"]))


def test_update_label_without_a_key_is_refused() -> None:
    with pytest.raises(SpecError, match="invalid label '=v'"):
        update_request(parse_args(["node", "update", "--label-add", "=v", "n1"]))


def test_update_rejects_an_unknown_availability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", "update", "--availability", "off", "n1"]) == 2
    assert "invalid choice: 'off'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "nodes", "force"),
    [
        (["node", "rm", "a", "b"], ["a", "b"], False),
        (["node", "remove", "--force", "a"], ["a"], True),
        (["node", "rm", "-f", "a"], ["a"], True),
    ],
)
def test_rm_parses_nodes_and_force(argv: list[str], nodes: list[str], force: bool) -> None:
    args = parse_args(argv)
    assert (args.nodes, args.force) == (nodes, force)


@pytest.mark.parametrize("command", ["demote", "promote", "rm"])
def test_node_commands_need_a_node(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", command]) == 2
    assert "required: NODE" in capsys.readouterr().err


# --- against a server ---------------------------------------------------------------

NODE = Node(id="n1", hostname="h1", addr="10.0.0.1", api_port=4242)
MANAGER = Node(
    id="m1", hostname="h2", addr="10.0.0.2", api_port=4242, role="manager",
    status=NodeStatus(state="ready"),
)  # fmt: skip


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(obj), status=status, content_type="application/json"
    )


def _app(seen: list[tuple[str, str, bytes]]) -> web.Application:
    async def record(request: web.Request) -> str:
        seen.append((request.method, request.path_qs, await request.read()))
        return request.match_info["id"]

    async def update(request: web.Request) -> web.Response:
        await record(request)
        return _json(NODE)

    async def action(request: web.Request) -> web.Response:
        node_id = await record(request)
        if node_id == "bad":
            return _json({"error": "demoting bad would leave the cluster without a quorum"}, 409)
        verb = request.path.rsplit("/", 1)[-1]
        return _json(NodeActionResult(node_id=node_id, hostname="h", message=f"{node_id} {verb}"))

    async def nodes(request: web.Request) -> web.Response:
        return _json([NODE, MANAGER, msgspec.structs.replace(MANAGER, id="m2", hostname="h3")])

    async def info(request: web.Request) -> web.Response:
        return _json(
            ClusterInfo(
                cluster_id="c1", node_id="m2", node_role="manager", leader=False,
                store="ok", version="0.1.0", leader_id="m1",
            )
        )  # fmt: skip

    app = web.Application()
    app.router.add_get("/v1/nodes", nodes)
    app.router.add_get("/v1/info", info)
    app.router.add_post("/v1/nodes/{id}/update", update)
    app.router.add_delete("/v1/nodes/{id}", action)
    app.router.add_post("/v1/nodes/{id}/demote", action)
    app.router.add_post("/v1/nodes/{id}/promote", action)
    return app


@pytest.fixture
def seen() -> list[tuple[str, str, bytes]]:
    return []


@pytest.fixture
async def api(seen: list[tuple[str, str, bytes]]) -> AsyncIterator[ApiClient]:
    async for client in serve_app(_app(seen)):
        yield client


def _args(argv: list[str]) -> argparse.Namespace:
    return parse_args(argv)


async def test_update_posts_the_typed_body_and_prints_the_node(
    api: ApiClient, seen: list[tuple[str, str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(["node", "update", "--availability", "pause", "--label-rm", "a", "n1"])
    assert await node_update(args, api) == 0
    method, path, body = seen[0]
    assert (method, path) == ("POST", "/v1/nodes/n1/update")
    assert msgspec.json.decode(body, type=NodeUpdateRequest) == NodeUpdateRequest(
        availability="pause", label_rm=("a",)
    )
    assert capsys.readouterr().out == "n1\n"


async def test_rm_sends_force_and_prints_each_node(
    api: ApiClient, seen: list[tuple[str, str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await node_rm(_args(["node", "rm", "--force", "a", "b"]), api) == 0
    assert [(m, p) for m, p, _ in seen] == [
        ("DELETE", "/v1/nodes/a?force=1"),
        ("DELETE", "/v1/nodes/b?force=1"),
    ]
    assert capsys.readouterr().out == "a\nb\n"


async def test_rm_without_force_sends_no_force(
    api: ApiClient, seen: list[tuple[str, str, bytes]]
) -> None:
    assert await node_rm(_args(["node", "rm", "a"]), api) == 0
    assert seen[0][:2] == ("DELETE", "/v1/nodes/a")


async def test_demote_goes_on_after_a_refusal_and_exits_1(
    api: ApiClient, seen: list[tuple[str, str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await node_demote(_args(["node", "demote", "bad", "m2"]), api) == 1
    assert [p for _, p, _ in seen] == ["/v1/nodes/bad/demote", "/v1/nodes/m2/demote"]
    out = capsys.readouterr()
    assert out.out == "m2 demote\n"
    assert out.err == "Error: demoting bad would leave the cluster without a quorum\n"


async def test_promote_prints_the_server_message(
    api: ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await node_promote(_args(["node", "promote", "w1"]), api) == 0
    assert capsys.readouterr().out == "w1 promote\n"


async def test_ls_json_carries_the_manager_status_and_self_the_table_shows(
    api: ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # As docker node ls --format json ("ManagerStatus", "Self"): a script can find the
    # leader and the local node without parsing the table.
    assert await node_ls(_args(["node", "ls", "--format", "json"]), api) == 0
    listed = msgspec.json.decode(capsys.readouterr().out)
    assert [(n["id"], n["manager_status"], n["self"]) for n in listed] == [
        ("n1", "", False),
        ("m1", "Leader", False),
        ("m2", "Reachable", True),
    ]
    assert listed[0]["hostname"] == "h1" and listed[0]["addr"] == "10.0.0.1"
