"""Request size limits against a real etcd started with swarmlite's own flags.

The API handlers (over HTTP, with the API's body limit) write the largest deploys
they accept into a real single-member etcd: a 4 MiB spec that also keeps its 4 MiB
previous spec (about 8 MiB in one transaction, over etcd's 1.5 MiB default), and six
500 KiB secrets. A write beyond --max-request-bytes is refused by etcd itself (or by
its gRPC server) and reported as TooLargeError, not as "store unavailable".
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmlite.api.client import ApiClient
from swarmlite.api.context import ApiContext
from swarmlite.errors import TooLargeError
from swarmlite.limits import ETCD_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES, MiB
from swarmlite.security.keeper import SecretKeeper
from swarmlite.spec.objects import Secret, Service, Volume
from swarmlite.store.cache import StateCache
from swarmlite.store.etcd_member import EtcdConfig, EtcdMember
from swarmlite.store.store import Put, Store
from tests.integration.harness import free_port_block
from tests.unit.api_harness import serve
from tests.unit.test_api_limits import ROUTES, body_size, payload_stack, spec_stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists(),
        reason="etcd not installed",
    ),
]


@pytest.fixture
async def etcd(tmp_path: Path) -> AsyncIterator[EtcdMember]:
    port = free_port_block(2)
    member = EtcdMember(
        EtcdConfig(name="size", data_dir=tmp_path / "etcd", client_port=port, peer_port=port + 1),
        log_path=tmp_path / "etcd.log",
    )
    await member.start()
    try:
        yield member
    finally:
        await member.stop()


@pytest.fixture
async def api(etcd: EtcdMember) -> AsyncIterator[tuple[ApiClient, Store]]:
    client = etcd.config.connect(timeout=10)
    store = Store(client)
    cache = StateCache(store)
    await cache.start()
    await asyncio.wait_for(cache.ready.wait(), 10)
    ctx = ApiContext(
        store=store,
        cache=cache,
        dispatcher=None,  # type: ignore[arg-type]  # deploys need neither
        runtime=None,  # type: ignore[arg-type]
        node_id="n1",
        ca_pem="",
        keeper=SecretKeeper(bytes(range(32))),
    )
    try:
        async for http in serve(ctx, ROUTES):
            yield http, store
    finally:
        await cache.stop()
        await client.close()


async def test_the_largest_deploys_the_api_takes_are_written_to_etcd(
    api: tuple[ApiClient, Store],
) -> None:
    http, store = api
    first, second = spec_stack("a"), spec_stack("b")
    assert body_size(second) == MAX_REQUEST_BYTES
    await http.deploy(first)
    assert (await http.deploy(second)).updated == ("st_web",)
    (service,) = await store.all(Service)
    assert service.value.previous_spec is not None
    assert len(service.value.previous_spec.labels["blob"]) > 4 * MiB - 2048

    secrets = payload_stack(files=6)
    assert body_size(secrets) > 3 * MiB
    await http.deploy(secrets)
    assert len(await store.all(Secret)) == 6


@pytest.mark.parametrize("over", [64 * 1024, 2 * MiB])  # etcd's check; its gRPC server's
async def test_a_write_over_the_limit_is_refused_by_etcd_as_too_large(
    etcd: EtcdMember, over: int
) -> None:
    client = etcd.config.connect(timeout=10)
    # No check of our own before sending: etcd's refusal is what is tested.
    store = Store(client, max_write_bytes=100 * MiB)
    try:
        fits = Volume(
            id="v1", name="v", stack="s", labels={"b": "x" * (ETCD_MAX_REQUEST_BYTES - 4096)}
        )
        await store.commit([Put(fits, 0)])
        big = Volume(
            id="v2", name="v", stack="s", labels={"b": "x" * (ETCD_MAX_REQUEST_BYTES + over)}
        )
        with pytest.raises(TooLargeError, match="etcd accepts at most 10 MiB"):
            await store.commit([Put(big, 0)])
        assert [v.value.id for v in await store.all(Volume)] == ["v1"]
    finally:
        await client.close()
