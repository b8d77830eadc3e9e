"""Deploying and removing through the API: a malformed stack from a client that skipped
the compose loader is refused with 400 and nothing is written; a removal retries a
lost compare-and-swap."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from swarmlite.api import server, stack_handlers
from swarmlite.errors import SpecError
from swarmlite.spec.service import NetworkSpec, ServiceSpec, StackSpec
from swarmlite.store.store import Delete, Put
from tests.unit.api_harness import MemoryStore, context, serve

ROUTES = [("POST", "/v1/stacks/{stack}/deploy", stack_handlers.deploy)]


def stack(name: str, *services: str) -> StackSpec:
    return StackSpec(
        name=name,
        services=tuple(ServiceSpec(name=s, stack=name, image="img:1") for s in services),
        networks=(NetworkSpec(name="default"),),
    )


async def test_a_well_formed_stack_is_written() -> None:
    store = MemoryStore()
    async for api in serve(context(store), ROUTES):
        result = await api.deploy(stack("shop", "web"))
    assert result.created == ("shop_web",) and store.commits == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (stack("My Shop", "web"), "invalid stack name 'My Shop'"),
        (stack("shop", "we b"), "invalid service name 'we b'"),
        (stack("shop", "web", "web"), "service web is defined twice"),
    ],
)
async def test_a_malformed_stack_is_refused_and_nothing_written(
    spec: StackSpec, message: str
) -> None:
    store = MemoryStore()
    async for api in serve(context(store), ROUTES):
        with pytest.raises(SpecError, match=message):
            await api.deploy(spec)
    assert store.commits == 0


class RacedStore(MemoryStore):
    """Another writer (the orchestrator recording update progress) rewrites a service
    just before the first delete of it lands, as a busy cluster does."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    async def commit(self, ops: Sequence[Put | Delete]) -> int:
        if not self.raced and any(isinstance(op, Delete) for op in ops):
            self.raced = True
            for v in list(self.cache.view().services.values()):
                await super().commit([Put(msgspec.structs.replace(v.value, version=9), v.revision)])
        return await super().commit(ops)


async def test_service_rm_retries_when_the_service_changed_meanwhile() -> None:
    store = RacedStore()
    routes = [*ROUTES, ("DELETE", "/v1/services/{name}", server.remove_service)]
    async for api in serve(context(store), routes):
        await api.deploy(stack("shop", "web"))
        assert (await api.remove_service("web")).removed == ("shop_web",)
    assert store.raced and not store.cache.view().services
