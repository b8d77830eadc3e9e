"""POST /v1/stacks/{stack}/deploy from a client that skipped the compose loader: a
malformed stack is refused with 400 and nothing is written."""

from __future__ import annotations

import pytest

from swarmlite.api import stack_handlers
from swarmlite.errors import SpecError
from swarmlite.spec.service import NetworkSpec, ServiceSpec, StackSpec
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
