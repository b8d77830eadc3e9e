"""HTTP handlers for ``service update`` and ``service rollback``.

Both write the service with compare-and-swap and return at once; the leader's
orchestrator rolls the tasks (manager/reconcile.py, rollout.py, updater.py), and the
progress shows in the service's ``update_status``.
"""

from __future__ import annotations

import logging
import time

import msgspec
from aiohttp import web

from swarmlite.api.models import ServiceUpdateRequest
from swarmlite.api.server import CTX, ApiContext, _fresh, find_service
from swarmlite.errors import ConflictError, SpecError
from swarmlite.manager.ports import check_published_ports
from swarmlite.manager.updater import begin_rollback, begin_update
from swarmlite.spec.objects import Service
from swarmlite.spec.service import ServiceSpec
from swarmlite.store.store import Versioned

log = logging.getLogger("swarmlite.api.update")
_ATTEMPTS = 5


def register(app: web.Application) -> None:
    app.router.add_post("/v1/services/{name}/update", update_service)
    app.router.add_post("/v1/services/{name}/rollback", rollback_service)


def updated_spec(spec: ServiceSpec, change: ServiceUpdateRequest) -> ServiceSpec:
    """``spec`` with the requested changes applied. Pure."""
    if change.image is not None and not change.image.strip():
        raise SpecError("image must not be empty")
    if change.replicas is not None:
        if change.replicas < 0:
            raise SpecError("replicas must be 0 or more")
        if spec.mode != "replicated":
            raise SpecError(
                f"--replicas can only be used with replicated mode; {spec.name} is global"
            )
    for key in change.env_add:
        if not key or "=" in key:
            raise SpecError(f"invalid environment variable name {key!r}")
    env = {**spec.environment, **change.env_add}
    for key in change.env_rm:
        env.pop(key, None)
    return msgspec.structs.replace(
        spec,
        image=change.image if change.image is not None else spec.image,
        environment=env,
        replicas=change.replicas if change.replicas is not None else spec.replicas,
        force_update=spec.force_update + 1 if change.force else spec.force_update,
    )


async def update_service(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    change = msgspec.json.decode(await request.read(), type=ServiceUpdateRequest)
    name = request.match_info["name"]
    for _ in range(_ATTEMPTS):
        found = find_service(ctx.cache.view(), name)
        spec = updated_spec(found.value.spec, change)
        if spec == found.value.spec:
            return _service(found.value)
        service = begin_update(found.value, spec, time.time())
        if await _write(ctx, found, service):
            log.info(
                "service=%s updated to version %d (%s)",
                service.name,
                service.version,
                service.update_status.state or "no task changes",
            )
            return _service(service)
    raise ConflictError(f"service {name} kept changing during the update; try again")


MAX_REASON = 200  # characters of a rollback's reason kept in the service's update status


async def rollback_service(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = request.match_info["name"]
    reason = " ".join(request.query.get("reason", "").split())[:MAX_REASON] or "manually requested"
    for _ in range(_ATTEMPTS):
        state = ctx.cache.view()
        found = find_service(state, name)
        if found.value.previous_spec is None:
            raise SpecError(f"service {found.value.name} has no previous spec to roll back to")
        service = begin_rollback(found.value, time.time(), reason)
        # The previous spec's ports may have been published by another service since.
        others = (v.value for v in state.services.values() if v.value.id != service.id)
        check_published_ports([service.spec], others)
        if await _write(ctx, found, service):
            log.info("service=%s rolling back as version %d", service.name, service.version)
            return _service(service)
    raise ConflictError(f"service {name} kept changing during the rollback; try again")


async def _write(ctx: ApiContext, found: Versioned[Service], service: Service) -> bool:
    try:
        result = await ctx.store.update(found, service)
    except ConflictError:
        await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
        return False
    await _fresh(ctx, result.revision)
    return True


def _service(service: Service) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(service), content_type="application/json", status=200
    )
