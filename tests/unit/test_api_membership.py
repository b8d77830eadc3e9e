"""Which verified certificates the API still accepts, given the cluster's nodes: the
rule, and the middleware that applies it to requests served in-process."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

from swarmlite.api.context import CTX
from swarmlite.api.membership import refusal
from swarmlite.api.server import error_middleware, membership_middleware
from swarmlite.security.ca import Identity, Role, admin_cn
from swarmlite.security.mtls import IDENTITY_KEY
from swarmlite.spec.objects import Node, NodeRole
from swarmlite.store.store import Versioned
from tests.unit.api_harness import MemoryStore, context

MANAGER_ID = "m1abcdefghijklmnopqrstuvw"
WORKER_ID = "w1abcdefghijklmnopqrstuvw"
LATER = datetime(2030, 1, 1, tzinfo=UTC)
PATH = "/v1/services"


def nodes(roles: dict[str, NodeRole]) -> dict[str, Versioned[Node]]:
    return {
        node_id: Versioned(Node(id=node_id, hostname="h", addr="10.0.0.1", api_port=1, role=r), 1)
        for node_id, r in roles.items()
    }


def who(node_id: str, role: Role) -> Identity:
    return Identity(node_id=node_id, role=role, not_after=LATER)


def test_member_nodes_and_a_current_managers_admin_credential_pass() -> None:
    cluster = nodes({MANAGER_ID: "manager", WORKER_ID: "worker"})
    assert refusal(who(MANAGER_ID, "manager"), cluster, PATH) is None
    assert refusal(who(WORKER_ID, "worker"), cluster, PATH) is None
    assert refusal(who(admin_cn(MANAGER_ID), "admin"), cluster, PATH) is None


def test_a_removed_nodes_certificate_is_refused() -> None:
    cluster = nodes({MANAGER_ID: "manager"})
    why = refusal(who(WORKER_ID, "worker"), cluster, PATH)
    assert why == "this node is not part of the cluster: join it again"


def test_an_admin_credential_of_a_removed_or_demoted_manager_is_refused() -> None:
    admin = who(admin_cn(MANAGER_ID), "admin")
    for cluster in (nodes({WORKER_ID: "manager"}), nodes({MANAGER_ID: "worker"})):
        why = refusal(admin, cluster, PATH)
        assert why is not None and f"issued by node {MANAGER_ID[:12]}" in why


def test_a_demoted_managers_certificate_is_refused_except_to_renew_and_hear_of_it() -> None:
    # Its manager certificate (OU=manager) stays valid until it renews as a worker; the
    # cluster's record says worker, so manager-only paths are closed to it at once.
    demoted = who(MANAGER_ID, "manager")
    cluster = nodes({MANAGER_ID: "worker"})
    for path in ("/v1/services", "/v1/nodes/w1/demote", "/v1/secrets", "/v1/node/services/x/logs"):
        why = refusal(demoted, cluster, path)
        assert why is not None and "demoted to worker" in why, path
    for path in ("/v1/renew", "/v1/agent/session"):
        assert refusal(demoted, cluster, path) is None, path


def test_a_removed_managers_certificate_is_refused_even_to_renew() -> None:
    why = refusal(who(MANAGER_ID, "manager"), nodes({WORKER_ID: "worker"}), "/v1/renew")
    assert why == "this node is not part of the cluster: join it again"


@web.middleware
async def as_demoted_manager(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for mtls_middleware: the caller presented MANAGER_ID's manager cert."""
    request[IDENTITY_KEY] = who(MANAGER_ID, "manager")
    return await handler(request)


async def test_the_middleware_closes_manager_paths_to_a_demoted_manager_at_once() -> None:
    store = MemoryStore()
    await store.seed(
        *(v.value for v in nodes({MANAGER_ID: "worker", WORKER_ID: "manager"}).values())
    )
    app = web.Application(middlewares=[error_middleware, as_demoted_manager, membership_middleware])
    app[CTX] = context(store)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    for method, path in (("GET", "/v1/services"), ("POST", "/v1/renew"), ("GET", "/v1/agent/x")):
        app.router.add_route(method, path, ok)
    async with TestClient(TestServer(app)) as http:
        refused = await http.get("/v1/services")
        assert refused.status == 403
        assert "demoted to worker" in (await refused.json())["error"]
        assert (await http.post("/v1/renew")).status == 200
        assert (await http.get("/v1/agent/x")).status == 200
