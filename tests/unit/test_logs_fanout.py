"""``service logs`` across nodes: merging and an unreachable node."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

from swarmlite.api.logs import _merged, _remote_lines, local_lines
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Node
from tests.unit.test_proxy_support import free_port


async def _lines(*items: bytes, pause: float = 0.0) -> AsyncIterator[bytes]:
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
