"""The API a worker node serves: its CA, its own info and (to managers) its part of a
service's logs; everything else says where to go.

Workers hold no cluster state. Like Docker, a management call on a worker is refused
with a message that names what to do instead. A manager certificate outlives its
holder's place in the cluster (removed, or demoted until it renews), so the logs are
served only to a node among the managers the agent session last named
(``membership.KnownManagers``): others get 403, and every caller 503 until a session
has named them.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from swarmlite.agent.runtime import DockerRuntime
from swarmlite.api.logs import NODE_LOGS_PREFIX, NODE_LOGS_ROLES, register_node_logs
from swarmlite.api.membership import KnownManagers, worker_refusal
from swarmlite.api.models import ClusterInfo
from swarmlite.api.server import VERSION, _json, error_middleware
from swarmlite.errors import DaemonError
from swarmlite.security.mtls import IDENTITY_KEY, allow_roles, ca_handler, mtls_middleware

log = logging.getLogger("swarmlite.api")

NOT_A_MANAGER = (
    "this node is not a swarm manager: worker nodes can't be used to view or modify "
    "cluster state; run this command on a manager node or promote this node"
)


def current_managers_middleware(managers: KnownManagers) -> Middleware:
    """Manager-only paths (behind ``mtls_middleware``, which checked the role) only for
    a node that is a manager as the worker knows it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = request.get(IDENTITY_KEY)
        if identity is not None and request.path.startswith(NODE_LOGS_PREFIX):
            why = worker_refusal(identity, managers)
            if why is not None:
                log.warning(
                    "refused path=%s identity=%s role=%s reason=not-a-current-manager",
                    request.path,
                    identity.node_id,
                    identity.role,
                )
                return _json({"error": why}, 403 if managers.ids is not None else 503)
        return await handler(request)

    return middleware


def build_worker_app(
    node_id: str, ca_pem: str, runtime: DockerRuntime, managers: KnownManagers
) -> web.Application:
    # Any cluster identity may ask; non-info paths answer with where to go instead.
    # A current manager may read this node's part of a service's logs.
    policy = allow_roles(
        {NODE_LOGS_PREFIX: NODE_LOGS_ROLES}, default=("admin", "manager", "worker")
    )
    app = web.Application(
        middlewares=[
            error_middleware,
            mtls_middleware(policy),
            current_managers_middleware(managers),
        ]
    )

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
