"""stack rm served in-process: the stack's secrets and configs go with it, except one a
service of another stack uses (external), which is kept and reported, as docker stack
rm does; and their removal compare-and-swaps the cluster object, as a deploy does."""

from __future__ import annotations

from swarmlite.api import stack_handlers
from swarmlite.spec.objects import Cluster, Config, Secret, Service
from swarmlite.spec.service import FileRef, ServiceSpec
from tests.unit.api_harness import MemoryStore, context, deploy_before_delete, serve

ROUTES = [("DELETE", "/v1/stacks/{stack}", stack_handlers.remove_stack)]
CLUSTER = Cluster(
    id="c1", created_at=0.0, ca_cert_pem="", worker_token_digest="w", manager_token_digest="m"
)
DB = Secret(id="s1", name="shop_db", digest="d1", sealed="x", stack="shop")
KEY = Secret(id="s2", name="shop_key", digest="d2", sealed="y", stack="shop")
CFG = Config(id="k1", name="shop_cfg", digest="d3", data="", stack="shop")


def ref(name: str) -> FileRef:
    return FileRef(source=name, name=name, target=f"/run/{name}", digest="d")


def service(sid: str, stack: str, secrets: tuple[str, ...], configs: tuple[str, ...]) -> Service:
    spec = ServiceSpec(
        name="web",
        stack=stack,
        image="busybox",
        secrets=tuple(ref(n) for n in secrets),
        configs=tuple(ref(n) for n in configs),
    )
    return Service(id=sid, spec=spec)


SHOP_WEB = service("v1", "shop", ("shop_db", "shop_key"), ("shop_cfg",))
# `secrets: db: {external: true, name: shop_db}` in another stack.
OTHER_WEB = service("v2", "other", ("shop_db",), ())


async def test_stack_rm_keeps_a_secret_another_stack_uses_and_removes_the_rest() -> None:
    store = MemoryStore()
    await store.seed(CLUSTER, DB, KEY, CFG, SHOP_WEB, OTHER_WEB)
    async for api in serve(context(store), ROUTES):
        result = await api.remove_stack("shop")
    state = store.cache.view()
    assert result.removed == ("shop_web",)
    assert result.errors == ("secret shop_db: in use by service other_web",)
    assert set(state.secrets) == {DB.id}
    assert not state.configs
    assert set(state.services) == {OTHER_WEB.id}


async def test_stack_rm_loses_to_a_deploy_that_started_using_its_config_meanwhile() -> None:
    # A deploy through another manager (or one this manager's cache has not seen yet)
    # binds shop_cfg as external between the handler's read and its write. A deploy
    # compare-and-swaps the cluster object; so must the removal, which then re-reads.
    store = MemoryStore()
    await store.seed(CLUSTER, DB, KEY, CFG, SHOP_WEB)
    user = service("v3", "other", (), ("shop_cfg",))
    raced = deploy_before_delete(store, Config, user)
    async for api in serve(context(store), ROUTES):
        result = await api.remove_stack("shop")
    state = store.cache.view()
    assert raced
    assert result.errors == ("config shop_cfg: in use by service other_web",)
    assert set(state.configs) == {CFG.id}
    assert not state.secrets
    assert set(state.services) == {user.id}
