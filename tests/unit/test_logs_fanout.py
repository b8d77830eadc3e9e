"""``service logs`` across nodes: merging, an unreachable node, following new tasks."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web

from swarmlite.agent.containers import ContainerInfo
from swarmlite.agent.docker_streams import RuntimeEvent
from swarmlite.api import logs
from swarmlite.api.logs import _merged, _remote_lines, local_lines, node_parts
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Node, Service, Task, TaskState, TaskStatus
from swarmlite.spec.service import ServiceSpec
from swarmlite.store.store import Delete, Put
from tests.unit.api_harness import MemoryStore, serve_port
from tests.unit.test_agent_runner import container, make_task
from tests.unit.test_proxy_support import free_port
from tests.unit.test_scheduler_fakes import node


async def _lines(*items: bytes, pause: float = 0.0) -> AsyncGenerator[bytes, None]:
    for item in items:
        await asyncio.sleep(pause)
        yield item


async def test_lines_of_all_streams_come_as_they_come_and_the_merge_ends() -> None:
    slow = _lines(b"slow 1\n", b"slow 2\n", pause=0.05)
    fast = _lines(b"fast 1\n", b"fast 2\n")
    got = [line async for line in _merged([slow, fast])]
    assert got[:2] == [b"fast 1\n", b"fast 2\n"]
    assert sorted(got) == [b"fast 1\n", b"fast 2\n", b"slow 1\n", b"slow 2\n"]


async def test_a_node_that_cannot_be_reached_says_so_in_one_line() -> None:
    node = Node(id="n2" * 10, hostname="worker-2", addr="127.0.0.1", api_port=free_port())
    tls = ssl.create_default_context()
    got = [line async for line in _remote_lines(node, "svc", tls, follow=False, tail=None)]
    assert len(got) == 1
    assert got[0].startswith(b"worker-2 | swarmlite: could not read this node's logs: ")


class _EngineDown:
    """A node runtime whose Docker engine cannot list containers."""

    node_id = "n1node1234567890"

    async def list_own(self, service_id: str | None = None) -> list[object]:
        raise RuntimeFailure("list containers: docker engine unresponsive")


async def test_a_node_whose_engine_cannot_list_its_containers_says_so_in_one_line() -> None:
    # It ended the node's part silently: `service logs` printed nothing and exited 0.
    runtime: Any = _EngineDown()
    got = [line async for line in local_lines(runtime, "svc", follow=False, tail=None)]
    assert got == [
        b"n1node123456 | swarmlite: could not read this node's logs: "
        b"list containers: docker engine unresponsive\n"
    ]


def _container(cid: str, service_id: str = "svc", slot: int = 1) -> ContainerInfo:
    task = msgspec.structs.replace(
        make_task(), id=f"task-{cid}", service_id=service_id, slot=slot, node_id="n1node1234567890"
    )
    return msgspec.structs.replace(container(task, "running"), id=cid, name=f"web.{slot}")


class _Events:
    """Docker's event stream of a node, fed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        self.closed = False

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> RuntimeEvent:
        return await self.queue.get()

    async def aclose(self) -> None:
        self.closed = True

    def start(self, cid: str) -> None:
        self.queue.put_nowait(RuntimeEvent(container_id=cid, task_id="", action="start"))


class _Runtime:
    """A node runtime whose containers each print two lines; the ones listed exist
    when ``service logs -f`` starts, the others start later (an event says so)."""

    node_id = "n1node1234567890"

    def __init__(self, listed: list[ContainerInfo], later: list[ContainerInfo]) -> None:
        self.listed = listed
        self.known = {c.id: c for c in [*listed, *later]}
        self.sub = _Events()
        self.tails: dict[str, int | None] = {}

    def events(self) -> _Events:
        return self.sub

    async def list_own(self, service_id: str | None = None) -> list[ContainerInfo]:
        return [c for c in self.listed if c.service_id == service_id]

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        return self.known.get(container_id)

    async def logs(
        self, container_id: str, *, follow: bool, tail: int | None
    ) -> AsyncIterator[bytes]:
        self.tails[container_id] = tail
        for n in (1, 2):
            yield f"{container_id} line {n}\n".encode()


async def _take(lines: AsyncIterator[bytes], count: int) -> list[bytes]:
    return [await asyncio.wait_for(anext(lines), 2) for _ in range(count)]


async def test_followed_a_container_starting_later_is_streamed_from_its_first_line() -> None:
    # A replica replaced after a crash, or a scale-up: only the containers listed at
    # the start were streamed, so `service logs -f` went quiet for the new ones.
    old, new = _container("c-old", slot=1), _container("c-new", slot=2)
    other = _container("c-other", service_id="another")
    runtime: Any = _Runtime([old], [new, other])
    lines = local_lines(runtime, "svc", follow=True, tail=5)
    got = await _take(lines, 2)
    for cid in ("c-other", "c-new", "c-old", "c-new"):  # a second start of one: once
        runtime.sub.start(cid)
    got += await _take(lines, 2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(lines), 0.2)
    await lines.aclose()
    assert sorted(got) == [
        b"shop_web.1 | c-old line 1\n",
        b"shop_web.1 | c-old line 2\n",
        b"shop_web.2 | c-new line 1\n",
        b"shop_web.2 | c-new line 2\n",
    ]
    assert runtime.tails == {"c-old": 5, "c-new": None}
    assert runtime.sub.closed


async def test_not_followed_the_node_part_ends_without_watching_events() -> None:
    runtime: Any = _Runtime([_container("c-old")], [])
    got = [line async for line in local_lines(runtime, "svc", follow=False, tail=None)]
    assert len(got) == 2 and not runtime.sub.closed


def _task(task_id: str, node_id: str, container_id: str) -> Task:
    return Task(
        id=task_id,
        service_id="svc",
        service_name="shop_web",
        slot=1,
        spec=ServiceSpec(name="web", stack="shop", image="nginx"),
        spec_version=1,
        spec_hash="h",
        node_id=node_id,
        status=TaskStatus(state=TaskState.RUNNING, container_id=container_id),
    )


async def test_followed_the_manager_opens_each_node_that_comes_to_hold_a_task_once() -> None:
    store = MemoryStore()
    service = Service(id="svc", spec=ServiceSpec(name="web", stack="shop", image="nginx"))
    nodes = [node(f"n{i}", hostname=f"worker-{i}") for i in (1, 2, 3)]
    await store.seed(service, *nodes, _task("t1", "n1", "c1"), _task("t2", "n2", "c2"))
    opened: asyncio.Queue[tuple[str, int | None]] = asyncio.Queue()

    def remote(node: Node, tail: int | None) -> AsyncGenerator[bytes, None]:
        opened.put_nowait((node.id, tail))
        return _lines(f"{node.hostname} | hello\n".encode())

    async def here() -> AsyncGenerator[bytes, None]:  # a followed node part never ends
        yield b"here | hello\n"
        await asyncio.Event().wait()

    parts = node_parts(store.cache, "svc", here(), "n1", remote, follow=True, tail=3)
    lines = _merged([], parts, last=True)
    got = await _take(lines, 2)
    assert await opened.get() == ("n2", 3)  # held a task at the start: its last 3 lines
    # Scaled up onto n3 (and n2 replaced its task): n3 is opened with all its lines.
    await store.commit([Put(_task("t3", "n3", ""), 0)])
    await store.commit([Put(_task("t3", "n3", "c3"), 2), Put(_task("t4", "n2", "c4"), 0)])
    got += await _take(lines, 1)
    assert await opened.get() == ("n3", None)
    # Removed: its tasks stop, then are deleted, and the followed logs end.
    await store.commit([Delete(Service, "svc", 1)])
    after = asyncio.ensure_future(anext(lines))
    assert await asyncio.wait({after}, timeout=0.1) == (set(), {after})
    await store.commit(
        [Delete(Task, t, r) for t, r in (("t1", 1), ("t2", 1), ("t3", 3), ("t4", 3))]
    )
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(after, 2)
    assert opened.empty()
    assert sorted(got) == [b"here | hello\n", b"worker-2 | hello\n", b"worker-3 | hello\n"]


async def test_not_followed_the_manager_asks_only_the_nodes_holding_tasks_now() -> None:
    store = MemoryStore()
    service = Service(id="svc", spec=ServiceSpec(name="web", stack="shop", image="nginx"))
    await store.seed(service, node("n2", hostname="worker-2"), _task("t2", "n2", "c2"))

    def remote(node: Node, tail: int | None) -> AsyncGenerator[bytes, None]:
        return _lines(f"{node.hostname} | {tail}\n".encode())

    parts = node_parts(store.cache, "svc", _lines(), "n1", remote, follow=False, tail=4)
    assert [line async for line in _merged([], parts)] == [b"worker-2 | 4\n"]


@pytest.mark.parametrize("follow", [True, False])
async def test_a_client_that_leaves_ends_the_stream_quietly(
    follow: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "CLIENT_CHECK", 0.05)
    ended = asyncio.Event()
    more = asyncio.Event()  # followed: the service is quiet after its first line

    async def quiet_service() -> AsyncGenerator[bytes, None]:
        try:
            yield b"first\n"
            await more.wait()
            while True:  # not followed: lines keep coming until a write fails
                yield b"more\n" * 1000
                await asyncio.sleep(0)
        finally:
            ended.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await logs._respond(request, quiet_service(), follow)

    app = web.Application()
    app.router.add_get("/logs", handler)
    async for port in serve_port(app):
        if not follow:
            more.set()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /logs HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"first" in await asyncio.wait_for(r.readuntil(b"first\n"), 5)
        w.close()  # Ctrl-C
        await asyncio.wait_for(ended.wait(), 5)  # the stream stopped, with no line since
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
