"""Fixtures the proxy tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_support import BACKEND_IPS, TcpBackend, free_port


@pytest.fixture
async def mesh() -> AsyncIterator[MeshProxy]:
    """A started mesh on loopback for node ``n1``, stopped after the test."""
    m = MeshProxy("n1", bind_host="127.0.0.1")
    await m.start()
    yield m
    await m.stop(grace=0.5)


@pytest.fixture
async def tcp_backends() -> AsyncIterator[list[TcpBackend]]:
    """Two line-command TCP backends, ``b0`` and ``b1``, on one port of two addresses."""
    port = free_port(BACKEND_IPS[0])
    started = [await TcpBackend(f"b{i}", ip, port).start() for i, ip in enumerate(BACKEND_IPS[:2])]
    yield started
    for b in started:
        await b.stop()
