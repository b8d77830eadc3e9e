"""Fixtures the proxy tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from swarmlite.proxy.mesh import MeshProxy


@pytest.fixture
async def mesh() -> AsyncIterator[MeshProxy]:
    """A started mesh on loopback for node ``n1``, stopped after the test."""
    m = MeshProxy("n1", bind_host="127.0.0.1")
    await m.start()
    yield m
    await m.stop(grace=0.5)
