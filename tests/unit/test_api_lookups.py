"""How API handlers find the node or secret a request names, served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from swarmlite.api import secret_handlers, server, update_handlers
from swarmlite.api.client import ApiClient
from swarmlite.errors import NotFoundError, SpecError
from swarmlite.spec.objects import Node, Secret, Service
from swarmlite.spec.service import ServiceSpec
from tests.unit.api_harness import MemoryStore, context, serve

NODES = (
    Node(id="abc123", hostname="web1", addr="10.0.0.1", api_port=4377),
    Node(id="db7890", hostname="cache", addr="10.0.0.3", api_port=4377),
    Node(id="abd456", hostname="db", addr="10.0.0.2", api_port=4377),
)


@pytest.fixture
async def api() -> AsyncIterator[ApiClient]:
    store = MemoryStore()
    await store.seed(*NODES)
    async for client in serve(context(store), [("GET", "/v1/nodes/{id}", server.node)]):
        yield client


async def test_node_inspect_finds_id_hostname_or_unique_prefix(api: ApiClient) -> None:
    assert (await api.node("abc123")).id == "abc123"
    assert (await api.node("abc")).id == "abc123"
    assert (await api.node("web1")).id == "abc123"


async def test_node_inspect_hostname_comes_before_another_node_id_prefix(api: ApiClient) -> None:
    # "db" is node abd456's hostname and the start of node db7890's id.
    assert (await api.node("db")).id == "abd456"


async def test_node_inspect_refuses_an_ambiguous_prefix(api: ApiClient) -> None:
    with pytest.raises(SpecError, match="node ab is ambiguous"):
        await api.node("ab")
    with pytest.raises(NotFoundError, match="node zz not found"):
        await api.node("zz")


SECRETS = (
    Secret(id="ab12", name="db_pw", digest="d1", sealed="x"),
    Secret(id="ab34", name="api_key", digest="d2", sealed="x"),
)


async def test_an_ambiguous_secret_id_prefix_is_refused_naming_the_candidates() -> None:
    store = MemoryStore()
    await store.seed(*SECRETS)
    routes = [
        ("GET", "/v1/secrets/{name}", secret_handlers._bind(secret_handlers.inspect, "secret"))
    ]
    async for api in serve(context(store), routes):
        assert (await api.file_inspect("secret", "ab1")).name == "db_pw"
        with pytest.raises(SpecError, match="secret ab is ambiguous: it could be api_key, db_pw"):
            await api.file_inspect("secret", "ab")
        with pytest.raises(NotFoundError, match="secret zz not found"):
            await api.file_inspect("secret", "zz")


async def test_a_rollback_says_why_it_started() -> None:
    v1 = ServiceSpec(name="web", stack="st", image="img:1")
    v2 = ServiceSpec(name="web", stack="st", image="img:2")
    store = MemoryStore()
    api_v2 = ServiceSpec(name="api", stack="st", image="i:2")
    await store.seed(
        Service(id="s1", spec=v2, version=2, previous_spec=v1),
        Service(id="s2", spec=api_v2, version=2, previous_spec=v1),
    )
    routes = [("POST", "/v1/services/{name}/rollback", update_handlers.rollback_service)]
    async for api in serve(context(store), routes):
        back = await api.rollback("st_web", "deploy --rollback-on-failure:\n st_web: boom")
        assert back.update_status.message == (
            "rollback started: deploy --rollback-on-failure: st_web: boom"
        )
        assert back.spec.image == "img:1"
        plain = await api.rollback("st_api")
        assert plain.update_status.message == "rollback started: manually requested"
