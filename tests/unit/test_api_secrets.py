"""Secret and config handlers served in-process: removal while a deploy races it."""

from __future__ import annotations

import pytest

from swarmlite.api import secret_handlers
from swarmlite.errors import ConflictError
from swarmlite.spec.objects import Cluster, Secret, Service
from swarmlite.spec.service import FileRef, ServiceSpec
from tests.unit.api_harness import MemoryStore, context, deploy_before_delete, serve

CLUSTER = Cluster(
    id="c1", created_at=0.0, ca_cert_pem="", worker_token_digest="w", manager_token_digest="m"
)
SECRET = Secret(id="s1", name="shop_db", digest="d1", sealed="x")
USER = Service(
    id="v1",
    spec=ServiceSpec(
        name="web",
        stack="other",
        image="busybox",
        secrets=(FileRef(source="db", name="shop_db", target="/run/secrets/db", digest="d1"),),
    ),
)


async def test_secret_rm_loses_to_a_deploy_that_started_using_it_meanwhile() -> None:
    # A deploy through another manager (or one this manager's cache has not seen yet)
    # binds the secret between the handler's read and its write. A deploy
    # compare-and-swaps the cluster object; so must the removal, or it deletes a secret
    # that a service now uses, whose tasks are then all rejected.
    store = MemoryStore()
    await store.seed(CLUSTER, SECRET)
    raced = deploy_before_delete(store, Secret, USER)
    remove = secret_handlers._bind(secret_handlers.remove, "secret")
    async for api in serve(context(store), [("DELETE", "/v1/secrets/{name}", remove)]):
        with pytest.raises(ConflictError, match="in use by service other_web"):
            await api.file_remove("secret", "shop_db")
    assert raced
    assert SECRET.id in store.cache.view().secrets
