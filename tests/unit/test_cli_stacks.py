"""``swarmlite stack ...`` against a tiny real aiohttp server (plain HTTP, no mocks)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from swarmlite.api.client import ApiClient
from swarmlite.api.models import RemoveResult
from swarmlite.cli.main import parse_args
from swarmlite.cli.stack_cmds import stack_ps, stack_rm
from swarmlite.errors import NotFoundError
from tests.unit.test_cli_client import _serve


@pytest.fixture(autouse=True)
def _default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARMLITE_DATA_DIR", str(tmp_path / "default"))


@pytest.fixture
def removed() -> list[str]:
    return []


@pytest.fixture
async def api(removed: list[str]) -> AsyncIterator[ApiClient]:
    """Stacks "shop", "broken" and "shared" exist; removing "broken" fails on the server,
    removing "shared" keeps a secret another stack uses."""

    async def remove(request: web.Request) -> web.Response:
        name = request.match_info["stack"]
        if name == "broken":
            return web.json_response({"error": "stack broken kept changing"}, status=409)
        if name == "shared":
            kept = ("secret shared_db: in use by service other_web",)
            result = RemoveResult(removed=("shared_web",), errors=kept)
            return web.Response(body=msgspec.json.encode(result))
        if name != "shop":
            return web.json_response({"error": f"stack {name} not found"}, status=404)
        removed.append(name)
        return web.Response(body=msgspec.json.encode(RemoveResult(removed=("shop_web",))))

    async def tasks(request: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.router.add_delete("/v1/stacks/{stack}", remove)
    app.router.add_get("/v1/tasks", tasks)
    async for port in _serve(app, None):
        async with ApiClient(f"http://127.0.0.1:{port}", None, timeout=5) as client:
            yield client


def args(*argv: str) -> argparse.Namespace:
    return parse_args(["stack", *argv])


async def test_rm_of_an_unknown_stack_says_nothing_found_and_goes_on(
    api: ApiClient, removed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # As docker stack rm: "Nothing found in stack" is no failure, the next stack goes too.
    assert await stack_rm(args("rm", "gone", "shop"), api) == 0
    captured = capsys.readouterr()
    assert removed == ["shop"]
    assert captured.out == "Removing service shop_web\n"
    assert captured.err == "Nothing found in stack: gone\n"


async def test_rm_that_fails_for_one_stack_removes_the_others_and_exits_1(
    api: ApiClient, removed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await stack_rm(args("rm", "broken", "shop"), api) == 1
    assert removed == ["shop"]
    assert capsys.readouterr().err == "Error: broken: stack broken kept changing\n"


async def test_rm_that_kept_a_secret_in_use_reports_it_and_exits_1(
    api: ApiClient, removed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # As docker stack rm: the rest is removed, what is in use is named, the command fails.
    assert await stack_rm(args("rm", "shared", "shop"), api) == 1
    captured = capsys.readouterr()
    assert removed == ["shop"]
    assert captured.out == "Removing service shared_web\nRemoving service shop_web\n"
    assert captured.err == (
        "Failed to remove secret shared_db: in use by service other_web\n"
        "Failed to remove some resources from stack: shared\n"
    )


async def test_ps_of_a_stack_with_no_tasks_is_an_error(api: ApiClient) -> None:
    # docker stack ps: "nothing found in stack: X", exit 1 (not an empty table).
    with pytest.raises(NotFoundError, match="nothing found in stack: gone"):
        await stack_ps(args("ps", "gone"), api)
