"""Request size limits (swarmlite/limits.py): the API takes a deploy body up to
MAX_REQUEST_BYTES, answers a larger one 413 with one line naming the limit (the
client refuses to send it at all), and the largest deploy it takes is one etcd write
within ETCD_MAX_REQUEST_BYTES, even when it also keeps each service's previous spec."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aiohttp
import msgspec
import pytest

from swarmlite.api import client as api_client
from swarmlite.api import stack_handlers
from swarmlite.api.client import ApiClient
from swarmlite.errors import StoreUnavailableError, TooLargeError
from swarmlite.limits import ETCD_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES, MiB, size_text
from swarmlite.security.keeper import MAX_SIZE, SecretKeeper
from swarmlite.spec.objects import Volume
from swarmlite.spec.service import FilePayload, FileRef, NetworkSpec, ServiceSpec, StackSpec
from swarmlite.store.store import Delete, Put, Store, commit_chunked
from tests.unit.api_harness import MemoryStore, context, serve

ROUTES = [("POST", "/v1/stacks/{stack}/deploy", stack_handlers.deploy)]
KEEPER = SecretKeeper(bytes(range(32)))


def body_size(spec: StackSpec) -> int:
    return len(msgspec.json.encode(spec))


def payload_stack(files: int, size: int = MAX_SIZE, fill: bytes = b"s") -> StackSpec:
    """``files`` secrets and configs of ``size`` bytes each, all used by one service."""
    secrets = tuple(
        FilePayload(name=f"st_s{i}", data=base64.b64encode(fill * size).decode())
        for i in range(files)
    )
    refs = tuple(
        FileRef(source=f"s{i}", name=p.name, target=f"/s{i}") for i, p in enumerate(secrets)
    )
    return StackSpec(
        name="st",
        services=(ServiceSpec(name="web", stack="st", image="img:1", secrets=refs),),
        networks=(NetworkSpec(name="default"),),
        secrets=secrets,
    )


def spec_stack(fill: str, body: int = MAX_REQUEST_BYTES) -> StackSpec:
    """One service whose own spec (a huge label) makes the body ``body`` bytes: the
    worst case for the etcd write, which stores the spec and, on update, the old one."""

    def make(n: int) -> StackSpec:
        web = ServiceSpec(name="web", stack="st", image="img:1", labels={"blob": fill * n})
        return StackSpec(name="st", services=(web,), networks=(NetworkSpec(name="default"),))

    spec = make(body - body_size(make(0)))
    assert body_size(spec) == body
    return spec


class RecordingEtcd(aetcd.Client):  # type: ignore[misc]
    """Builds each transaction as aetcd would and records its size; never connects."""

    def __init__(self, refuse: Exception | None = None) -> None:
        super().__init__("127.0.0.1", 1)
        self.refuse = refuse
        self.sizes: list[int] = []

    async def transaction(self, compare: Any, success: Any = None, failure: Any = None) -> Any:
        request = aetcd.rpc.TxnRequest(
            compare=[c.build_message() for c in compare],
            success=self._ops_to_requests(success),
            failure=self._ops_to_requests(failure),
        )
        self.sizes.append(request.ByteSize())
        if self.refuse is not None:
            raise self.refuse
        return True, []


class SizedStore(MemoryStore):
    """A MemoryStore whose every commit also goes through the real Store's encoding
    and size check, into a RecordingEtcd."""

    def __init__(self) -> None:
        super().__init__()
        self.etcd = RecordingEtcd()
        self.real = Store(self.etcd)

    async def commit(self, ops: Any) -> int:
        await self.real.commit(ops)
        return await super().commit(ops)


async def serve_sized() -> AsyncIterator[tuple[ApiClient, SizedStore]]:
    store = SizedStore()
    async for api in serve(context(store, keeper=KEEPER), ROUTES):
        yield api, store


async def test_a_deploy_over_aiohttps_default_1_mib_is_taken_and_fits_one_etcd_write() -> None:
    spec = payload_stack(files=6)  # six 500 KiB secrets: the most that fit
    assert 3 * MiB < body_size(spec) <= MAX_REQUEST_BYTES
    async for api, store in serve_sized():
        result = await api.deploy(spec)
        assert result.created == ("st_web",) and store.commits == 1
        assert body_size(spec) < store.etcd.sizes[0] < ETCD_MAX_REQUEST_BYTES


async def test_the_largest_deploy_with_its_previous_spec_fits_one_etcd_write() -> None:
    async for api, store in serve_sized():
        await api.deploy(spec_stack("a"))
        result = await api.deploy(spec_stack("b"))  # stores the new spec and the old one
        assert result.updated == ("st_web",) and store.commits == 2
        biggest = max(store.etcd.sizes)
        assert 2 * MAX_REQUEST_BYTES < biggest < ETCD_MAX_REQUEST_BYTES, size_text(biggest)


async def test_a_body_over_the_limit_gets_413_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_client, "MAX_REQUEST_BYTES", 100 * MiB)  # let the client send it
    spec = payload_stack(files=7)
    store = MemoryStore()
    async for api in serve(context(store, keeper=KEEPER), ROUTES):
        with pytest.raises(TooLargeError) as info:
            await api.deploy(spec)
        answer = await api._http.request(
            "POST", "/v1/stacks/st/deploy", body=msgspec.json.encode(spec)
        )
    message = str(info.value)
    assert "\n" not in message
    assert f"is {size_text(body_size(spec))}" in message and "at most 4 MiB" in message
    assert answer.status == 413
    assert msgspec.json.decode(answer.body) == {"error": message}
    assert store.commits == 0


async def test_a_chunked_body_over_the_limit_gets_the_same_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b" " * MiB

    store = MemoryStore()
    async for api in serve(context(store), ROUTES):
        async with aiohttp.ClientSession() as http:
            url = f"{api.base_url}/v1/stacks/st/deploy"
            async with http.post(url, data=chunks()) as answer:
                status, body = answer.status, await answer.json()
    assert status == 413
    assert "over 4 MiB" in body["error"] and "at most 4 MiB" in body["error"]
    assert store.commits == 0


async def test_the_client_refuses_to_send_a_body_over_the_limit() -> None:
    # Nothing listens there: only a check before sending can answer TooLargeError.
    async with ApiClient("http://127.0.0.1:9", None, 2) as api:
        with pytest.raises(TooLargeError, match="at most 4 MiB"):
            await api.deploy(payload_stack(files=7))


async def test_a_write_over_etcds_limit_is_refused_before_it_is_sent() -> None:
    etcd = RecordingEtcd()
    big = Volume(id="v1", name="v", stack="s", labels={"blob": "x" * ETCD_MAX_REQUEST_BYTES})
    with pytest.raises(TooLargeError, match="etcd accepts at most 10 MiB per transaction"):
        await Store(etcd).commit([Put(big, 0), Delete(Volume, "v2", 3)])
    assert etcd.sizes == []


@pytest.mark.parametrize(
    "refusal",
    [
        aetcd.exceptions.InvalidArgumentError("etcdserver: request is too large"),
        aetcd.exceptions.ClientError(
            "grpc: received message larger than max (12000013 vs. 11010048)"
        ),
    ],
)
async def test_etcds_own_refusal_is_too_large_not_store_unavailable(refusal: Exception) -> None:
    store = Store(RecordingEtcd(refuse=refusal))
    with pytest.raises(TooLargeError, match="write to the cluster store is too large"):
        await store.commit([Put(Volume(id="v1", name="v", stack="s"), 0)])


async def test_other_etcd_failures_still_say_the_store_is_unavailable() -> None:
    store = Store(RecordingEtcd(refuse=aetcd.exceptions.ConnectionFailedError("no route")))
    with pytest.raises(StoreUnavailableError):
        await store.commit([Put(Volume(id="v1", name="v", stack="s"), 0)])


async def test_chunked_writes_too_large_together_go_one_at_a_time() -> None:
    """The orchestrator writes tasks 100 to a transaction; each carries its spec."""
    etcd = RecordingEtcd()
    store = Store(etcd, max_write_bytes=MiB)
    vols = [Volume(id=f"v{i}", name="v", stack="s", labels={"b": "x" * 400_000}) for i in range(3)]
    await commit_chunked(store, [Put(v, 0) for v in vols])
    assert len(etcd.sizes) == 3 and max(etcd.sizes) < MiB
