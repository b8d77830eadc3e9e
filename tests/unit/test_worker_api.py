"""A worker serves its part of a service's logs only to a current manager of the
cluster, as its agent session last named them: a removed or demoted manager keeps a
valid manager certificate, not its access. Real mutual TLS on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any, cast

import pytest

from swarmlite.agent.runtime import DockerRuntime
from swarmlite.agent.session import NodeAgent
from swarmlite.api.agent_protocol import Assignments, decode_manager_message, encoder
from swarmlite.api.membership import KnownManagers
from swarmlite.api.worker_api import build_worker_app
from swarmlite.manager.dispatcher import assignments_for
from swarmlite.security.ca import ClusterCA, Role
from swarmlite.security.tls import Credentials
from swarmlite.spec.objects import Node, NodeRole
from swarmlite.spec.routes import RoutesSnapshot
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Versioned
from tests.unit.api_harness import serve_port, tls_get

CURRENT, FORMER, WORKER = "m1current", "m2former", "w1worker"
LOGS = "/v1/node/services/svc/logs"


class _Runtime:
    """What the logs endpoint asks of the engine: no container of the service here."""

    node_id = WORKER
    files = None

    async def list_own(self, service_id: str | None = None) -> list[object]:
        return []


@pytest.fixture(scope="module")
def creds() -> dict[str, Credentials]:
    ca = ClusterCA.create("c1")
    out = {}
    for node_id, role in ((CURRENT, "manager"), (FORMER, "manager"), (WORKER, "worker")):
        cert, key = ca.issue(node_id, cast(Role, role), san_ips=["127.0.0.1"])
        out[node_id] = Credentials(cert, key, ca.cert_pem)
    return out


@pytest.fixture
async def worker(creds: dict[str, Credentials]) -> AsyncIterator[tuple[int, KnownManagers]]:
    """The worker API as the daemon serves it, and the managers its session heard of."""
    known = KnownManagers()
    runtime = cast(DockerRuntime, _Runtime())
    app = build_worker_app(WORKER, creds[WORKER].ca_pem, runtime, known)
    tls = creds[WORKER].server_context(require_client_cert=False)
    async for port in serve_port(app, tls):
        yield port, known


async def test_only_a_current_manager_reads_a_workers_logs(
    creds: dict[str, Credentials],
    worker: tuple[int, KnownManagers],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, known = worker
    current, former = creds[CURRENT].client_context(), creds[FORMER].client_context()
    # No session has named the managers yet: nobody, until one has.
    status, body = await tls_get(port, LOGS, current)
    assert status == 503 and "not yet heard the cluster's managers" in body
    known.heard([CURRENT])
    assert await tls_get(port, LOGS, current) == (200, "")
    # FORMER still holds a valid manager certificate (removed, or demoted and not renewed).
    status, body = await tls_get(port, LOGS, former)
    assert status == 403
    assert f"node {FORMER} is not a manager of the cluster (removed or demoted)" in body
    assert f"path={LOGS} identity={FORMER} role=manager" in caplog.text
    assert "reason=not-a-current-manager" in caplog.text
    # Its other paths are open to any cluster identity, as before.
    assert (await tls_get(port, "/v1/info", former))[0] == 200
    # A worker's certificate is refused by role, as before.
    assert (await tls_get(port, LOGS, creds[WORKER].client_context()))[0] == 403
    # CURRENT demoted, FORMER promoted: the latest set is what counts.
    known.heard([FORMER])
    assert (await tls_get(port, LOGS, current))[0] == 403
    assert (await tls_get(port, LOGS, former))[0] == 200


def test_an_older_managers_message_without_manager_ids_keeps_what_was_heard() -> None:
    known = KnownManagers()
    older = b'{"type":"assignments","revision":3,"tasks":[],"routes":{"revision":3}}'
    message = decode_manager_message(older)
    assert isinstance(message, Assignments) and message.manager_ids == ()
    known.heard(message.manager_ids)
    assert known.ids is None
    known.heard([CURRENT])
    known.heard(message.manager_ids)
    assert known.ids == frozenset({CURRENT})


def _nodes(roles: dict[str, NodeRole]) -> ClusterState:
    nodes = {
        node_id: Versioned(Node(id=node_id, hostname="h", addr="10.0.0.1", api_port=1, role=r), 1)
        for node_id, r in roles.items()
    }
    return ClusterState(revision=5, nodes=MappingProxyType(nodes))


def test_the_dispatcher_names_the_current_managers_by_node_id() -> None:
    state = _nodes({FORMER: "worker", CURRENT: "manager", "m3": "manager", WORKER: "worker"})
    message = assignments_for(WORKER, state, RoutesSnapshot(revision=5))
    assert message.manager_ids == ("m1current", "m3")
    again = decode_manager_message(encoder.encode(message))
    assert isinstance(again, Assignments) and again.manager_ids == ("m1current", "m3")


class _Mesh:
    drained = None

    async def apply(self, routes: RoutesSnapshot) -> None:
        pass


class _Files:
    def update(self, *args: Any) -> None:
        pass


async def test_the_agent_keeps_the_latest_managers_its_session_named() -> None:
    known = KnownManagers()
    runtime = _Runtime()
    runtime.files = _Files()  # type: ignore[assignment]
    agent = NodeAgent(
        node_id=WORKER,
        addr="127.0.0.1",
        api_port=1,
        managers=["127.0.0.1:1"],
        ssl_context=None,
        runtime=cast(DockerRuntime, runtime),
        mesh=cast(Any, _Mesh()),
        names=None,
        node_network=True,
        known_managers=known,
    )
    state = _nodes({CURRENT: "manager", WORKER: "worker"})
    await agent.apply(assignments_for(WORKER, state, RoutesSnapshot(revision=5)))
    assert known.ids == frozenset({CURRENT})
    demoted = _nodes({CURRENT: "worker", FORMER: "manager", WORKER: "worker"})
    await agent.apply(assignments_for(WORKER, demoted, RoutesSnapshot(revision=6)))
    assert known.ids == frozenset({FORMER})
