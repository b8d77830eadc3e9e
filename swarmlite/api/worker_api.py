"""The API a worker node serves: its CA, its own info and (to managers) its part of a
service's logs; everything else says where to go.

Workers hold no cluster state. Like Docker, a management call on a worker is refused
with a message that names what to do instead.
"""

from __future__ import annotations

from aiohttp import web

from swarmlite.agent.runtime import DockerRuntime
from swarmlite.api.logs import NODE_LOGS_PREFIX, NODE_LOGS_ROLES, register_node_logs
from swarmlite.api.models import ClusterInfo
from swarmlite.api.server import VERSION, _json, error_middleware
from swarmlite.errors import DaemonError
from swarmlite.security.mtls import allow_roles, ca_handler, mtls_middleware

NOT_A_MANAGER = (
    "this node is not a swarm manager: worker nodes can't be used to view or modify "
    "cluster state; run this command on a manager node or promote this node"
)


def build_worker_app(node_id: str, ca_pem: str, runtime: DockerRuntime) -> web.Application:
    # Any cluster identity may ask; non-info paths answer with where to go instead.
    # A manager may read this node's part of a service's logs.
    policy = allow_roles(
        {NODE_LOGS_PREFIX: NODE_LOGS_ROLES}, default=("admin", "manager", "worker")
    )
    app = web.Application(middlewares=[error_middleware, mtls_middleware(policy)])

    async def info(request: web.Request) -> web.Response:
        return _json(
            ClusterInfo(
                cluster_id="",
                node_id=node_id,
                node_role="worker",
                leader=False,
                store="not a manager",
                version=VERSION,
            )
        )

    async def elsewhere(request: web.Request) -> web.Response:
        raise DaemonError(NOT_A_MANAGER)

    app.router.add_get("/v1/ca", ca_handler(ca_pem))
    app.router.add_get("/v1/info", info)
    register_node_logs(app, runtime)
    app.router.add_route("*", "/v1/{tail:.*}", elsewhere)
    return app
