"""The manager's HTTP/JSON API (aiohttp), served over mutual TLS.

Reads come from the watch-fed state cache; writes go to the store with compare-and-
swap. Malformed bodies get 400 with a message and write nothing; a body over
``limits.MAX_REQUEST_BYTES`` gets 413 with a message naming the limit.
"""

from __future__ import annotations

import logging
import time

import msgspec
from aiohttp import web

from swarmlite.api import stack_handlers
from swarmlite.api.context import (
    CTX,
    VERSION,
    ApiContext,
    Handler,
    _ctx,
    _fresh,
    _json,
    find_service,
)
from swarmlite.api.logs import NODE_LOGS_PREFIX, NODE_LOGS_ROLES, register_node_logs, service_logs
from swarmlite.api.membership import refusal
from swarmlite.api.models import (
    ClusterInfo,
    DeployResult,
    RemoveResult,
    ScaleRequest,
    ServiceSummary,
)
from swarmlite.errors import (
    ConflictError,
    SpecError,
    StoreUnavailableError,
    SwarmliteError,
    TooLargeError,
)
from swarmlite.limits import MAX_REQUEST_BYTES, request_too_large
from swarmlite.manager.node_admin import find_node
from swarmlite.security.mtls import (
    IDENTITY_KEY,
    allow_roles,
    ca_handler,
    mtls_middleware,
    request_identity,
)
from swarmlite.spec.objects import Service, TaskState
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Delete

log = logging.getLogger("swarmlite.api")

# Names other handler modules and tests import from here.
__all__ = [
    "CTX",
    "VERSION",
    "ApiContext",
    "_fresh",
    "_json",
    "build_app",
    "error_middleware",
    "find_service",
]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:  # request.read() stopped at client_max_size
            # Not refused on Content-Length before reading: aiohttp then lingers up to
            # 10 s on the unread body, even after the client has gone.
            size = request.content_length  # None: chunked
            raise TooLargeError(request_too_large(size, request.client_max_size)) from None
    except SwarmliteError as exc:
        if exc.http_status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, exc)
        return _json({"error": str(exc)}, exc.http_status)
    except msgspec.ValidationError as exc:
        return _json({"error": f"invalid request body: {exc}"}, 400)
    except msgspec.DecodeError as exc:
        return _json({"error": f"malformed JSON: {exc}"}, 400)


# Paths that answer without the store: public ones, the info page (it reports the
# store's state), and agent sessions (the dispatcher copes with the store itself).
STORELESS_PREFIXES = ("/v1/ca", "/v1/info", "/v1/agent/", NODE_LOGS_PREFIX)


@web.middleware
async def store_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """503 while etcd cannot answer, instead of serving a stale cache as if all were well."""
    if not request.path.startswith(STORELESS_PREFIXES):
        ctx = request.app[CTX]
        if not ctx.cache.connected:
            raise StoreUnavailableError(
                "cluster store unavailable: the watch on etcd is lost; reconnecting"
            )
        await ctx.store.check()
    return await handler(request)


@web.middleware
async def membership_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A certificate is good only while its holder is a member in that role
    (``membership``): a node removed with ``node rm``, a demoted manager (outside the
    paths it renews through), or the manager that issued an admin credential once it is
    removed or demoted, keeps a valid certificate for its lifetime, not its access."""
    identity = request.get(IDENTITY_KEY)
    ctx = request.app[CTX]
    if identity is not None and ctx.cache.ready.is_set():
        why = refusal(identity, ctx.cache.view().nodes, request.path)
        if why is not None:
            log.warning(
                "refused path=%s identity=%s role=%s reason=not-a-member-in-that-role",
                request.path,
                identity.node_id,
                identity.role,
            )
            return _json({"error": why}, 403)
    return await handler(request)


def build_app(ctx: ApiContext) -> web.Application:
    policy = allow_roles(
        {
            "/v1/agent/": ("manager", "worker"),
            "/v1/renew": ("manager", "worker"),
            "/v1/promotion": ("manager", "worker"),
            NODE_LOGS_PREFIX: NODE_LOGS_ROLES,
        },
        default=("admin", "manager"),
    )
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        middlewares=[
            error_middleware,
            mtls_middleware(policy),
            membership_middleware,
            store_middleware,
        ],
    )
    app[CTX] = ctx
    r = app.router
    r.add_get("/v1/ca", ca_handler(ctx.ca_pem))
    r.add_get("/v1/info", info)
    r.add_post("/v1/stacks/{stack}/deploy", stack_handlers.deploy)
    r.add_get("/v1/stacks", stack_handlers.stacks)
    r.add_delete("/v1/stacks/{stack}", stack_handlers.remove_stack)
    r.add_get("/v1/services", services)
    r.add_get("/v1/services/{name}", service)
    r.add_delete("/v1/services/{name}", remove_service)
    r.add_post("/v1/services/{name}/scale", scale)
    r.add_get("/v1/services/{name}/logs", service_logs)
    register_node_logs(app, ctx.runtime)
    r.add_get("/v1/tasks", tasks)
    r.add_get("/v1/nodes", nodes)
    r.add_get("/v1/nodes/{id}", node)
    r.add_get("/v1/agent/session", agent_session)
    return app


async def info(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    state = ctx.cache.view()
    cluster = state.cluster
    return _json(
        ClusterInfo(
            cluster_id=cluster.id if cluster else "",
            node_id=ctx.node_id,
            node_role="manager",
            leader=ctx.election is None or ctx.election.is_leader,
            leader_id=ctx.election.leader_id if ctx.election else ctx.node_id,
            store="ok" if ctx.cache.connected else "unavailable: etcd cannot be reached",
            version=VERSION,
        )
    )


def summarize(state: ClusterState, service: Service) -> ServiceSummary:
    tasks = state.tasks_of(service.id)
    running = sum(1 for t in tasks if t.routable)
    if service.spec.mode == "global":
        desired = sum(1 for t in tasks if t.desired_state == TaskState.RUNNING)
    else:
        desired = service.spec.replicas
    ports = tuple(
        f"*:{p.published}->{p.target}/{p.protocol}"
        for p in service.published_ports()
        if p.published
    )
    return ServiceSummary(
        id=service.id,
        name=service.name,
        stack=service.spec.stack,
        mode=service.spec.mode,
        desired=desired,
        running=running,
        image=service.spec.image,
        ports=ports,
        update_state=service.update_status.state,
        update_message=service.update_status.message,
        spec_version=service.version,
    )


async def services(request: web.Request) -> web.Response:
    state = _ctx(request).cache.view()
    stack = request.query.get("stack")
    out = [
        summarize(state, v.value)
        for v in sorted(state.services.values(), key=lambda v: v.value.name)
        if stack is None or v.value.spec.stack == stack
    ]
    return _json(out)


async def service(request: web.Request) -> web.Response:
    return _json(find_service(_ctx(request).cache.view(), request.match_info["name"]).value)


async def remove_service(request: web.Request) -> web.Response:
    """Compare-and-swap on the service's revision, re-read on a lost race: the leader
    writes a service often (its update status), and the cache may lag a write."""
    ctx = _ctx(request)
    for _ in range(5):
        found = find_service(ctx.cache.view(), request.match_info["name"])
        try:
            revision = await ctx.store.commit([Delete(Service, found.value.id, found.revision)])
        except ConflictError:
            await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
            continue
        await _fresh(ctx, revision)
        return _json(RemoveResult(removed=(found.value.name,)))
    raise ConflictError("the service kept changing; try again")


async def scale(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    body = msgspec.json.decode(await request.read(), type=ScaleRequest)
    if body.replicas < 0:
        raise SpecError("replicas must be 0 or more")
    for _ in range(5):
        found = find_service(ctx.cache.view(), request.match_info["name"])
        if found.value.spec.mode != "replicated":
            raise SpecError(
                f"scale can only be used with replicated mode; {found.value.name} is global"
            )
        if found.value.spec.replicas == body.replicas:
            return _json(found.value)
        spec = msgspec.structs.replace(found.value.spec, replicas=body.replicas)
        updated = msgspec.structs.replace(
            found.value, spec=spec, version=found.value.version + 1, updated_at=time.time()
        )
        try:
            result = await ctx.store.update(found, updated)
        except ConflictError:
            await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
            continue
        await _fresh(ctx, result.revision)
        return _json(updated)
    raise ConflictError("the service kept changing; try again")


async def tasks(request: web.Request) -> web.Response:
    state = _ctx(request).cache.view()
    q = request.query
    service_id = find_service(state, q["service"]).value.id if "service" in q else None
    out = []
    for v in state.tasks.values():
        t = v.value
        if service_id and t.service_id != service_id:
            continue
        if "stack" in q and t.spec.stack != q["stack"]:
            continue
        if "node" in q and not t.node_id.startswith(q["node"]):
            continue
        out.append(t)
    out.sort(key=lambda t: (t.service_name, t.slot, t.node_id, -t.created_at))
    return _json(out)


async def nodes(request: web.Request) -> web.Response:
    state = _ctx(request).cache.view()
    return _json(sorted((v.value for v in state.nodes.values()), key=lambda n: n.hostname))


async def node(request: web.Request) -> web.Response:
    nodes = (v.value for v in _ctx(request).cache.view().nodes.values())
    return _json(find_node(nodes, request.match_info["id"]))


async def agent_session(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    identity = request_identity(request)
    return await ctx.dispatcher.handle_session(request, identity.node_id)


__all__ = ["ApiContext", "DeployResult", "build_app", "find_service"]
